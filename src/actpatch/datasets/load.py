"""Loading a dataset by name: the registry of generated datasets and JSONL files of pairs.

`load_dataset("ioi:N[:SEED]" | "factual:N[:SEED]" | "mib-ioi:N" | "add:N" | "sub:N" |
"mcqa:N" | "path/to/pairs.jsonl")`: a spec names a generator of `DATASET_SPECS` (the IOI and
factual tasks, and MIB's), anything else is read as a JSONL file of pairs (`parse_jsonl`).
Every generator takes the served model's tokenizer: `load_dataset(spec,
tokenizer=model.tokenizer)`. This module sits above the generators: they know nothing of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from actpatch.datasets.factual_task import factual
from actpatch.datasets.ioi_task import ioi
from actpatch.datasets.mib_tasks import arithmetic, mcqa, mib_ioi
from actpatch.datasets.pairs import Positions, PromptDataset
from actpatch.errors import InputError

_JSONL_KEYS = ("clean", "corrupt", "target", "wrong", "positions", "corrupt_positions")
# A pair's line nests three levels at most ({"positions": {"IO": [2, 5]}}). A line nested
# hundreds of levels deep is no pair, and JSON's reader would recurse as deep as it goes (a
# RecursionError, not a message): it is refused before it is parsed.
MAX_DEPTH = 32
# A JSON string (its escapes included), and the brackets that open and close lists and objects.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_BRACKETS = re.compile(r"[\[\]{}]")
# N or SEED of a spec as written: a whole number, negative ones included (so that 'ioi:-3' is
# refused for being below 1, not as unreadable).
_INTEGER = re.compile(r"-?\d+")


# The generated datasets a spec "NAME:N[:SEED]" names, with what each is; the CLI's and the
# API's help texts are made from this table. Every generator draws only the words that are one
# token for the served model's tokenizer.
DATASET_SPECS: dict[str, str] = {
    "ioi": "indirect object identification",
    "factual": "factual recall",
    "mib-ioi": "MIB's IOI templates",
    "add": "MIB's two-operand addition",
    "sub": "MIB's two-operand subtraction",
    "mcqa": "MIB's colour multiple choice",
}
# "'ioi:N', 'factual:N', ..., 'mcqa:N'", for help texts.
DATASET_SPEC_LIST = ", ".join(f"'{name}:N'" for name in DATASET_SPECS)
SPEC_HELP = (
    "Give "
    + ", ".join(f"'{name}:N' ({what})" for name, what in DATASET_SPECS.items())
    + ", each with an optional seed ('ioi:N:SEED'), or the path of a JSONL file with one pair "
    'per line: {"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y"} ("wrong" '
    "optional)."
)


def spec_numbers(spec: str, hint: str = SPEC_HELP) -> tuple[int, int]:
    """N and SEED of a spec "NAME:N[:SEED]" (SEED 0 when not given); a teaching error for a
    spec without them, one that is not a whole number, an N below 1 or a SEED below 0. `hint`
    ends the message for a spec that cannot be read (a server's offers no file's path)."""
    head = spec.split(":", 1)[0]
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(_INTEGER.fullmatch(p.strip()) for p in parts[1:]):
        raise InputError(
            f"Cannot read dataset spec {spec!r}: N and SEED must be whole numbers. " + hint,
            field="dataset",
        )
    n, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
    if n < 1:
        raise InputError(
            f"Dataset spec {spec!r} asks for {n} pairs: N, the number of pairs, must be 1 or "
            f"more, e.g. '{head}:50'.",
            field="dataset",
        )
    if seed < 0:
        raise InputError(
            f"Dataset spec {spec!r} has the seed {seed}: SEED must be 0 or more, e.g. "
            f"'{head}:{n}:{-seed}'.",
            field="dataset",
        )
    return n, seed


def load_dataset(spec: str, tokenizer: Any = None) -> PromptDataset:
    """The dataset named by `spec`: "NAME:N[:SEED]" (`DATASET_SPECS`) or a JSONL file of pairs.

    `tokenizer` is the served model's (a Hugging Face tokenizer; None: GPT-2's): every
    generated dataset draws only the names, facts, numbers and labels that are one token in it,
    and counts role positions in its tokens.
    """
    head = spec.split(":", 1)[0]
    if head in DATASET_SPECS and not Path(spec).exists():
        return generated_dataset(spec, tokenizer)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(
            f"Dataset {spec!r} is neither a known spec nor a file. " + SPEC_HELP, field="dataset"
        )
    return _read_jsonl(path)


def generated_dataset(spec: str, tokenizer: Any = None) -> PromptDataset:
    """The generated dataset "NAME:N[:SEED]" names (`DATASET_SPECS`), never a file: what a
    server, which reads no file a request names, asks for."""
    head = spec.split(":", 1)[0]
    if head not in DATASET_SPECS:
        raise InputError(f"Unknown dataset {spec!r}. " + SPEC_HELP, field="dataset")
    n, seed = spec_numbers(spec)
    if head == "ioi":
        return ioi(n, seed, tokenizer=tokenizer)
    if head == "factual":
        return factual(n, seed, tokenizer=tokenizer)
    if head == "mib-ioi":
        return mib_ioi(n, seed, tokenizer=tokenizer)
    if head == "mcqa":
        return mcqa(n, seed, tokenizer=tokenizer)
    return arithmetic(n, seed, op="add" if head == "add" else "sub", tokenizer=tokenizer)


def _read_jsonl(path: Path) -> PromptDataset:
    """The pairs of a JSONL file, one {"clean", "corrupt", "target", "wrong"?} object a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read dataset file {path}: {exc}.", field="dataset") from exc
    return parse_jsonl(text, name=path.stem, where=str(path))


def parse_jsonl(text: str, *, name: str = "pairs", where: str = "pairs") -> PromptDataset:
    """The pairs of JSONL text (a file's, or one uploaded to the server), one object a line.

    Each line: {"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y",
    "positions": {"IO": 2, "S2": 10, "END": 14}, "corrupt_positions": {...}}; "wrong",
    "positions" and "corrupt_positions" are optional, but on every line or on none, and every
    line names the same roles. Errors name the line and the field. What no reader can take is
    refused by its line too, as the API refuses it in a request body: lists or objects nested
    more than MAX_DEPTH deep (before parsing: JSON's reader would recurse that deep), and text
    with half a surrogate pair (a lone "\\ud800" escape, which nothing can encode later).
    """

    def fail(lineno: int, why: str, key: str = "") -> InputError:
        # The error's field is the input at fault (the dataset); the message names the key.
        return InputError(
            f"{where}, line {lineno}: {why}. Each line must be a JSON object "
            '{"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y"} with string '
            'values ("wrong" optional, but on every line or on none), and optionally '
            '"positions": {"IO": 2, "S2": 10, "END": 14} (token positions, BOS = 0).',
            field="dataset",
        )

    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        # (a line with few brackets cannot nest deeply: it is not scanned)
        if line.count("[") + line.count("{") > MAX_DEPTH and (depth := nesting(line)) > MAX_DEPTH:
            raise fail(
                lineno,
                f"lists or objects nested {depth} levels deep (a pair's line needs 3 at most; "
                f"more than {MAX_DEPTH} is not read): write each prompt and answer as a string",
            )
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise fail(lineno, f"expected a JSON object, got {type(row).__name__}")
        # Half a surrogate pair comes from a \u escape (or from text that was never UTF-8).
        suspect = "\\u" in line or unencodable(line) is not None
        for key, value in row.items() if suspect else ():
            if unencodable([key, value]) is not None:
                name = repr(key) if unencodable(key) is None else "a key"
                raise fail(
                    lineno,
                    f"{name} holds text that is not valid Unicode: an unpaired surrogate (a JSON "
                    "escape such as \\ud800 without its other half). Write the text itself, "
                    "saved as UTF-8, or both halves of the pair (\\ud83d\\ude00 is one emoji)",
                    str(key),
                )
        unknown = sorted(set(row) - set(_JSONL_KEYS))
        if unknown:
            raise fail(lineno, f"unknown key(s) {unknown}", unknown[0])
        missing = [k for k in ("clean", "corrupt", "target") if k not in row]
        if missing:
            raise fail(lineno, f"missing key(s) {missing}", missing[0])
        not_str = [
            k for k, v in row.items() if not isinstance(v, str) and not k.endswith("positions")
        ]
        if not_str:
            raise fail(lineno, f"value(s) of {not_str} are not strings", not_str[0])
        for key in ("positions", "corrupt_positions"):
            if key in row:
                row[key] = _read_positions(row[key], lineno, key, fail)
        rows.append((lineno, row))
    if not rows:
        raise InputError(f"Dataset {where} has no pairs. " + SPEC_HELP, field="dataset")
    first = rows[0][1]
    for key in ("wrong", "positions", "corrupt_positions"):
        for lineno, row in rows:
            if (key in row) != (key in first):
                raise fail(lineno, f"{key!r} is given on some lines and not on others", key)
    for key in ("positions", "corrupt_positions"):
        if key not in first:
            continue
        roles = set(first[key])
        for lineno, row in rows:
            if set(row[key]) != roles:
                raise fail(
                    lineno,
                    f"{key} names roles {sorted(row[key])} but line {rows[0][0]} names "
                    f"{sorted(roles)}: every pair must name the same roles",
                    key,
                )
    if "corrupt_positions" in first and "positions" not in first:
        raise fail(rows[0][0], "corrupt_positions needs positions too", "corrupt_positions")
    return PromptDataset(
        clean=[r["clean"] for _, r in rows],
        corrupt=[r["corrupt"] for _, r in rows],
        target=[r["target"] for _, r in rows],
        wrong=[r["wrong"] for _, r in rows] if "wrong" in first else None,
        name=name,
        positions=[r["positions"] for _, r in rows] if "positions" in first else None,
        corrupt_positions=(
            [r["corrupt_positions"] for _, r in rows] if "corrupt_positions" in first else None
        ),
        origins=[f"{where}, line {lineno}" for lineno, _ in rows],
    )


def nesting(line: str) -> int:
    """How deep a line of JSON nests lists and objects (1 for a flat object), read without
    parsing it, so that any depth is safe; brackets inside strings do not count."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub('""', line)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def unencodable(value: Any) -> str | None:
    """The first string in `value` (nested lists and objects, keys too) that is not Unicode
    text, or None. JSON's escapes can carry half of a surrogate pair ("\\ud800"), which no
    tokenizer, database or terminal can encode. Walks without recursion: any depth is safe."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return item
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return None


def _read_positions(
    value: Any, lineno: int, key: str, fail: Callable[[int, str, str], InputError]
) -> Positions:
    """A JSONL line's {"role": position or [positions]} as {"role": [positions]}."""
    if not isinstance(value, dict) or not value:
        raise fail(
            lineno,
            f'{key} must be an object of roles, e.g. {{"IO": 2, "S2": 10, "END": 14}}',
            key,
        )
    out: Positions = {}
    for role, where in value.items():
        where = [where] if isinstance(where, int) and not isinstance(where, bool) else where
        if (
            not isinstance(where, list)
            or not where
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in where)
        ):
            raise fail(
                lineno,
                f"{key}: role {role!r} must be a token position (a whole number >= 0, BOS = 0) "
                f"or a non-empty list of them, got {where!r}",
                key,
            )
        out[str(role)] = list(where)
    return out
