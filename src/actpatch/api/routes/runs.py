"""GET /runs, GET/PATCH/DELETE /runs/{id} and GET /runs/{id}/export/{fmt}: the run history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import Path, Query
from fastapi.responses import Response

from ..deps import WorkbenchDep
from ..responses import documented
from ..routing import make_router
from ..schemas.runs import RunDetail, RunList, RunSummary, RunUpdate

router = make_router(tags=["history"])
# no such run; a run id that is not a number; the history busy (Retry-After) or unusable
RUN_ERRORS = documented(404, 422, 503)
# Run ids are SQLite rowids: positive 64-bit integers (a larger one cannot even be looked up).
RunId = Annotated[int, Path(ge=1, le=2**63 - 1, description="The run's id (GET /runs).")]


@router.get("/runs", response_model=RunList, responses=documented(422, 503))
def list_runs(
    workbench: WorkbenchDep,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(
        0, ge=0, le=2**62, description="Skip this many more recent runs (the previous pages)."
    ),
    kind: str | None = Query(None, description="Only runs of this kind (patch, sweep, ...)."),
) -> dict[str, Any]:
    """The stored runs, most recent first, one page at a time, without their results."""
    return workbench.history.page(limit, offset, kind)


@router.get("/runs/{run_id}", response_model=RunDetail, responses=RUN_ERRORS)
def get_run(run_id: RunId, workbench: WorkbenchDep) -> dict[str, Any]:
    """One stored run: the request that produced it and its result, without recomputing."""
    return workbench.history.run(run_id)


@router.patch("/runs/{run_id}", response_model=RunSummary, responses=documented(404, 413, 422, 503))
def update_run(run_id: RunId, update: RunUpdate, workbench: WorkbenchDep) -> dict[str, Any]:
    """Pin a stored run (retention never deletes it) or unpin it."""
    return workbench.history.pin(run_id, update.pinned)


@router.delete("/runs/{run_id}", response_model=RunSummary, responses=RUN_ERRORS)
def delete_run(run_id: RunId, workbench: WorkbenchDep) -> dict[str, Any]:
    """Delete one stored run."""
    return workbench.history.delete(run_id)


# A file download (CSV, PNG, notebook...), not a JSON body: documented in docs/datasets.md and
# kept out of the OpenAPI schema, whose every route answers JSON.
@router.get("/runs/{run_id}/export/{fmt}", responses=RUN_ERRORS, include_in_schema=False)
def export_run(
    run_id: RunId, fmt: Literal["csv", "json", "png", "svg", "ipynb"], workbench: WorkbenchDep
) -> Response:
    """A stored run as a tidy CSV, JSON, a PNG or SVG heatmap, or a notebook reproducing it."""
    from actpatch.export import MEDIA_TYPES, export

    run = workbench.history.run(run_id)
    body = export(run["kind"], run["request"], run["result"], fmt)
    name = f"actpatch-run-{run_id}.{fmt}"
    return Response(
        body,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
