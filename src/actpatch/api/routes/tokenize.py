"""POST /tokenize: the tokens of prompts and answers, for live alignment and warnings."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import WITH_BODY
from ..routing import make_router
from ..schemas.tokenize import TokenizeRequest, TokenizeResponse

router = make_router(tags=["tokens"])


@router.post("/tokenize", response_model=TokenizeResponse, responses=WITH_BODY)
def tokenize(request: TokenizeRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Token strings and ids of the prompts and answers, their alignment, and live warnings."""
    return workbench.tokenize(request)
