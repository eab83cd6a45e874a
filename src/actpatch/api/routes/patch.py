"""POST /patch: the specification's single patch."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import WITH_BODY
from ..routing import make_router
from ..schemas.patch import PatchRequest, PatchResponse

router = make_router(tags=["patching"])


@router.post("/patch", response_model=PatchResponse, responses=WITH_BODY)
def patch(request: PatchRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Patch one head (or cell) from the clean run into the corrupted run and report recovery."""
    return workbench.patch(request)
