"""The sweep's request: its position and batching choices and defaults are the core's."""

from __future__ import annotations

import pytest

from actpatch.api.schemas.sweep import SweepRequest, SweepResponse
from actpatch.patching.options import OPTIONS
from tests.api.schemas.test_common import enum_and_default


@pytest.mark.parametrize("field", ["positions", "batching"])
def test_dataset_options_come_from_the_core(field: str) -> None:
    option = OPTIONS[field]
    assert enum_and_default(SweepRequest, field) == (list(option.choices), option.default)


def test_a_results_position_convention_is_a_resolved_one() -> None:
    prop = SweepResponse.model_json_schema()["properties"]["position_convention"]
    assert prop["enum"] == [p for p in OPTIONS["positions"].choices if p != "auto"]
