"""Export a run: a tidy CSV, JSON, a PNG or SVG heatmap, or a notebook that reproduces it.

- `to_csv(result)`: one row per cell with its layer / head / position labels, the raw and
  normalized mean over pairs, the confidence interval (if any) and the number of pairs. Tidy:
  a spreadsheet or `pandas.read_csv` reads it without reshaping. Safe to open: a cell that a
  spreadsheet would run as a formula (role names come from uploaded datasets) is neutralised.
- `view_csv(kind, result)`: a view's run (attention, dla, lens) as the same tidy table as its
  result's `to_pandas()` (the columns and rows of `actpatch.views.columns`), one row per value;
  a list (the lens's top tokens) is written as a JSON array. Written with the csv module: no
  pandas needed. Its numbers are the stored JSON's (a pattern's weights and a part's shares
  to 6 significant digits).
- `result_csv(kind, result)`: a patch, an attribution, path patching, edge attribution, exact
  edge checks or a circuit's evaluation as the same tidy table as its result's `to_pandas()`
  (`actpatch.patching.results.columns`), written as `view_csv` writes a view's.
- `to_json(result)`: the result exactly as the CLI's --json and the API return it.
- `heatmap(result, path)`: the normalized mean per cell, PNG or SVG by the path's suffix; over a
  dataset, cells whose confidence interval contains the unpatched value (0 denoising, 1
  noising) are hatched, so an effect the pairs do not agree on is not mistaken for one.
- `notebook(kind, request, result)`: a Jupyter notebook (nbformat 4 JSON, written here) whose
  cells load the model, rebuild the prompts or the dataset, rerun the patch or the sweep with
  the library and compare its numbers with the stored ones.

`export(kind, request, result, fmt)` picks one by name (FORMATS); `formats_of(kind)` says which
a kind of run has. Nothing here recomputes a result except the notebook, when someone runs it.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from actpatch.patching.results import SweepResult
from actpatch.patching.results.columns import TABLES as RESULT_TABLES
from actpatch.views.columns import TABLES as VIEW_TABLES

FORMATS = ("csv", "json", "png", "svg", "ipynb")
# The kinds of run a notebook reproduces (the circuit kinds export as json and csv).
NOTEBOOK_KINDS = ("patch", "sweep", "ablation", "attribution")
# The kinds of run whose cells make a heatmap (png, svg) and whose csv is `to_csv`'s.
GRID_KINDS = ("sweep", "ablation")
# The views' kinds of run, which export as their tidy table (csv) or json.
VIEW_KINDS = tuple(VIEW_TABLES)
# The other kinds with a tidy table of their own (`actpatch.patching.results.columns`).
TABLE_KINDS = tuple(RESULT_TABLES)
MEDIA_TYPES = {
    "csv": "text/csv",
    "json": "application/json",
    "png": "image/png",
    "svg": "image/svg+xml",
    "ipynb": "application/x-ipynb+json",
}


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"), and a number as
# this module writes one (repr of a float or an int), which it reads as a number, never a formula.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
PLAIN_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def safe_cell(value: Any) -> Any:
    """A CSV cell a spreadsheet shows as text: one that starts a formula gets a leading `'`.

    OWASP's advice for CSV injection: prefix cells that begin with =, +, -, @, tab or carriage
    return with a single quote (the csv module quotes the cell and doubles its quotes as CSV
    needs). Numbers are left alone: -0.25 is a number to a spreadsheet, not a formula."""
    text = str(value)
    if text.startswith(FORMULA_START) and not PLAIN_NUMBER.fullmatch(text):
        return "'" + text
    return value


def _number(value: float) -> str:
    return "" if value is None or math.isnan(value) else repr(float(value))


def to_csv(result: SweepResult) -> str:
    """One row per cell: axis indices and labels, raw, normalized, interval, pairs."""
    labels = result.axis_labels()
    out = io.StringIO()
    # RFC 4180's CRLF: the csv module then quotes a cell holding a line break of either kind.
    writer = csv.writer(out, lineterminator="\r\n")
    header = [*result.axes]
    if "pos" in result.axes:
        header.append("pos_label")
    header += ["raw", "normalized", "ci_low", "ci_high", "raw_ci_low", "raw_ci_high"]
    header += ["ci_level", "n_pairs", "metric", "component", "direction", "model"]
    writer.writerow([safe_cell(cell) for cell in header])
    ci = result.ci
    for index in _cells(tuple(result.raw.shape)):
        row: list[Any] = list(index)
        if "pos" in result.axes:
            row.append(labels[result.axes.index("pos")][index[result.axes.index("pos")]])
        row += [_number(float(result.raw[index])), _number(float(result.normalized[index]))]
        if ci is not None:
            row += [_number(float(t[index])) for t in (ci.low, ci.high, ci.raw_low, ci.raw_high)]
            row.append(ci.level)
        else:
            row += ["", "", "", "", ""]
        row += [result.n_pairs, result.metric, result.component, result.direction, result.model]
        writer.writerow([safe_cell(cell) for cell in row])
    return out.getvalue()


def _text(value: Any) -> Any:
    """A table's value as a CSV cell: a number as repr writes it (it reads back exactly), NaN and
    None empty, a list as a JSON array."""
    if value is None:
        return ""
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return value


def table_csv(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A tidy table as CSV: its header, then a line per row, each cell safe to open."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180's CRLF, as to_csv
    writer.writerow([safe_cell(column) for column in columns])
    for row in rows:
        writer.writerow([safe_cell(_text(value)) for value in row])
    return out.getvalue()


def view_csv(kind: str, result: dict[str, Any]) -> str:
    """A view's run (`kind` attention, dla or lens) as its tidy table, from its stored JSON."""
    columns, rows = VIEW_TABLES[kind]
    return table_csv(columns, rows(result))


def result_csv(kind: str, result: dict[str, Any]) -> str:
    """A patch, attribution, path, edges, verify or evaluation run (`TABLE_KINDS`) as its tidy
    table, from its stored JSON. Refuses, naming the field, a result that lacks one."""
    try:
        columns, rows = RESULT_TABLES[kind](result)
    except (KeyError, TypeError, ValueError) as error:
        from actpatch.errors import InputError

        what = f"field {error.args[0]!r}" if isinstance(error, KeyError) else "a field"
        raise InputError(
            f"This {kind} run's result lacks {what} its table needs (or holds a value of "
            f"another type): it is not a {kind} result as actpatch writes it. Export it as "
            "json to look at it.",
            field="format",
        ) from error
    return table_csv(columns, rows)


def formats_of(kind: str) -> tuple[str, ...]:
    """The formats a kind of run exports as: any as json; a sweep or an ablation also as csv,
    png and svg; a view or a patching result with a table as csv; a notebook's kinds as ipynb."""
    tidy = kind in GRID_KINDS or kind in VIEW_KINDS or kind in TABLE_KINDS
    return (
        *(("csv",) if tidy else ()),
        "json",
        *(("png", "svg") if kind in GRID_KINDS else ()),
        *(("ipynb",) if kind in NOTEBOOK_KINDS else ()),
    )


def _either(formats: Sequence[str]) -> str:
    """'json', 'json or csv', 'json, csv or ipynb'."""
    return formats[0] if len(formats) == 1 else f"{', '.join(formats[:-1])} or {formats[-1]}"


def _what_it_takes(kind: str) -> str:
    """The formats a kind of run does export as, json first: 'json or csv'."""
    return _either(["json", *(f for f in formats_of(kind) if f != "json")])


def _cells(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    cells: list[tuple[int, ...]] = [()]
    for size in shape:
        cells = [(*c, i) for c in cells for i in range(size)]
    return cells


def to_json(result: dict[str, Any]) -> str:
    """The result as JSON (NaN written as null)."""
    from actpatch.history import json_text

    return json_text(result) + "\n"


def heatmap(result: SweepResult, path: str | Path) -> Path:
    """The normalized (else raw) mean per cell as a heatmap, PNG or SVG by `path`'s suffix.

    (layer, pos, head) sweeps show the head whose effect is largest at each (layer, pos).
    Cells whose interval contains the unpatched value are hatched; unpatched cells are grey.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    path = Path(path)
    if path.suffix.lower() not in (".png", ".svg"):
        raise ValueError(f"heatmap path must end in .png or .svg, got {path.name!r}")
    normalized = not bool(result.normalized.isnan().all())
    unpatched = 0.0 if result.direction == "denoising" else 1.0
    values = result.normalized if normalized else result.raw
    span = None
    if result.ci is not None and normalized:
        from actpatch.patching.statistics import spans_zero

        span = spans_zero(result.ci, unpatched)
    if values.dim() == 3:  # (layer, pos, head): the head that moves the metric most
        effect = (values - unpatched).nan_to_num(0.0).abs()
        best = effect.argmax(dim=-1, keepdim=True)
        values = values.gather(-1, best).squeeze(-1)
        span = None if span is None else span.gather(-1, best).squeeze(-1)
    x_axis = result.axes[1]
    n_layers, n_x = values.shape
    shown = values - unpatched if normalized else values - result.corrupt
    finite = shown[~shown.isnan()]
    limit = float(finite.abs().max()) if finite.numel() else 1.0
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0

    width = max(6.0, min(18.0, 1.5 + 0.7 * n_x))
    fig, ax = plt.subplots(figsize=(width, max(3.5, 0.5 * n_layers + 2.0)))
    masked = torch.where(shown.isnan(), torch.zeros_like(shown), shown).numpy()
    image = ax.imshow(masked, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for layer, x in torch.nonzero(values.isnan()).tolist():
        ax.add_patch(plt.Rectangle((x - 0.5, layer - 0.5), 1, 1, color="0.85"))
    if span is not None:
        for layer, x in torch.nonzero(span).tolist():
            ax.add_patch(
                plt.Rectangle(
                    (x - 0.5, layer - 0.5),
                    1,
                    1,
                    fill=False,
                    hatch="///",
                    edgecolor="0.55",
                    linewidth=0,
                )
            )
    if result.ci is not None and normalized and values.numel() <= 80 and result.raw.dim() == 2:
        for layer in range(n_layers):
            for x in range(n_x):
                mean = float(values[layer, x])
                if math.isnan(mean):
                    continue
                lo, hi = float(result.ci.low[layer, x]), float(result.ci.high[layer, x])
                ax.text(
                    x,
                    layer,
                    f"{100 * mean:.0f}\n[{100 * lo:.0f},{100 * hi:.0f}]",
                    ha="center",
                    va="center",
                    fontsize=7,
                )
    ax.set_ylabel("layer")
    ax.set_yticks(range(n_layers))
    ax.set_xticks(range(n_x))
    labels = result.axis_labels()[1]
    if x_axis == "pos":
        ax.set_xticklabels([label[:18] for label in labels], rotation=50, ha="right", fontsize=8)
        ax.set_xlabel("role" if result.position_convention == "role" else "position (token)")
    else:
        ax.set_xticklabels(labels, fontsize=8)
        ax.set_xlabel(x_axis)
    if not normalized:
        what = f"{result.metric} - corrupted"
    elif unpatched:
        what = f"normalized {result.metric} - {unpatched:g} (its unpatched value)"
    else:
        what = f"normalized {result.metric}"
    fig.colorbar(image, ax=ax, label=f"{what} (blue raises it)")
    extra = ""
    if result.ci is not None:
        extra = (
            f"\nhatched: the {int(100 * result.ci.level)}% interval contains {unpatched:g} "
            f"({result.ci.n_boot} bootstrap resamples of the pairs)"
        )
    head = " (head with the largest effect)" if result.raw.dim() == 3 else ""
    ax.set_title(
        f"{result.component} patching ({result.direction}) on {result.model}{head}, "
        f"{result.n_pairs} pair(s)\nnormalized {result.metric} in %: mean [interval]{extra}",
        fontsize=9,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- the notebook -----------------------------------------------------------------------------


def _cell(kind: str, source: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": source.strip("\n")}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _listed(value: Any) -> list[Any] | None:
    if value is None:
        return None
    return list(value) if isinstance(value, list) else [value]


def notebook(kind: str, request: dict[str, Any], result: dict[str, Any]) -> dict[str, Any]:
    """A notebook (nbformat 4) that reruns a stored patch, sweep, ablation or attribution and
    checks its numbers."""
    model = request.get("model") or result.get("model") or "gpt2"
    metric = result.get("metric") or request.get("metric")
    direction = result.get("direction", request.get("direction", "denoising"))
    component = result.get("component", request.get("component", "z"))
    cells = [
        _cell(
            "markdown",
            f"# Reproduce an actpatch {kind}\n\n{component} {kind} ({direction}, metric "
            f"{metric}) on `{model}`, computed by actpatch {result.get('version', '')} on the "
            f"{result.get('backend', '')} path. Running this notebook recomputes it with the "
            "library and compares the numbers with the stored ones.",
        ),
        _cell("code", f"import json\n\nimport actpatch\n\nmodel = actpatch.load_model({model!r})"),
    ]
    if request.get("dataset") is not None:
        spec = request["dataset"]
        data = (
            "from actpatch.datasets import load_dataset\n\n"
            f"data = load_dataset({spec!r}, tokenizer=model.tokenizer)"
        )
    elif request.get("dataset_jsonl") is not None:
        data = (
            "from actpatch.datasets import parse_jsonl\n\n"
            f"data = parse_jsonl({request['dataset_jsonl']!r})"
        )
    else:
        clean = _listed(request.get("clean_prompt")) or []
        n = len(clean)
        corrupt = _listed(request.get("corrupt_prompt")) or []
        target = _listed(request.get("target_token")) or []
        wrong = _listed(request.get("wrong_token") or None)
        target = target * n if len(target) == 1 else target
        wrong = None if wrong is None else (wrong * n if len(wrong) == 1 else wrong)
        data = (
            "from actpatch.datasets import PromptDataset\n\n"
            f"data = PromptDataset(\n    clean={clean!r},\n    corrupt={corrupt!r},\n"
            f"    target={target!r},\n    wrong={wrong!r},\n    name='prompts',\n)"
        )
    cells.append(_cell("code", data))
    if kind == "patch":
        index = {k: result.get(k) for k in ("layer", "head", "pos")}
        cells.append(
            _cell(
                "code",
                "exp = actpatch.Experiment(model, data.clean, data.corrupt, data.target, "
                "data.wrong)\n"
                f"result = actpatch.patch(exp, {index['layer']}, head={index['head']}, "
                f"pos={index['pos']}, component={component!r}, metric={metric!r}, "
                f"direction={direction!r})\nresult.to_dict()",
            )
        )
        stored = {k: result.get(k) for k in ("patched_prob", "metric_patched", "metric_clean")}
        check = (
            f"stored = json.loads({json.dumps(json.dumps(stored))})\n"
            "for key, value in stored.items():\n"
            "    ours = getattr(result, key)\n"
            "    assert abs(ours - value) <= 1e-4 * max(1.0, abs(value)), (key, ours, value)\n"
            "print('matches the stored run')"
        )
    elif kind in ("ablation", "attribution"):  # actpatch.patching.ablation, .attribution
        if kind == "ablation":
            run = (
                "from actpatch.patching.experiment import dataset_experiments\n\n"
                "experiments = dataset_experiments(model, data)\n"
                f"result = actpatch.ablate_many(experiments, {component!r}, "
                f"{result.get('ablation')!r}, {metric!r}, seed={request.get('seed', 0)!r})\n"
                "result.normalized"
            )
            grid, name = "raw", "raw"
        else:
            run = (
                "exp = actpatch.Experiment(model, data.clean, data.corrupt, data.target, "
                "data.wrong)\n"
                f"result = actpatch.attribute(exp, {component!r}, {result.get('method')!r}, "
                f"{direction!r}, {metric!r})\nresult.estimate"
            )
            grid, name = "estimate", "estimate"
        cells.append(_cell("code", run))
        check = (
            "import torch\nfrom actpatch.patching.results import tensor_of\n\n"
            f"stored = tensor_of(json.loads({json.dumps(json.dumps(result.get(grid)))}))\n"
            "both = ~stored.isnan()\n"
            f"assert torch.equal(both, ~result.{name}.isnan())\n"
            f"assert torch.allclose(result.{name}[both], stored[both], atol=1e-4, rtol=1e-4)\n"
            "print('matches the stored run')"
        )
    else:
        positions = request.get("positions", result.get("position_convention", "auto"))
        cells.append(
            _cell(
                "code",
                "from actpatch.patching.experiment import dataset_experiments\n\n"
                "experiments = dataset_experiments(model, data)\n"
                f"result = actpatch.sweep_many(experiments, {component!r}, {metric!r}, "
                f"{direction!r}, positions={positions!r})\n"
                "print(result.n_pairs, 'pairs; normalized', result.metric)\n"
                "result.normalized",
            )
        )
        check = (
            "import torch\nfrom actpatch.patching.results import tensor_of\n\n"
            f"stored = tensor_of(json.loads({json.dumps(json.dumps(result.get('raw')))}))\n"
            "both = ~stored.isnan()\n"
            "assert torch.equal(both, ~result.raw.isnan())\n"
            "assert torch.allclose(result.raw[both], stored[both], atol=1e-4, rtol=1e-4)\n"
            "print('matches the stored run')"
        )
    cells.append(_cell("code", check))
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def export(kind: str, request: dict[str, Any], result: dict[str, Any], fmt: str) -> bytes:
    """A stored run in one of FORMATS, as bytes (`formats_of(kind)` says which it has: PNG and
    SVG need a sweep; CSV a sweep, a view or a patching result with a table)."""
    from actpatch.errors import InputError

    if fmt not in FORMATS:
        raise InputError(
            f"Unknown export format {fmt!r}: use {', '.join(FORMATS)}.", field="format"
        )
    if fmt == "json":
        return to_json(result).encode()
    if fmt == "ipynb":
        if kind not in NOTEBOOK_KINDS:
            raise InputError(
                f"A {kind} run has no notebook yet (notebooks rerun a {', '.join(NOTEBOOK_KINDS)}"
                f"): export it as {_what_it_takes(kind)}.",
                field="format",
            )
        nb = notebook(kind, request, result)
        for i, cell in enumerate(nb["cells"]):
            cell["id"] = f"cell-{i}"
        return (json.dumps(nb, indent=1) + "\n").encode()
    if fmt == "csv" and kind in VIEW_KINDS:
        return view_csv(kind, result).encode()
    if fmt == "csv" and kind in TABLE_KINDS:
        return result_csv(kind, result).encode()
    if "raw" not in result or "axes" not in result:
        raise InputError(
            f"A {kind} has no grid of cells: export it as {_what_it_takes(kind)} (png and svg "
            "are for sweeps and ablations; csv for those, the views, patches, attributions, "
            "path patching, edges and circuit evaluations).",
            field="format",
        )
    sweep = SweepResult.from_dict(result)
    if fmt == "csv":
        return to_csv(sweep).encode()
    import tempfile

    with tempfile.TemporaryDirectory() as folder:
        path = heatmap(sweep, Path(folder) / f"heatmap.{fmt}")
        return path.read_bytes()
