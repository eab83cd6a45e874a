"""The attribution request: its methods and default are the core's; rank is left to the engine."""

from __future__ import annotations

from actpatch.api.schemas.attribute import AttributeRequest
from actpatch.patching import METRICS
from actpatch.patching.options import OPTIONS
from tests.api.schemas.test_common import enum_and_default

BASE = {"clean_prompt": "a", "corrupt_prompt": "b", "target_token": " c"}


def test_methods_come_from_the_core() -> None:
    option = OPTIONS["attribution_method"]
    assert enum_and_default(AttributeRequest, "method") == (list(option.choices), option.default)


def test_every_metric_is_taken_so_the_engine_refuses_rank_with_its_own_message() -> None:
    assert enum_and_default(AttributeRequest, "metric")[0] == list(METRICS)
    assert AttributeRequest(**BASE, metric="rank").metric == "rank"
