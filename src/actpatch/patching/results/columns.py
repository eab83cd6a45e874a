"""The patching results' tidy tables, defined once: their columns and rows, from a result's JSON.

A result's `to_pandas()` (`display.frames`) and its CSV export (`actpatch.export`) are both built
here, as the views' are in `views.columns`, so a notebook and a spreadsheet read the same table:
the same columns, in the same order, one row per value. The rows are made from the result's JSON
(`to_dict()`, as the history stores it), in plain Python: the CSV export needs neither pandas nor
torch. A number the JSON holds as null (NaN) is NaN here; a cell that has no value (a patch's
`pos` when none was given, a path sender's `head` for an MLP) is None.

- a patch (`PATCH_COLUMNS`): one row per run, `run` ("clean", "corrupt", "patched"), then
  `target_prob`, `target_rank`, `metric_value`, `top_tokens` and `top_probs` (lists, most likely
  first), the patched cell (`layer`, `head`, `pos`), `metric` (its name), `component`,
  `direction`, `model`;
- attribution patching (`attribution_columns(result)`): one row per cell, its axes (`layer`,
  `head`, `pos`, as the result's `axes`), `pos_label` (with a `pos` axis), `estimate`,
  `normalized`, `score`, `atp` (plain AtP's estimate, for AtP*), `exact` and `exact_normalized`
  (after a comparison), `n_pairs`, `metric`, `component`, `method`, `direction`, `model`;
- path patching (`PATH_COLUMNS`): one row per sender, `sender` ("a9.h9", "m0"), `layer`, `head`,
  `raw`, `normalized`, `receivers` (comma-separated), `freeze_mlps`, `metric`, `direction`,
  `model`;
- edge attribution (`EDGE_COLUMNS`): one row per edge, strongest first, `rank`, `edge`,
  `source`, `target`, `score`, `exact_effect` and `exact_normalized` (the edges patched exactly),
  `method`, `metric`, `direction`, `model`;
- exact edge checks (`VERIFY_COLUMNS`): one row per edge, `edge`, `source`, `target`,
  `metric_value` (the metric with the edge patched), `effect`, `normalized`, `metric`,
  `direction`, `model`;
- a circuit's evaluation (`CIRCUIT_COLUMNS`): one row per circuit, `n_edges`, `metric_value`,
  `faithfulness`, `ablation`, `method`, `total_edges`, `metric`, `model`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

# A table: its columns and its rows (one tuple per row, a value per column).
Table = tuple[tuple[str, ...], list[tuple[Any, ...]]]

PATCH_COLUMNS = (
    "run",
    "target_prob",
    "target_rank",
    "metric_value",
    "top_tokens",
    "top_probs",
    "layer",
    "head",
    "pos",
    "metric",
    "component",
    "direction",
    "model",
)
# After an attribution's axes (and `pos_label`): its values, then what it was.
ATTRIBUTION_VALUES = ("estimate", "normalized", "score", "atp", "exact", "exact_normalized")
ATTRIBUTION_LABELS = ("n_pairs", "metric", "component", "method", "direction", "model")
PATH_COLUMNS = (
    "sender",
    "layer",
    "head",
    "raw",
    "normalized",
    "receivers",
    "freeze_mlps",
    "metric",
    "direction",
    "model",
)
EDGE_COLUMNS = (
    "rank",
    "edge",
    "source",
    "target",
    "score",
    "exact_effect",
    "exact_normalized",
    "method",
    "metric",
    "direction",
    "model",
)
VERIFY_COLUMNS = (
    "edge",
    "source",
    "target",
    "metric_value",
    "effect",
    "normalized",
    "metric",
    "direction",
    "model",
)
CIRCUIT_COLUMNS = (
    "n_edges",
    "metric_value",
    "faithfulness",
    "ablation",
    "method",
    "total_edges",
    "metric",
    "model",
)
# The columns whose cells are lists (a CSV writes each as a JSON array).
LIST_COLUMNS = ("top_tokens", "top_probs")


def number(value: Any) -> float:
    """A JSON number as a float: null (how the JSON writes NaN) as NaN."""
    return math.nan if value is None else float(value)


def patch_table(result: Mapping[str, Any]) -> Table:
    """A patch's table, from its JSON: the clean, corrupted and patched runs."""
    rows = []
    for run in ("clean", "corrupt", "patched"):
        top = result[f"top_{run}"]
        rows.append(
            (run, number(result[f"{run}_prob"]), int(result[f"{run}_rank"]),
             number(result.get(f"metric_{run}")), [t["token"] for t in top],
             [number(t["prob"]) for t in top], result.get("layer"), result.get("head"),
             result.get("pos"), result["metric"], result["component"], result["direction"],
             result["model"])
        )  # fmt: skip
    return PATCH_COLUMNS, rows


def flat(values: Any) -> list[Any]:
    """Nested lists (a tensor as JSON) flattened in row-major order, the order `flatten` reads."""
    if not isinstance(values, list):
        return [values]
    return [v for item in values for v in flat(item)]


def cells(shape: Sequence[int]) -> list[tuple[int, ...]]:
    """Every cell's index of a grid of `shape`, in row-major order."""
    out: list[tuple[int, ...]] = [()]
    for size in shape:
        out = [(*cell, i) for cell in out for i in range(size)]
    return out


def shape_of(values: Any) -> tuple[int, ...]:
    """The shape of nested lists (a tensor as JSON)."""
    shape: list[int] = []
    while isinstance(values, list):
        shape.append(len(values))
        values = values[0] if values else None
    return tuple(shape)


def attribution_columns(result: Mapping[str, Any]) -> tuple[str, ...]:
    """An attribution's columns: its axes, `pos_label` with a `pos` axis, its values, labels."""
    axes = tuple(result["axes"])
    return (*axes, *(("pos_label",) if "pos" in axes else ()), *ATTRIBUTION_VALUES,
            *ATTRIBUTION_LABELS)  # fmt: skip


def attribution_table(result: Mapping[str, Any]) -> Table:
    """An attribution's table, from its JSON: one row per cell of its estimate."""
    axes = list(result["axes"])
    grid = cells(shape_of(result["estimate"]))
    # A grid the result has not (`atp` without AtP*, `exact` without a comparison): NaN.
    values = [
        [number(v) for v in flat(result[name])] if result.get(name) is not None else None
        for name in ATTRIBUTION_VALUES
    ]
    labels = [f"{i} {t!r}" for i, t in enumerate(result.get("tokens", []))]
    pos = axes.index("pos") if "pos" in axes else None
    same = (result["n_pairs"], result["metric"], result["component"], result["method"],
            result["direction"], result["model"])  # fmt: skip
    rows = []
    for i, cell in enumerate(grid):
        label = () if pos is None else (labels[cell[pos]],)
        numbers = tuple(math.nan if v is None else v[i] for v in values)
        rows.append((*cell, *label, *numbers, *same))
    return attribution_columns(result), rows


_HEAD = re.compile(r"a(\d+)\.h(\d+)$")
_MLP = re.compile(r"m(\d+)$")


def writer(name: str) -> tuple[int | None, int | None]:
    """(layer, head) of a writer's name: 'a9.h9' -> (9, 9), 'm0' -> (0, None)."""
    if match := _HEAD.match(name):
        return int(match[1]), int(match[2])
    if match := _MLP.match(name):
        return int(match[1]), None
    return None, None


def path_table(result: Mapping[str, Any]) -> Table:
    """Path patching's table, from its JSON: one row per sender (`raw` is [layer][head] when
    the senders are every head, else one value per sender, in the order of `senders`)."""
    raw, normalized = flat(result["raw"]), flat(result["normalized"])
    receivers = ", ".join(result["receivers"])
    rows = [
        (sender, *writer(sender), number(r), number(n), receivers, result["freeze_mlps"],
         result["metric"], result["direction"], result["model"])
        for sender, r, n in zip(result["senders"], raw, normalized, strict=True)
    ]  # fmt: skip
    return PATH_COLUMNS, rows


def _checks(checks: Sequence[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {c["edge"]: c for c in checks}


def edge_table(result: Mapping[str, Any]) -> Table:
    """Edge attribution's table, from its JSON: its edges, strongest first, each with its exact
    effect where it was patched exactly (`verified`)."""
    checked = _checks(result.get("verified", []))
    rows = []
    for rank, edge in enumerate(result["edges"]):
        name = f"{edge['source']}->{edge['target']}"
        check = checked.get(name, {})
        rows.append(
            (rank, name, edge["source"], edge["target"], number(edge["score"]),
             number(check.get("effect")), number(check.get("normalized")), result["method"],
             result["metric"], result["direction"], result["model"])
        )  # fmt: skip
    return EDGE_COLUMNS, rows


def verify_table(result: Mapping[str, Any]) -> Table:
    """Exact edge checks' table, from their JSON: one row per edge patched."""
    rows = [
        (c["edge"], c["edge"].split("->")[0], c["edge"].split("->")[1], number(c["metric"]),
         number(c["effect"]), number(c["normalized"]), result["metric"], result["direction"],
         result["model"])
        for c in result["edges"]
    ]  # fmt: skip
    return VERIFY_COLUMNS, rows


def circuit_table(result: Mapping[str, Any]) -> Table:
    """A circuit's evaluation's table, from its JSON: one row per circuit (one, or each size of
    a faithfulness curve)."""
    rows = [
        (int(p["n_edges"]), number(p["metric"]), number(p["faithfulness"]), result["ablation"],
         result.get("method"), result["total_edges"], result["metric"], result["model"])
        for p in result["points"]
    ]  # fmt: skip
    return CIRCUIT_COLUMNS, rows


# Each kind of run (as the history names it: a circuit's evaluation is "evaluation") whose
# result has a table here, and how its table is made; exact edge checks, which the history does
# not keep, by their result's name ("verify").
TABLES: dict[str, Callable[[Mapping[str, Any]], Table]] = {
    "patch": patch_table,
    "attribution": attribution_table,
    "path": path_table,
    "edges": edge_table,
    "verify": verify_table,
    "evaluation": circuit_table,
}
