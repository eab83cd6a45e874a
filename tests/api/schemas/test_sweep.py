"""The sweep's request: its position and batching choices and defaults are the core's, and so
is the reading of an uploaded dataset (`dataset_jsonl`)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from actpatch.api.schemas import common
from actpatch.api.schemas.sweep import SweepRequest, SweepResponse
from actpatch.datasets import parse_jsonl, unencodable
from actpatch.errors import InputError
from actpatch.patching.options import OPTIONS
from tests.api.schemas.test_common import enum_and_default


@pytest.mark.parametrize("field", ["positions", "batching"])
def test_dataset_options_come_from_the_core(field: str) -> None:
    option = OPTIONS[field]
    assert enum_and_default(SweepRequest, field) == (list(option.choices), option.default)


def test_a_results_position_convention_is_a_resolved_one() -> None:
    prop = SweepResponse.model_json_schema()["properties"]["position_convention"]
    assert prop["enum"] == [p for p in OPTIONS["positions"].choices if p != "auto"]


PAIR = {"clean": "Paris is the capital of", "corrupt": "Berlin is the capital of", "target": " F"}


def _refusal(text: str) -> InputError:
    """The error SweepRequest answers for `text` as dataset_jsonl."""
    with pytest.raises(ValidationError) as info:
        SweepRequest(dataset_jsonl=text)
    error = info.value.errors()[0]["ctx"]["error"]
    assert isinstance(error, InputError)
    return error


def _nested(depth: int) -> str:
    return '{"clean": ' + "[" * depth + '"x"' + "]" * depth + ', "corrupt": "b", "target": " c"}'


@pytest.mark.parametrize(
    ("line", "said"),
    [
        # 40 levels: no RecursionError in JSON's reader, yet no pair's line (3 levels at most)
        (_nested(40), "line 2: lists or objects nested 41 levels deep"),
        (_nested(5_000), "line 2: lists or objects nested 5001 levels deep"),
        (r'{"clean": "a \ud800 b", "corrupt": "b", "target": " c"}', "line 2: 'clean' holds"),
        (json.dumps({"clean": "a", "corrupt": "b"}), "line 2: missing key(s) ['target']"),
        (json.dumps({**PAIR, "answer": " x"}), "line 2: unknown key(s) ['answer']"),
        ("[1, 2]", "line 2: expected a JSON object, got list"),
    ],
)
def test_dataset_jsonl_is_read_by_the_cores_reader(line: str, said: str) -> None:
    """An uploaded dataset is checked by the reader the CLI's --dataset FILE.jsonl uses
    (`parse_jsonl`): each refusal says the line and what is wrong there, and names the field
    the text came in (dataset_jsonl), when the request is read."""
    text = json.dumps(PAIR) + "\n" + line
    error = _refusal(text)
    assert error.field == "dataset_jsonl"
    assert error.message.startswith(f"dataset_jsonl, {said}")
    with pytest.raises(InputError) as core:
        parse_jsonl(text, where="dataset_jsonl")
    assert error.message == core.value.message  # the same words as the core's reader
    assert SweepRequest(dataset_jsonl=json.dumps(PAIR)).dataset_jsonl == json.dumps(PAIR)


def test_no_pairs_is_refused_on_the_field() -> None:
    error = _refusal("\n  \n")
    assert error.field == "dataset_jsonl" and "has no pairs" in error.message


def test_request_text_is_checked_by_the_cores_unicode_check() -> None:
    """Every request body's text is checked by the core's `unencodable`, the one the dataset
    reader uses: the API keeps no copy of its own."""
    assert common.unencodable is unencodable
    with pytest.raises(ValidationError, match="clean_prompt holds text that is not valid"):
        SweepRequest(clean_prompt="a \ud800", corrupt_prompt="b", target_token=" c")
