"""GET /models: what this server can run."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import documented
from ..routing import make_router
from ..schemas.models import ModelsResponse

router = make_router(tags=["server"])


@router.get("/models", response_model=ModelsResponse, responses=documented())
def models(workbench: WorkbenchDep) -> dict[str, Any]:
    """The models this server runs (and its default), notices, components and metrics."""
    return workbench.models()
