"""Exports of a run: tidy CSV, JSON, PNG and SVG heatmaps, and a notebook that reruns the
sweep on the demo model and matches the stored numbers."""

from __future__ import annotations

import csv
import io
import json

import nbclient
import nbformat
import pytest
import torch

import actpatch
from actpatch.datasets import ioi
from actpatch.export import export, heatmap, notebook, to_csv
from actpatch.patching.experiment import dataset_experiments
from actpatch.patching.results import SweepResult


@pytest.fixture(scope="module")
def demo():
    return actpatch.load_model("demo")


@pytest.fixture(scope="module")
def stored(demo):
    """A role-indexed dataset sweep as the history stores it: its request and JSON result."""
    request = {"model": "demo", "dataset": "ioi:6:1", "component": "resid_pre", "positions": "auto"}
    result = actpatch.sweep_many(dataset_experiments(demo, ioi(6, 1)), "resid_pre")
    return request, json.loads(json.dumps(result.to_dict())), result


def test_csv_has_one_row_per_cell_with_labels_and_interval(stored):
    _, data, result = stored
    rows = list(csv.DictReader(io.StringIO(to_csv(SweepResult.from_dict(data)))))
    assert len(rows) == result.raw.numel()
    row = next(r for r in rows if r["layer"] == "2" and r["pos_label"] == "S2")
    pos = result.position_labels.index("S2")
    assert float(row["normalized"]) == pytest.approx(float(result.normalized[2, pos]), abs=1e-6)
    assert float(row["ci_low"]) == pytest.approx(float(result.ci.low[2, pos]), abs=1e-6)
    assert float(row["ci_low"]) <= float(row["normalized"]) <= float(row["ci_high"])
    assert row["n_pairs"] == "6"


def test_from_dict_round_trips(stored):
    _, data, result = stored
    again = SweepResult.from_dict(data)
    assert torch.equal(again.raw.isnan(), result.raw.isnan())
    assert torch.allclose(again.per_pair, result.per_pair)
    assert again.ci is not None and torch.allclose(again.ci.high, result.ci.high)
    assert again.position_labels == result.position_labels


def test_heatmaps_png_and_svg(stored, tmp_path):
    _, data, result = stored
    assert heatmap(result, tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert b"<svg" in export("sweep", {}, data, "svg")[:400]
    with pytest.raises(actpatch.InputError, match="for sweeps"):
        export("patch", {}, {"layer": 1}, "csv")


def test_exported_notebook_reruns_the_sweep_and_matches(stored):
    """Every code cell, in order, in a fresh namespace (what a kernel does), offline."""
    request, data, result = stored
    nb = json.loads(export("sweep", request, data, "ipynb"))
    assert nb["nbformat"] == 4 and all("id" in c for c in nb["cells"])
    namespace: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile(cell["source"], "<notebook>", "exec"), namespace)
    assert torch.allclose(namespace["result"].raw, result.raw, atol=1e-5, equal_nan=True)


def test_exported_notebook_runs_in_a_jupyter_kernel(stored, tmp_path):
    """What a colleague does with the file: open it and run all cells in a real IPython kernel
    (nbclient). The notebook's last cell compares its rerun with the stored numbers, so the run
    passing means they matched; a tampered number must make the kernel's run fail."""
    request, data, _ = stored

    def run(payload: dict) -> None:
        nb = nbformat.reads(export("sweep", request, payload, "ipynb"), as_version=4)
        client = nbclient.NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
        )
        client.execute()

    run(data)
    tampered = json.loads(json.dumps(data))
    tampered["raw"][0][-1] += 1.0
    with pytest.raises(nbclient.exceptions.CellExecutionError, match="AssertionError"):
        run(tampered)


def test_a_notebook_that_does_not_match_fails(stored):
    request, data, _ = stored
    tampered = json.loads(json.dumps(data))
    tampered["raw"][0][-1] += 1.0
    namespace: dict = {}
    with pytest.raises(AssertionError):
        for cell in notebook("sweep", request, tampered)["cells"]:
            if cell["cell_type"] == "code":
                exec(cell["source"], namespace)


@pytest.mark.parametrize("kind", ["ablation", "attribution"])
def test_ablation_and_attribution_notebooks_rerun_and_match(demo, kind):
    """The notebook of a stored ablation sweep or attribution reruns it (not a patching sweep)
    and checks its grid."""
    clean = "When Mary and John went to the store, John gave a drink to"
    corrupt = "When Mary and John went to the store, Mary gave a drink to"
    request = {
        "model": "demo",
        "clean_prompt": clean,
        "corrupt_prompt": corrupt,
        "target_token": " Mary",
        "wrong_token": " John",
        "component": "z",
    }
    exp = actpatch.Experiment(demo, clean, corrupt, " Mary", " John")
    if kind == "ablation":
        result = actpatch.ablate(exp, "z", "zero")
        grid = result.raw
    else:
        result = actpatch.attribute(exp, "z", "atp*")
        grid = result.estimate
    data = json.loads(json.dumps(result.to_dict()))
    namespace: dict = {}
    for cell in notebook(kind, request, data)["cells"]:
        if cell["cell_type"] == "code":
            exec(compile(cell["source"], "<notebook>", "exec"), namespace)
    rerun = namespace["result"].raw if kind == "ablation" else namespace["result"].estimate
    assert torch.allclose(rerun, grid, atol=1e-5)
    tampered = json.loads(json.dumps(data))
    tampered["raw" if kind == "ablation" else "estimate"][0][0] += 1.0
    fresh: dict = {}
    with pytest.raises(AssertionError):
        for cell in notebook(kind, request, tampered)["cells"]:
            if cell["cell_type"] == "code":
                exec(cell["source"], fresh)


# What OWASP lists as the start of a formula in a spreadsheet cell ("CSV Injection").
FORMULA = ("=", "+", "-", "@", "\t", "\r")


def test_csv_cells_that_would_run_as_formulas_are_neutralised(stored):
    _, data, _ = stored
    roles = ['=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
    n_pos = len(data["position_labels"])
    labels = (roles * n_pos)[:n_pos]
    hostile = {**data, "position_labels": labels, "model": "=cmd|' /C calc'!A0"}
    rows = list(csv.reader(io.StringIO(to_csv(SweepResult.from_dict(hostile)), newline="")))
    header, cells = rows[0], [cell for row in rows[1:] for cell in row]
    for cell in cells:
        if cell.startswith(FORMULA):  # only numbers may start so: a spreadsheet reads them as such
            float(cell)
    shown = {row[header.index("pos_label")] for row in rows[1:]}
    assert shown == {"'" + label for label in labels}  # each role name, as text, in full
    assert {row[header.index("model")] for row in rows[1:]} == {"'=cmd|' /C calc'!A0"}
    raw = [float(row[header.index("raw")]) for row in rows[1:] if row[header.index("raw")]]
    assert any(v < 0 for v in raw)  # negative numbers are still numbers
