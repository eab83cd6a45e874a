"""Loading datasets (actpatch.datasets.load): specs, JSONL files and the errors that name the
line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actpatch.datasets import PromptDataset, factual, ioi, load_dataset, parse_jsonl
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


# A pair with a value nested `depth` lists deep, as text (json.dumps would recurse that deep).
def _nested(depth: int, key: str = "clean") -> str:
    pair = {"clean": "a", "corrupt": "b", "target": " c", "wrong": " d"}
    pair[key] = "@"
    return json.dumps(pair).replace('"@"', "[" * depth + "]" * depth)


@pytest.mark.parametrize("depth", [40, 300, 5_000, 200_000])
def test_jsonl_nested_deeply_is_refused_by_line(tmp_path: Path, depth: int) -> None:
    """What the API answers for a body nested hundreds of levels deep (422, not a crash), the
    reader says for a line: its file, its line, how deep, and what to write instead."""
    first = json.dumps({"clean": "a", "corrupt": "b", "target": " c", "wrong": " d"})
    path = _write(tmp_path / "deep.jsonl", [first, _nested(depth)])
    with pytest.raises(InputError) as info:
        load_dataset(path)
    message = info.value.message
    assert message.startswith(f"{path}, line 2: lists or objects nested {depth + 1} levels deep")
    assert "write each prompt and answer as a string" in message
    assert info.value.field == "dataset"


def test_jsonl_brackets_inside_strings_are_text(tmp_path: Path) -> None:
    """Only JSON's own lists and objects count as nesting: brackets and escaped quotes inside a
    prompt are its text."""
    clean = 'say "' + "[{" * 300
    row = {"clean": clean, "corrupt": "b", "target": " c", "positions": {"X": [1, 2]}}
    data = load_dataset(_write(tmp_path / "text.jsonl", [json.dumps(row)]))
    assert data.clean == [clean] and data.positions == [{"X": [1, 2]}]


@pytest.mark.parametrize(
    ("line", "named"),
    [
        (r'{"clean": "a \ud800 b", "corrupt": "b", "target": " c"}', "'clean'"),
        (r'{"clean": "a", "corrupt": "b", "target": " \udfff"}', "'target'"),
        (
            r'{"clean": "a", "corrupt": "b", "target": " c", "positions": {"\udc00": 1}}',
            "'positions'",
        ),
        (r'{"\ud800": "a", "clean": "a", "corrupt": "b", "target": " c"}', "a key"),
    ],
)
def test_jsonl_unpaired_surrogates_are_refused_by_line(tmp_path: Path, line: str, named: str):
    """Half a surrogate pair (a \\ud800 escape alone) is no text: no tokenizer, database or
    terminal can encode it. The API refuses it in a body; the reader refuses it in a line."""
    first = json.dumps({"clean": "x", "corrupt": "y", "target": " z"})
    path = _write(tmp_path / "half.jsonl", [first, line])
    with pytest.raises(InputError) as info:
        load_dataset(path)
    message = info.value.message
    assert message.startswith(f"{path}, line 2: {named} holds text that is not valid Unicode")
    assert "both halves of the pair" in message
    message.encode("utf-8")  # the message itself prints anywhere


def test_jsonl_surrogate_pairs_are_text(tmp_path: Path) -> None:
    line = r'{"clean": "I \ud83d\ude00 it", "corrupt": "I \u2764 it", "target": " c"}'
    data = load_dataset(_write(tmp_path / "emoji.jsonl", [line]))
    assert data.clean == ["I \N{GRINNING FACE} it"] and data.corrupt == [
        "I \N{HEAVY BLACK HEART} it"
    ]


def test_uploaded_jsonl_text_is_checked_the_same(tmp_path: Path) -> None:
    """The API's dataset_jsonl goes through the same reader, named as the field it came in."""
    with pytest.raises(InputError, match=r"^dataset_jsonl, line 1: lists or objects nested"):
        parse_jsonl(_nested(2_000), where="dataset_jsonl")
    with pytest.raises(InputError, match=r"^dataset_jsonl, line 1: 'corrupt' holds text"):
        parse_jsonl(r'{"clean": "a", "corrupt": "\udbff", "target": " c"}', where="dataset_jsonl")


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


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("ioi:-3", "N, the number of pairs, must be 1 or more, e.g. 'ioi:50'"),
        ("add:0", "N, the number of pairs, must be 1 or more, e.g. 'add:50'"),
        ("factual:4:-2", "SEED must be 0 or more, e.g. 'factual:4:2'"),
    ],
)
def test_a_number_out_of_range_is_named_as_such(spec: str, says: str) -> None:
    """A negative N or SEED is a whole number: the error says which is out of range, not that
    it cannot be read."""
    with pytest.raises(InputError) as info:
        load_dataset(spec)
    assert says in info.value.message and info.value.field == "dataset"
    assert "whole numbers" not in info.value.message
