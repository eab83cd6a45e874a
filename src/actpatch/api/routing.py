"""Routers whose OpenAPI summary is each route's one-line docstring."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.routing import APIRoute


class SummaryRoute(APIRoute):
    """An APIRoute whose summary is the first line of its endpoint's docstring."""

    def __init__(self, path: str, endpoint: Any, **kwargs: Any) -> None:
        if kwargs.get("summary") is None and endpoint.__doc__:
            kwargs["summary"] = endpoint.__doc__.strip().splitlines()[0]
        super().__init__(path, endpoint, **kwargs)


def make_router(**kwargs: Any) -> APIRouter:
    """An APIRouter of `SummaryRoute`s."""
    return APIRouter(route_class=SummaryRoute, **kwargs)
