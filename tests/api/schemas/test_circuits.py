"""The circuit requests: edge methods, gradient metrics, kv conventions and circuit ablations,
their choices and defaults, are the core's."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from actpatch.api.schemas.circuits import EdgesRequest, EvaluateRequest, VerifyRequest
from actpatch.patching import options
from actpatch.patching.options import OPTIONS
from tests.api.schemas.test_common import enum_and_default

BASE = {"clean_prompt": "a", "corrupt_prompt": "b", "target_token": " c"}


@pytest.mark.parametrize(
    ("request_model", "field", "option"),
    [
        (EdgesRequest, "method", "edge_method"),
        (EdgesRequest, "kv", "kv"),
        (EvaluateRequest, "ablation", "circuit_ablation"),
        (EvaluateRequest, "kv", "kv"),
        (VerifyRequest, "kv", "kv"),
    ],
)
def test_options_come_from_the_core(
    request_model: type[BaseModel], field: str, option: str
) -> None:
    choices = OPTIONS[option]
    assert enum_and_default(request_model, field) == (list(choices.choices), choices.default)


def test_edge_attribution_takes_only_metrics_with_a_gradient() -> None:
    assert enum_and_default(EdgesRequest, "metric")[0] == list(OPTIONS["gradient_metric"].choices)
    with pytest.raises(ValidationError):
        EdgesRequest(**BASE, metric="rank")
    assert EdgesRequest(**BASE).steps == options.DEFAULT_STEPS
