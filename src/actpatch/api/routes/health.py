"""GET /health: is the server up, and what does it run."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import documented
from ..routing import make_router
from ..schemas.health import HealthResponse

router = make_router(tags=["server"])


@router.get("/health", response_model=HealthResponse, responses=documented())
async def health(workbench: WorkbenchDep) -> dict[str, Any]:
    """Liveness: the version, the models loaded, the work in progress, and what is degraded."""
    # async: answered on the event loop, never waiting for a worker thread that sweeps hold
    return workbench.health()
