"""POST /patch: the specification's single patch."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..routing import make_router
from ..schemas import ErrorResponse, PatchRequest, PatchResponse

router = make_router(tags=["patching"])
ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "Bad input: the field at fault and how to fix it"},
    503: {"model": ErrorResponse, "description": "The model cannot be had"},
}


@router.post("/patch", response_model=PatchResponse, responses=ERRORS)
def patch(request: PatchRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Patch one head (or cell) from the clean run into the corrupted run and report recovery."""
    return workbench.patch(request)
