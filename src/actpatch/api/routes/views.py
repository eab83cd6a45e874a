"""POST /attention, /dla, /lens: look inside what patching finds."""

from __future__ import annotations

from typing import Any

from .. import views
from ..deps import WorkbenchDep
from ..responses import WITH_BODY
from ..routing import make_router
from ..schemas.views import (
    AttentionRequest,
    AttentionResponse,
    DLARequest,
    DLAResponse,
    LensRequest,
    LensResponse,
)

router = make_router(tags=["views"])


@router.post("/attention", response_model=AttentionResponse, responses=WITH_BODY)
def attention(request: AttentionRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """A head's attention pattern on the clean and corrupted prompts, rows summing to 1."""
    return views.attention(workbench, request)


@router.post("/dla", response_model=DLAResponse, responses=WITH_BODY)
def dla(request: DLARequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Direct logit attribution: each head's, MLP's and the embeddings' direct share."""
    return views.dla(workbench, request)


@router.post("/lens", response_model=LensResponse, responses=WITH_BODY)
def lens(request: LensRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """The logit lens: the metric, the answer's rank and the top tokens per layer."""
    return views.lens(workbench, request)
