"""Loading datasets (actpatch.datasets.load): specs, JSONL files and the errors that name the
line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actpatch.datasets import PromptDataset, factual, ioi, load_dataset
from actpatch.errors import InputError
from actpatch.tokenizer import gpt2_tokenizer


def test_load_dataset_specs() -> None:
    assert load_dataset("ioi:12") == ioi(12, 0)
    assert load_dataset("ioi:12:3") == ioi(12, 3)
    assert load_dataset("factual:6:2") == factual(6, 2)
    for bad in ("ioi:x", "ioi:1:2:3", "factual:", "nope.jsonl"):
        with pytest.raises(InputError) as info:
            load_dataset(bad)
        assert info.value.field == "dataset" and "ioi:N" in info.value.message


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_load_dataset_jsonl(tmp_path: Path) -> None:
    rows = [
        {"clean": "A B", "corrupt": "A C", "target": " x", "wrong": " y"},
        {"clean": "D E", "corrupt": "D F", "target": " z", "wrong": " w"},
    ]
    spec = _write(tmp_path / "pairs.jsonl", [json.dumps(r) for r in rows] + [""])
    data = load_dataset(spec)
    assert data == PromptDataset(
        ["A B", "D E"], ["A C", "D F"], [" x", " z"], [" y", " w"], "pairs"
    )
    no_wrong = [{k: v for k, v in r.items() if k != "wrong"} for r in rows]
    assert (
        load_dataset(_write(tmp_path / "nw.jsonl", [json.dumps(r) for r in no_wrong])).wrong is None
    )


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"clean": "a", "corrupt": "b"}', "line 2: missing key(s) ['target']"),
        (
            '{"clean": "a", "corrupted": "b", "target": " c"}',
            "line 2: unknown key(s) ['corrupted']",
        ),
        ('{"clean": "a", "corrupt": "b", "target": 3}', "line 2: value(s) of ['target']"),
        ('{"clean": "a", "corrupt": "b", "target": " c"}', "line 2: 'wrong' is given on some"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, second_line: str, expected: str) -> None:
    first = json.dumps({"clean": "a", "corrupt": "b", "target": " c", "wrong": " d"})
    spec = _write(tmp_path / "bad.jsonl", [first, second_line])
    with pytest.raises(InputError) as info:
        load_dataset(spec)
    assert expected in info.value.message and info.value.field == "dataset"


def test_empty_jsonl_and_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no pairs"):
        load_dataset(_write(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(InputError, match="different lengths"):
        PromptDataset(["a"], ["b", "c"], [" d"], None, "bad")


def test_jsonl_positions(tmp_path: Path) -> None:
    rows = [
        {"clean": "A B", "corrupt": "A C", "target": " x", "positions": {"X": 1, "Y": [2]}},
        {"clean": "D E", "corrupt": "D F", "target": " z", "positions": {"Y": 2, "X": 1}},
    ]
    data = load_dataset(_write(tmp_path / "roles.jsonl", [json.dumps(r) for r in rows]))
    assert data.positions == [{"X": [1], "Y": [2]}, {"Y": [2], "X": [1]}]
    assert data.roles == ["X", "Y"] and data.origin(1).endswith("roles.jsonl, line 2")


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ('{"clean": "a", "corrupt": "b", "target": " c"}', "'positions' is given on some"),
        (
            '{"clean": "a", "corrupt": "b", "target": " c", "positions": {"IO": -1}}',
            "positions: role 'IO' must be a token position",
        ),
        (
            '{"clean": "a", "corrupt": "b", "target": " c", "positions": {"S2": 1}}',
            "positions names roles ['S2'] but line 1 names ['IO']",
        ),
    ],
)
def test_jsonl_position_errors_name_the_line(tmp_path: Path, second_line: str, expected: str):
    first = json.dumps({"clean": "a", "corrupt": "b", "target": " c", "positions": {"IO": 1}})
    with pytest.raises(InputError) as info:
        load_dataset(_write(tmp_path / "bad.jsonl", [first, second_line]))
    assert "line 2" in info.value.message and expected in info.value.message


def test_check_names_the_line_of_a_multi_token_answer_or_a_role_outside(tmp_path: Path) -> None:

    tok = gpt2_tokenizer()

    def to_tokens(text: str) -> list[int]:
        return [50256, *tok(text, add_special_tokens=False)["input_ids"]]

    def answer(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    good = {"clean": "When Mary left", "corrupt": "When John left", "target": " Mary"}
    lines = [json.dumps(good), json.dumps({**good, "target": " Bartholomew"})]
    data = load_dataset(_write(tmp_path / "a.jsonl", lines))
    with pytest.raises(InputError, match=r"a.jsonl, line 2: the target answer ' Bartholomew' is"):
        data.check(to_tokens, answer)
    lines = [
        json.dumps({**good, "positions": {"END": 3}}),
        json.dumps({**good, "positions": {"END": 9}}),
    ]
    data = load_dataset(_write(tmp_path / "b.jsonl", lines))
    with pytest.raises(InputError, match=r"b.jsonl, line 2: positions puts role 'END' at \[9\]"):
        data.check(to_tokens, answer)
