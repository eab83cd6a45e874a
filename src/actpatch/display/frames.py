"""Each result as a tidy `pandas.DataFrame`: one row per cell, its labels in columns beside it.

Tidy means a spreadsheet or `df.groupby`/`df.pivot` reads it without reshaping. The layouts:

- `SweepResult`, `AblationResult`: exactly the CSV export's (`actpatch.export.to_csv`): the
  axes (`layer`, `head`, `pos`), `pos_label`, `raw`, `normalized`, the interval (`ci_low`,
  `ci_high`, `raw_ci_low`, `raw_ci_high`, `ci_level`; NaN without one), `n_pairs`, `metric`,
  `component`, `direction`, `model`;
- `AttributionResult`: the axes, `pos_label` (with a `pos` axis), `estimate`, `normalized`,
  `score`, `atp` (plain AtP's estimate, for AtP*), `exact` and `exact_normalized` (after a
  comparison; else NaN), `n_pairs`, `metric`, `component`, `method`, `direction`, `model`;
- `PatchResult`: one row per run (`run`: clean, corrupt, patched): `target_prob`,
  `target_rank`, `metric_value`, `top_tokens` and `top_probs` (lists, most likely first), then the
  patched cell (`layer`, `head`, `pos`; <NA> where not given), `metric` (its name),
  `component`, `direction`, `model`;
- `PathPatchResult`: one row per sender: `sender` ('a9.h9', 'm0'), `layer`, `head` (<NA> for an
  MLP), `raw`, `normalized`, `receivers`, `freeze_mlps`, `metric`, `direction`, `model`;
- `EdgeResult`: one row per edge, strongest first: `rank`, `edge`, `source`, `target`, `score`,
  `exact_effect` and `exact_normalized` (the edges patched exactly, else NaN), `method`,
  `metric`, `direction`, `model`;
- `VerifyResult`: one row per edge: `edge`, `source`, `target`, `metric_value` (the metric with
  the edge patched), `effect`, `normalized`, `metric`, `direction`, `model`;
- `CircuitResult`: one row per circuit: `n_edges`, `metric_value`, `faithfulness`, `ablation`,
  `method`, `total_edges`, `metric`, `model`;
- `AttentionResult`: one row per (run, head, query, key): `run` (clean, corrupt), `layer`,
  `head`, `kv_head`, `query_pos`, `query_token`, `key_pos`, `key_token`, `weight`, `pair`,
  `model`. Long, not one column per run, because the two prompts may differ in length;
  `df.pivot_table(index=["head", "query_pos", "key_pos"], columns="run", values="weight")`
  puts them side by side when they do not;
- `DLAResult`: one row per part, in the order the residual stream sums them: `part` ("embed",
  "head", "attn_bias", "mlp", "const"), `name` ("L3H4", "MLP L2", ...), `layer` and `head`
  (<NA> where none), `clean`, `corrupt`, `difference`, `metric`, `model`. Each run's column
  sums to its `total` (the model's own metric less what the frozen norm leaves unexplained);
- `LensResult`: one row per read-out point: `point` ("resid_pre 0", ...), `clean_metric`,
  `corrupt_metric`, `clean_rank`, `corrupt_rank`, `clean_prob`, `corrupt_prob`, `clean_top`
  and `corrupt_top` (lists, most likely first), `target`, `metric`, `model`.

The three views' tables are defined in `views.columns`, whose rows their CSV export
(`actpatch.export.view_csv`) writes too: a view's CSV and its `to_pandas()` are the same table.
So are the patching results' other than a sweep's (a patch, an attribution, path patching,
edges, exact edge checks, a circuit's evaluation): defined in `patching.results.columns`,
written by `actpatch.export.result_csv`.

pandas is the `actpatch[notebook]` extra; nothing imports it until a table is asked for.
"""

from __future__ import annotations

import io
from functools import singledispatch
from types import ModuleType
from typing import Any

from actpatch.patching.results import (
    AttributionResult,
    CircuitResult,
    EdgeResult,
    PatchResult,
    PathPatchResult,
    SweepResult,
    VerifyResult,
)
from actpatch.patching.results.columns import (
    attribution_table,
    circuit_table,
    edge_table,
    patch_table,
    path_table,
    verify_table,
)
from actpatch.views.columns import (
    ATTENTION_COLUMNS,
    DLA_COLUMNS,
    LENS_COLUMNS,
    attention_rows,
    dla_rows,
    lens_rows,
)
from actpatch.views.results import AttentionResult, DirectEffects, DLAResult, LensResult

# The CSV export's numeric columns that may be empty (read as NaN, never as text).
_CSV_NUMBERS = ("raw", "normalized", "ci_low", "ci_high", "raw_ci_low", "raw_ci_high", "ci_level")


def pandas() -> ModuleType:
    """The pandas module, or an error that names the extra that installs it."""
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            "to_pandas() needs pandas: install it with `pip install 'actpatch[notebook]'`."
        ) from error
    return pandas


@singledispatch
def frame(result: Any) -> Any:
    """The tidy table of one result (the layouts are in this module's docstring)."""
    raise TypeError(f"actpatch has no table for {type(result).__name__}")


@frame.register
def _(result: SweepResult) -> Any:
    """The CSV export, read back: the same columns, and the same numbers (written with repr,
    read with Python's own float parser, so each one round-trips exactly)."""
    from actpatch.export import to_csv

    pd = pandas()
    text = to_csv(result)
    header = text.split("\n", 1)[0].split(",")
    texts = [c for c in header if c not in _CSV_NUMBERS and c not in (*result.axes, "n_pairs")]
    return pd.read_csv(
        io.StringIO(text),
        keep_default_na=False,  # a label or a model named "NA" stays text
        na_values={c: [""] for c in _CSV_NUMBERS},
        dtype={**{c: float for c in _CSV_NUMBERS}, **{c: str for c in texts}},
        float_precision="round_trip",
    )


# The patching results' tables: their columns and rows are `patching.results.columns`', made
# from the result's JSON (`to_dict()`), which the CSV export writes too. Their JSON keeps every
# number as the result holds it (a float32 tensor's value, exactly), so the tables are the same.


def _table(columns: tuple[str, ...], rows: list[tuple[Any, ...]], *whole: str) -> Any:
    """A table as a DataFrame; `whole`: columns of integers where some cells have none (<NA>)."""
    out = pandas().DataFrame(rows, columns=list(columns))
    for name in whole:
        out[name] = out[name].astype("Int64")
    return out


@frame.register
def _(result: AttributionResult) -> Any:
    return _table(*attribution_table(result.to_dict()))


@frame.register
def _(result: PatchResult) -> Any:
    return _table(*patch_table(result.to_dict()), "layer", "head", "pos")


@frame.register
def _(result: PathPatchResult) -> Any:
    return _table(*path_table(result.to_dict()), "layer", "head")


@frame.register
def _(result: EdgeResult) -> Any:
    return _table(*edge_table(result.to_dict()))


@frame.register
def _(result: VerifyResult) -> Any:
    return _table(*verify_table(result.to_dict()))


@frame.register
def _(result: CircuitResult) -> Any:
    return _table(*circuit_table(result.to_dict()))


# The views' tables: their columns and rows are `views.columns`', which the CSV export writes
# too; here they are made from the result's tensors at full precision (its JSON rounds a
# pattern's weight and a part's share to 6 significant digits).


@frame.register
def _(result: AttentionResult) -> Any:
    pd = pandas()
    by_head = [
        {"head": h, "kv_head": g, "clean": c.double().tolist(), "corrupt": k.double().tolist()}
        for h, g, c, k in zip(
            result.heads, result.kv_heads, result.clean, result.corrupt, strict=True
        )
    ]  # each (query_pos, key_pos)
    table = {
        "layer": result.layer,
        "by_head": by_head,
        "tokens": result.tokens,
        "corrupt_tokens": result.corrupt_tokens,
        "pair": result.pair,
        "model": result.model,
    }
    return pd.DataFrame(attention_rows(table), columns=list(ATTENTION_COLUMNS))


def _shares(run: DirectEffects) -> dict[str, Any]:
    """One run's direct shares as its JSON lays them out, unrounded."""
    return {
        "heads": run.heads.double().tolist(),
        "mlp": run.mlp.double().tolist(),
        "embed": run.embed,
        "attn_bias": run.attn_bias.double().tolist(),
        "const": run.const,
    }


@frame.register
def _(result: DLAResult) -> Any:
    pd = pandas()
    table = {
        "clean": _shares(result.clean),
        "corrupt": _shares(result.corrupt),
        "metric": result.metric,
        "model": result.model,
    }
    out = pd.DataFrame(dla_rows(table), columns=list(DLA_COLUMNS))
    out["layer"] = out["layer"].astype("Int64")
    out["head"] = out["head"].astype("Int64")
    return out


@frame.register
def _(result: LensResult) -> Any:
    return pandas().DataFrame(lens_rows(result.to_dict()), columns=list(LENS_COLUMNS))
