"""The API's routes, one module per resource, gathered into one router."""

from fastapi import APIRouter

from . import (
    attribute,
    circuits,
    docs,
    health,
    models,
    page,
    patch,
    runs,
    sweep,
    tokenize,
    views,
)

api_router = APIRouter()
api_router.include_router(patch.router)
api_router.include_router(sweep.router)
api_router.include_router(attribute.router)
api_router.include_router(tokenize.router)
api_router.include_router(models.router)
api_router.include_router(circuits.router)
api_router.include_router(views.router)
api_router.include_router(health.router)
api_router.include_router(runs.router)
api_router.include_router(page.router)
api_router.include_router(docs.router)

__all__ = ["api_router"]
