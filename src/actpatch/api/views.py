"""The views inside (attention, DLA, logit lens) as the API answers them: the workbench's
experiment cache and compute slot, the core's view, the registry's model name."""

from __future__ import annotations

import time
from typing import Any

from actpatch import views

from .schemas.views import AttentionRequest, DLARequest, LensRequest
from .workbench import Workbench, respond


def _answer(workbench: Workbench, kind: str, request: Any, compute: Any) -> dict[str, Any]:
    """Compute a view in the workbench's compute slot, answer it under the registry's name for
    its model, and keep it in the history as a run of `kind`."""
    t0 = time.perf_counter()
    exp, cached = workbench.experiment(request)
    with workbench.computing(synchronous=True):
        result = compute(exp)
    out = respond(
        result.to_dict(),
        workbench.registry.name_of(exp.model),
        cached=cached,
        seconds=round(time.perf_counter() - t0, 4),
    )
    return workbench.history.keep(kind, request.model_dump(exclude_none=True), out)


def attention(workbench: Workbench, request: AttentionRequest) -> dict[str, Any]:
    return _answer(
        workbench,
        "attention",
        request,
        lambda exp: views.attention_pattern(exp, request.layer, request.head, pair=request.pair),
    )


def dla(workbench: Workbench, request: DLARequest) -> dict[str, Any]:
    return _answer(workbench, "dla", request, views.direct_logit_attribution)


def lens(workbench: Workbench, request: LensRequest) -> dict[str, Any]:
    return _answer(
        workbench,
        "lens",
        request,
        lambda exp: views.logit_lens(exp, request.metric, k=request.k, sublayers=request.sublayers),
    )
