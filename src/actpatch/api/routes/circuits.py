"""Circuit routes: path patching, edge attribution, circuit evaluation, exact edge checks, and
GPT-2 small's known head roles."""

from __future__ import annotations

from typing import Any

from ..deps import WorkbenchDep
from ..responses import WITH_BODY, documented
from ..routing import make_router
from ..schemas.circuits import (
    EdgesRequest,
    EdgesResponse,
    EvaluateRequest,
    EvaluateResponse,
    KnownRoles,
    PathRequest,
    PathResponse,
    VerifyRequest,
    VerifyResponse,
)

router = make_router(tags=["circuits"])


@router.post("/path", response_model=PathResponse, responses=WITH_BODY)
def path(request: PathRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Path patching (Wang et al. 2022): each sender's effect through the receivers only."""
    return workbench.path(request)


@router.post("/circuit/edges", response_model=EdgesResponse, responses=WITH_BODY)
def circuit_edges(request: EdgesRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Score every edge of the graph with EAP or EAP-IG, strongest first."""
    return workbench.circuit_edges(request)


@router.post("/circuit/evaluate", response_model=EvaluateResponse, responses=WITH_BODY)
def circuit_evaluate(request: EvaluateRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Faithfulness of a circuit, or of the top n edges of a ranking for each n."""
    return workbench.circuit_evaluate(request)


@router.post("/circuit/verify", response_model=VerifyResponse, responses=WITH_BODY)
def circuit_verify(request: VerifyRequest, workbench: WorkbenchDep) -> dict[str, Any]:
    """Patch each edge alone, exactly, and report its effect on the metric."""
    return workbench.circuit_verify(request)


@router.get("/circuit/roles", response_model=KnownRoles, responses=documented(422, 503))
def circuit_roles(workbench: WorkbenchDep, model: str | None = None) -> dict[str, Any]:
    """GPT-2 small's known head roles (Wang et al. 2022); empty for any other model."""
    return workbench.known_roles(model)
