"""Request schemas: their option lists are the engine's, written once in the core."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from actpatch.api.schemas import (
    EdgesRequest,
    PatchRequest,
    PathRequest,
    SweepRequest,
    VerifyRequest,
)
from actpatch.patching import COMPONENTS, DIRECTIONS, METRICS, options
from actpatch.patching.components import ALIASES
from actpatch.patching.options import OPTIONS

BASE = {"clean_prompt": "a", "corrupt_prompt": "b", "target_token": " c"}


@pytest.mark.parametrize("request_model", [PatchRequest, SweepRequest])
def test_options_come_from_the_core(request_model: type) -> None:
    properties = request_model.model_json_schema()["properties"]
    metric = next(o for o in properties["metric"]["anyOf"] if "enum" in o)
    assert metric["enum"] == list(METRICS)
    assert properties["direction"]["enum"] == list(DIRECTIONS)
    assert properties["component"]["enum"] == [*COMPONENTS, *ALIASES]


def test_component_aliases_are_accepted_and_unknown_names_refused() -> None:
    assert SweepRequest(**BASE, component="heads").component == "heads"
    with pytest.raises(ValidationError, match="Choose one of"):
        SweepRequest(**BASE, component="neurons")


def enum_and_default(request_model: type[BaseModel], field: str) -> tuple[list[Any], Any]:
    """A request field's choices as the JSON schema lists them, and its default."""
    prop = request_model.model_json_schema()["properties"][field]
    enum = next(o for o in prop.get("anyOf", [prop]) if "enum" in o)["enum"]
    return enum, prop.get("default")


@pytest.mark.parametrize(
    "request_model", [PatchRequest, SweepRequest, PathRequest, EdgesRequest, VerifyRequest]
)
def test_the_default_direction_is_the_cores(request_model: type[BaseModel]) -> None:
    assert enum_and_default(request_model, "direction") == (
        list(OPTIONS["direction"].choices),
        options.DEFAULT_DIRECTION,
    )
