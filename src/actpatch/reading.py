"""A saved result read back: `read_result(source)` gives the result object its JSON was written
from, to show, tabulate (`to_pandas()`) or compare in a notebook, without recomputing anything.

It reads what every writer writes: a result's `to_dict()`, the CLI's `--json` and `--out`
files, `--export x.json` and `actpatch runs export N x.json` (the result alone), and a stored
run as `actpatch runs show N` prints it and the API's `GET /runs/{id}` returns it (the result
beside its request: the result is taken). The JSON's `result` field names its kind; a file
written before that field existed is known by the fields only that kind writes.

It knows both the patching results and the views' (`actpatch.views.results`), so it stands above
both, as `export` does: neither imports it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from actpatch.errors import InputError
from actpatch.patching.results import (
    AblationResult,
    AttributionResult,
    CircuitResult,
    EdgeResult,
    PatchResult,
    PathPatchResult,
    SweepResult,
    VerifyResult,
)
from actpatch.views.results import AttentionResult, DLAResult, LensResult

SavedResult = (
    SweepResult
    | AblationResult
    | PatchResult
    | AttributionResult
    | PathPatchResult
    | CircuitResult
    | EdgeResult
    | VerifyResult
    | AttentionResult
    | DLAResult
    | LensResult
)
_CLASSES: tuple[Any, ...] = (
    SweepResult,
    AblationResult,
    PatchResult,
    AttributionResult,
    PathPatchResult,
    CircuitResult,
    EdgeResult,
    VerifyResult,
    AttentionResult,
    DLAResult,
    LensResult,
)
# Each kind (its JSON's "result" field) and the class that reads it back.
KINDS: dict[str, Any] = {cls.result_kind: cls for cls in _CLASSES}
# The history's names of a run's kind, where they are not the result's (`actpatch.history`).
RUN_KINDS = {"evaluation": "circuit"}


def _is(data: Mapping[str, Any], *keys: str) -> bool:
    return all(k in data for k in keys)


def _runs(data: Mapping[str, Any], *keys: str) -> bool:
    """Whether `clean` is a run's object holding `keys` (the views' JSON nests each run)."""
    clean = data.get("clean")
    return isinstance(clean, Mapping) and _is(clean, *keys)


# A file written before the "result" field: each kind by the fields only it writes, most
# particular first (an ablation is a sweep with `ablation`; edge attribution's edges have scores
# and `n_edges`, exact checks have neither).
_SIGNS: tuple[tuple[str, Callable[[Mapping[str, Any]], bool]], ...] = (
    ("ablation", lambda d: _is(d, "raw", "axes", "ablation")),
    ("sweep", lambda d: _is(d, "raw", "normalized", "axes", "component")),
    ("attribution", lambda d: _is(d, "estimate", "score", "axes")),
    ("patch", lambda d: _is(d, "patched_prob", "top_clean", "top_patched")),
    ("path", lambda d: _is(d, "senders", "receivers", "raw")),
    ("circuit", lambda d: _is(d, "points", "total_edges")),
    ("edges", lambda d: _is(d, "edges", "n_edges", "method")),
    ("verify", lambda d: _is(d, "edges", "metric", "clean") and "n_edges" not in d),
    ("attention", lambda d: _is(d, "layer", "head", "tokens", "corrupt_tokens")),
    ("dla", lambda d: _runs(d, "heads", "mlp", "embed")),
    ("lens", lambda d: _is(d, "labels", "target") and _runs(d, "metric", "target_rank")),
)
WRITERS = (
    "a result's to_dict(), the CLI's --json or --out, --export x.json, `actpatch runs show N` "
    "or `actpatch runs export N x.json`"
)


def read_result(source: Mapping[str, Any] | str | Path) -> SavedResult:
    """The result object a saved JSON holds: a sweep (`SweepResult`), an ablation, a patch,
    an attribution, path patching, a circuit's evaluation, edge attribution, exact edge checks,
    or a view (attention, DLA, logit lens).

    `source` is the JSON as a dict, a path to a JSON file, or the JSON text. Nothing is
    recomputed: the numbers are the file's (a view's, to its 6 significant digits). Refuses,
    saying why, JSON that is no actpatch result.

        >>> heads = actpatch.read_result("out/sweep_z.json")
        >>> heads.to_pandas()
    """
    data = _unwrapped(_json_of(source))
    kind = _kind_of(data)
    try:
        return KINDS[kind].from_dict(data)  # type: ignore[no-any-return]
    except KeyError as missing:
        raise InputError(
            f"This JSON is not a whole actpatch {kind} result: it lacks {missing}. Give the "
            f"file as it was written ({WRITERS}).",
            field="source",
        ) from None
    except (TypeError, ValueError, AttributeError) as error:
        raise InputError(
            f"This JSON is not a readable actpatch {kind} result: {error}. Give the file as "
            f"it was written ({WRITERS}).",
            field="source",
        ) from None


def _json_of(source: Mapping[str, Any] | str | Path) -> Any:
    """The JSON value `source` is, holds (a file) or writes (text)."""
    if isinstance(source, Mapping):
        return source
    if isinstance(source, str) and source.lstrip().startswith(("{", "[")):
        return _parsed(source, "The text given")
    if not isinstance(source, str | Path):
        raise InputError(
            f"read_result takes a dict, a path to a JSON file or JSON text, not "
            f"{type(source).__name__}.",
            field="source",
        )
    path = Path(source).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise InputError(
            f"{str(path)!r} {what}: give the path of a JSON file an actpatch run wrote (e.g. "
            "out/sweep_z.json, from --out), the JSON text, or a dict.",
            field="source",
        )
    return _parsed(path.read_text(encoding="utf-8"), f"The file {path}")


def _parsed(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(
            f"{where} is not JSON ({error.msg} at line {error.lineno}, column {error.colno}): "
            f"give the JSON an actpatch run wrote ({WRITERS}).",
            field="source",
        ) from None


def _unwrapped(data: Any) -> dict[str, Any]:
    """The result itself: a stored run's (its `result` beside its `request`, `kind` naming the
    run's kind where the result does not), a job's (`result`, else the sweep so far in
    `partial`), else `data`."""
    if not isinstance(data, Mapping):
        raise InputError(
            f"This JSON is not an actpatch result: it is a {type(data).__name__}, not an "
            f"object. Give what {WRITERS} wrote.",
            field="source",
        )
    inner = data.get("result")
    if inner is None and isinstance(data.get("partial"), Mapping):  # a running sweep's job
        inner = data["partial"]
    if isinstance(inner, Mapping):  # a stored run, or a job
        result = dict(inner)
        kind = data.get("kind")
        if "result" not in result and isinstance(kind, str):
            result["result"] = RUN_KINDS.get(kind, kind)
        return result
    return dict(data)


def _kind_of(data: dict[str, Any]) -> str:
    """The kind its `result` field names, else the one its fields are those of."""
    named = data.get("result")
    if isinstance(named, str):
        kind = RUN_KINDS.get(named, named)
        if kind in KINDS:
            return kind
        raise InputError(
            f"This JSON is not an actpatch result actpatch can read: its result kind {named!r} "
            f"is none of {', '.join(KINDS)}. A newer actpatch may have written it: upgrade.",
            field="source",
        )
    for kind, looks in _SIGNS:
        if looks(data):
            return kind
    if _is(data, "cfg", "nodes", "edges"):
        raise InputError(
            "This JSON is not an actpatch result: it is a MIB importance-score file (what "
            "`circuit edges --format mib` writes). Evaluate it with `actpatch circuit evaluate "
            "--circuit FILE`, or read it with actpatch.patching.mib.from_mib.",
            field="source",
        )
    keys = ", ".join(list(data)[:8]) or "none"
    raise InputError(
        f"This JSON is not an actpatch result: it names no result kind, and its fields ({keys}) "
        f"are none of a sweep's, a patch's, an attribution's, a circuit's or a view's. Give "
        f"what {WRITERS} wrote.",
        field="source",
    )


__all__ = ["KINDS", "SavedResult", "read_result"]
