"""The views' tidy tables, defined once: their columns and their rows, from a result's JSON.

A view's `to_pandas()` (`display.frames`) and its CSV export (`actpatch.export`) are both built
here, so a notebook and a spreadsheet read the same table: the same columns, in the same order,
one row per value. The rows are made from the layout of the result's JSON (`to_dict()`, as the
history stores it), in plain Python: the CSV export needs neither pandas nor torch.

- attention (`ATTENTION_COLUMNS`): one row per (run, head, query position, key position), the
  clean run first: `run` ("clean", "corrupt"), `layer`, `head`, `kv_head` (the key/value head it
  reads), `query_pos`, `query_token`, `key_pos`, `key_token`, `weight`, `pair`, `model`;
- direct logit attribution (`DLA_COLUMNS`): one row per part, in the order the residual stream
  sums them: `part` ("embed", "head", "attn_bias", "mlp", "const"), `name` ("L3H4",
  "MLP L2", ...), `layer` and `head` (None where the part has none), `clean`, `corrupt`,
  `difference` (clean - corrupt), `metric`, `model`;
- the logit lens (`LENS_COLUMNS`): one row per read-out point: `point` ("resid_pre 0", ...),
  then per run the metric, the target's rank and probability and the top tokens (a list, most
  likely first), then `target`, `metric`, `model`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ATTENTION_COLUMNS = (
    "run",
    "layer",
    "head",
    "kv_head",
    "query_pos",
    "query_token",
    "key_pos",
    "key_token",
    "weight",
    "pair",
    "model",
)
DLA_COLUMNS = (
    "part",
    "name",
    "layer",
    "head",
    "clean",
    "corrupt",
    "difference",
    "metric",
    "model",
)
LENS_COLUMNS = (
    "point",
    "clean_metric",
    "corrupt_metric",
    "clean_rank",
    "corrupt_rank",
    "clean_prob",
    "corrupt_prob",
    "clean_top",
    "corrupt_top",
    "target",
    "metric",
    "model",
)
# The columns whose cells are lists (a CSV writes each as a JSON array).
LIST_COLUMNS = ("clean_top", "corrupt_top")


def attention_rows(result: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of an attention pattern's table, from its JSON: each head's pattern (`by_head`
    when there are several, else the one head's `clean` and `corrupt`), rows of queries."""
    heads: Sequence[Mapping[str, Any]] = result.get("by_head") or [result]
    rows: list[tuple[Any, ...]] = []
    for run, tokens in (("clean", result["tokens"]), ("corrupt", result["corrupt_tokens"])):
        for one in heads:
            head, kv_head = one["head"], one["kv_head"]
            for query, weights in enumerate(one[run]):  # (query_pos, key_pos)
                rows += [
                    (run, result["layer"], head, kv_head, query, tokens[query], key,
                     tokens[key], weight, result.get("pair", 0), result["model"])
                    for key, weight in enumerate(weights)
                ]  # fmt: skip
    return rows


def dla_parts(n_layers: int, n_heads: int) -> list[tuple[str, str, int | None, int | None]]:
    """(part, name, layer, head) of each row of a DLA table, in the order the residual stream
    sums them: the embeddings, then per layer its heads, its attention bias and its MLP, then
    the constant (the final norm's and the unembedding's biases)."""
    parts: list[tuple[str, str, int | None, int | None]] = [("embed", "embed", None, None)]
    for layer in range(n_layers):
        parts += [("head", f"L{layer}H{h}", layer, h) for h in range(n_heads)]
        parts.append(("attn_bias", f"attention bias L{layer}", layer, None))
        parts.append(("mlp", f"MLP L{layer}", layer, None))
    parts.append(("const", "const", None, None))
    return parts


def _share(run: Mapping[str, Any], part: str, layer: int | None, head: int | None) -> float:
    """One part's direct share in one run's JSON ({"heads", "mlp", "embed", "attn_bias",
    "const"}); NaN where it was not a number (JSON's null)."""
    if part in ("embed", "const"):
        value = run[part]
    elif part == "head":
        value = run["heads"][layer][head]
    else:
        value = run[part][layer]
    return float("nan") if value is None else float(value)


def dla_rows(result: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a DLA table, from its JSON: each part's direct share on the clean and the
    corrupted run, and their difference."""
    clean, corrupt = result["clean"], result["corrupt"]
    n_layers = len(clean["heads"])
    n_heads = len(clean["heads"][0]) if n_layers else 0
    rows = []
    for part, name, layer, head in dla_parts(n_layers, n_heads):
        c, k = _share(clean, part, layer, head), _share(corrupt, part, layer, head)
        rows.append((part, name, layer, head, c, k, c - k, result["metric"], result["model"]))
    return rows


def lens_rows(result: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a logit lens table, from its JSON: one per read-out point."""
    c, k = result["clean"], result["corrupt"]
    return [
        (point, c["metric"][i], k["metric"][i], c["target_rank"][i], k["target_rank"][i],
         c["target_prob"][i], k["target_prob"][i], list(c["top"][i]), list(k["top"][i]),
         result["target"], result["metric"], result["model"])
        for i, point in enumerate(result["labels"])
    ]  # fmt: skip


# Each view's kind of run (as the history names it): its columns and how its rows are made.
TABLES = {
    "attention": (ATTENTION_COLUMNS, attention_rows),
    "dla": (DLA_COLUMNS, dla_rows),
    "lens": (LENS_COLUMNS, lens_rows),
}
