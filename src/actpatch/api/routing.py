"""Routers whose OpenAPI summary is each route's one-line docstring, and the three routes of a
background job (start, watch, cancel), written once for every kind of job."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute
from pydantic import BaseModel

from .deps import WorkbenchDep
from .jobs import Job, SweepJobs
from .responses import documented
from .workbench import Workbench


class SummaryRoute(APIRoute):
    """An APIRoute whose summary is the first line of its endpoint's docstring."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        if kwargs.get("summary") is None and endpoint.__doc__:
            kwargs["summary"] = endpoint.__doc__.strip().splitlines()[0]
        super().__init__(path, endpoint, **kwargs)


def make_router(**kwargs: Any) -> APIRouter:
    """An APIRouter of `SummaryRoute`s."""
    return APIRouter(route_class=SummaryRoute, **kwargs)


@dataclass(frozen=True)
class JobRoutes:
    """What the routes of one kind of background job need: where they live, their bodies, how
    the workbench starts a job and where it keeps them, and what each route says it does.

    `name` makes the routes `POST /{name}/jobs`, `GET` and `DELETE /{name}/jobs/{job_id}`, and
    their operation names `start_{name}_job`, `get_{name}_job` and `cancel_{name}_job`.
    """

    name: str
    request: type[BaseModel]
    job: type[BaseModel]
    start: Callable[[Workbench, Any], Job]  # checks the request now (422), then queues the work
    jobs: Callable[[Workbench], SweepJobs]
    start_says: str
    get_says: str
    cancel_says: str


def add_job_routes(router: APIRouter, kind: JobRoutes) -> None:
    """Add start (202), get and cancel routes for `kind`'s background jobs to `router`."""

    def start(request: BaseModel, workbench: WorkbenchDep) -> dict[str, Any]:
        return kind.start(workbench, request).to_dict()

    # The body's model is the kind's, so that FastAPI parses, checks and documents it.
    start.__annotations__ = {**start.__annotations__, "request": kind.request}

    def get(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
        return kind.jobs(workbench).get(job_id).to_dict()

    def cancel(job_id: str, workbench: WorkbenchDep) -> dict[str, Any]:
        return kind.jobs(workbench).cancel(job_id).to_dict()

    def add(
        method: str, path: str, endpoint: Callable[..., Any], says: str, **options: Any
    ) -> None:
        router.add_api_route(
            path,
            endpoint,
            methods=[method],
            name=f"{endpoint.__name__}_{kind.name}_job",
            summary=says,
            description=says,
            response_model=kind.job,
            **options,
        )

    jobs = f"/{kind.name}/jobs"
    busy = documented(413, 422, 429, 503)
    add("POST", jobs, start, kind.start_says, status_code=202, responses=busy)
    add("GET", jobs + "/{job_id}", get, kind.get_says, responses=documented(404))
    add("DELETE", jobs + "/{job_id}", cancel, kind.cancel_says, responses=documented(404))
