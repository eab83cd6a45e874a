"""Exports of a run: tidy CSV, JSON, PNG and SVG heatmaps, and a notebook that reruns the
sweep on the demo model and matches the stored numbers."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import nbclient
import nbformat
import pytest
import torch

import actpatch
from actpatch.datasets import ioi
from actpatch.export import export, heatmap, notebook, to_csv
from actpatch.patching.experiment import dataset_experiments
from actpatch.patching.results import SweepResult
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


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
        export("patch", {}, {"layer": 1}, "png")


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


# -- the views: a tidy CSV, the same table as to_pandas() --------------------------------------


@pytest.fixture(scope="module")
def views(demo):
    """The three views of the IOI pair on the demo model (two heads: the `by_head` layout)."""
    from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens

    exp = actpatch.Experiment(demo, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    return {
        "attention": attention_pattern(exp, 1, [0, 5]),
        "dla": direct_logit_attribution(exp),
        "lens": logit_lens(exp, k=3, sublayers=True),
    }


def view_table(kind: str, result) -> list[list[str]]:
    """A view's run as the history keeps it (its JSON, read back), exported as CSV and read by
    the csv module: the header, then the rows."""
    stored = json.loads(json.dumps(result.to_dict()))
    return list(csv.reader(io.StringIO(export(kind, {}, stored, "csv").decode(), newline="")))


def hf_logits(demo, prompt: str) -> torch.Tensor:
    """Hugging Face's own logits at the final position."""
    with torch.inference_mode():
        return demo.hf_model(torch.tensor([demo.to_tokens(prompt)])).logits[0, -1].float()


@pytest.mark.parametrize("kind", ["attention", "dla", "lens"])
def test_a_views_csv_is_its_to_pandas_table(views, kind):
    """Column for column and row for row, the CSV is the notebook's table: its labels and counts
    exactly, its numbers to the stored JSON's 6 significant digits, its lists as JSON arrays."""
    import pandas as pd

    result = views[kind]
    header, *rows = view_table(kind, result)
    frame = result.to_pandas()
    assert header == list(frame.columns)
    assert len(rows) == len(frame)
    for row, want in zip(rows, frame.itertuples(index=False), strict=True):
        numbers = [abs(v) for v in want if isinstance(v, float) and v == v]
        scale = max(numbers, default=0.0)
        for cell, value in zip(row, want, strict=True):
            if value is None or value is pd.NA:
                assert cell == ""
            elif isinstance(value, str):  # a cell a spreadsheet would run gets a leading '
                assert cell == ("'" + value if value.startswith(FORMULA) else value)
            elif isinstance(value, list):
                assert json.loads(cell) == value
            elif isinstance(value, float):
                assert float(cell) == pytest.approx(value, rel=1e-5, abs=1e-5 * scale)
            else:
                assert int(cell) == value


def test_the_attention_csv_holds_transformer_lens_pattern(demo, views):
    """The clean rows' weights are TransformerLens's `hook_pattern` (through its bridge), each
    query's row summing to 1, labelled with the clean prompt's tokens."""
    header, *rows = view_table("attention", views["attention"])
    col = {name: header.index(name) for name in header}
    tokens = demo.to_tokens(IOI_CLEAN)
    with torch.inference_mode():
        _, cache = demo.bridge().run_with_cache(torch.tensor([tokens]))
    pattern = cache["blocks.1.attn.hook_pattern"][0].float()  # (head, query_pos, key_pos)
    clean = [r for r in rows if r[col["run"]] == "clean"]
    assert len(clean) == 2 * len(tokens) ** 2  # heads 0 and 5, every (query, key)
    sums: dict[tuple[int, int], float] = {}
    for r in clean:
        head, q, k = int(r[col["head"]]), int(r[col["query_pos"]]), int(r[col["key_pos"]])
        assert float(r[col["weight"]]) == pytest.approx(float(pattern[head, q, k]), abs=1e-5)
        sums[head, q] = sums.get((head, q), 0.0) + float(r[col["weight"]])
        assert r[col["key_token"]] == demo.tokenizer.decode([tokens[k]])
    assert sums.values() and all(v == pytest.approx(1.0, abs=1e-4) for v in sums.values())


def test_the_dla_csv_sums_to_hugging_faces_logit_difference(demo, views):
    """Each run's column of direct shares sums to the model's own logit difference (Hugging
    Face's forward): DLA decomposes the final residual stream, the norm's scale frozen."""
    header, *rows = view_table("dla", views["dla"])
    mary, john = (
        demo.to_tokens(" Mary", prepend_bos=False)[0],
        demo.to_tokens(" John", prepend_bos=False)[0],
    )
    for run, prompt in (("clean", IOI_CLEAN), ("corrupt", IOI_CORRUPT)):
        logits = hf_logits(demo, prompt)
        total = sum(float(r[header.index(run)]) for r in rows)
        assert total == pytest.approx(float(logits[mary] - logits[john]), abs=1e-3)
    names = [r[header.index("name")] for r in rows]
    assert names[0] == "embed" and names[-1] == "const" and "L3H4" in names and "MLP L3" in names


def test_the_lens_csv_ends_at_the_models_own_output(demo, views):
    header, *rows = view_table("lens", views["lens"])
    assert len(rows) == 2 * demo.n_layers + 1  # before each layer, after each attention; output
    mary, john = (
        demo.to_tokens(" Mary", prepend_bos=False)[0],
        demo.to_tokens(" John", prepend_bos=False)[0],
    )
    last = dict(zip(header, rows[-1], strict=True))
    logits = hf_logits(demo, IOI_CORRUPT)
    assert float(last["corrupt_metric"]) == pytest.approx(
        float(logits[mary] - logits[john]), abs=1e-4
    )
    top = [demo.tokenizer.decode([int(i)]) for i in logits.topk(3).indices]
    assert json.loads(last["corrupt_top"]) == top
    assert float(last["corrupt_prob"]) == pytest.approx(float(logits.softmax(-1)[mary]), abs=1e-5)


def test_a_view_exports_as_json_or_csv_not_as_a_picture(views):
    stored = json.loads(json.dumps(views["dla"].to_dict()))
    for fmt in ("png", "ipynb"):
        with pytest.raises(actpatch.InputError, match="export it as json or csv"):
            export("dla", {}, stored, fmt)


# A stored attention run whose tokens a spreadsheet would read as formulas.
HOSTILE_ATTENTION = {
    "model": "=cmd|' /C calc'!A0",
    "backend": "fast",
    "layer": 0,
    "head": 1,
    "kv_head": 0,
    "pair": 0,
    "tokens": ["=1+1", "-"],
    "corrupt_tokens": ["@SUM(A1)", " b"],
    "clean": [[1.0, 0.0], [0.25, 0.75]],
    "corrupt": [[1.0, 0.0], [0.5, 0.5]],
    "warnings": [],
}


def test_a_views_csv_neutralises_cells_that_would_run_as_formulas():
    header, *rows = list(
        csv.reader(io.StringIO(export("attention", {}, HOSTILE_ATTENTION, "csv").decode()))
    )
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["query_token"], r["key_token"]) for r in table[:4]] == [
        ("'=1+1", "'=1+1"),
        ("'=1+1", "'-"),
        ("'-", "'=1+1"),
        ("'-", "'-"),
    ]
    assert table[4]["query_token"] == "'@SUM(A1)" and table[7]["key_token"] == " b"
    assert {r["model"] for r in table} == {"'=cmd|' /C calc'!A0"}
    assert [float(r["weight"]) for r in table] == [1.0, 0.0, 0.25, 0.75, 1.0, 0.0, 0.5, 0.5]


def test_a_views_csv_needs_no_pandas():
    """pandas is the notebook extra: the CSV export is written with the csv module."""
    code = (
        "import json, sys\n"
        "sys.modules['pandas'] = None  # any import of pandas now fails\n"
        "from actpatch.export import export\n"
        f"print(export('attention', {{}}, json.loads({json.dumps(json.dumps(HOSTILE_ATTENTION))}),"
        " 'csv').decode().splitlines()[0])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "run,layer,head,kv_head,query_pos,query_token,key_pos,key_token,weight,pair,model"
    )


# -- the patching results: a tidy CSV, the same table as to_pandas() ----------------------------


@pytest.fixture(scope="module")
def kept(demo):
    """A result of each kind with a table of its own, on the IOI pair of the demo model, by the
    name the history keeps its runs under (exact edge checks by their result's, "verify")."""
    from actpatch.patching import edge_attribution, evaluate_many, path_patch, verify_edges

    exp = actpatch.Experiment(demo, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    edges = edge_attribution(exp, "eap", verify=3)
    return {
        "patch": actpatch.patch(exp, layer=3, head=4),
        "attribution": actpatch.attribute(exp, "z", method="atp*", compare=True),
        "attribution_pos": actpatch.attribute(exp, "resid_pre", method="atp"),
        "path": path_patch(exp),
        "path_senders": path_patch(exp, senders=["a3.h4", "m0"]),
        "edges": edges,
        "verify": verify_edges(exp, edges.names[:3]),
        "evaluation": evaluate_many([exp], ranked=edges.names, sizes=[5, 20, 100]),
    }


def kind_of(name: str) -> str:
    return name.split("_")[0]


def result_table(name: str, result) -> list[dict[str, str]]:
    """A result as the history keeps it (its JSON, read back), exported as CSV and read by the
    csv module: a dict per row."""
    stored = json.loads(json.dumps(result.to_dict()))
    text = export(kind_of(name), {}, stored, "csv").decode()
    return list(csv.DictReader(io.StringIO(text, newline="")))


def number(cell: str) -> float:
    """A CSV cell as a number: empty is NaN (how the CSV writes a missing value)."""
    return float("nan") if cell == "" else float(cell)


def same(cell: str, value: float) -> bool:
    """Whether a CSV cell holds `value` exactly (NaN as an empty cell)."""
    return cell == "" if value != value else float(cell) == value


def test_a_patchs_csv_holds_each_runs_numbers(kept):
    result = kept["patch"]
    rows = {r["run"]: r for r in result_table("patch", result)}
    assert list(rows) == ["clean", "corrupt", "patched"]
    runs = {
        "clean": (result.clean_prob, result.clean_rank, result.metric_clean, result.top_clean),
        "corrupt": (
            result.corrupt_prob,
            result.corrupt_rank,
            result.metric_corrupt,
            result.top_corrupt,
        ),
        "patched": (
            result.patched_prob,
            result.patched_rank,
            result.metric_patched,
            result.top_patched,
        ),
    }
    for run, (prob, rank, metric, top) in runs.items():
        row = rows[run]
        assert float(row["target_prob"]) == prob and int(row["target_rank"]) == rank
        assert float(row["metric_value"]) == metric
        assert json.loads(row["top_tokens"]) == [t.token for t in top]
        assert json.loads(row["top_probs"]) == [t.prob for t in top]
        assert (row["layer"], row["head"], row["pos"]) == ("3", "4", "")  # no position given
        assert (row["component"], row["model"]) == (result.component, result.model)
    # the patched run's metric, normalized, is the recovery the result reports
    low, high = float(rows["corrupt"]["metric_value"]), float(rows["clean"]["metric_value"])
    recovered = (float(rows["patched"]["metric_value"]) - low) / (high - low)
    assert recovered == pytest.approx(result.metric_normalized, abs=1e-6)


@pytest.mark.parametrize("name", ["attribution", "attribution_pos"])
def test_an_attributions_csv_holds_every_cell(kept, name):
    result = kept[name]
    rows = result_table(name, result)
    assert len(rows) == result.estimate.numel()
    seen = set()
    for row in rows:
        cell = tuple(int(row[axis]) for axis in result.axes)
        seen.add(cell)
        assert same(row["estimate"], float(result.estimate[cell]))
        assert same(row["normalized"], float(result.normalized[cell]))
        assert same(row["score"], float(result.score[cell]))
        for column, grid in (
            ("atp", result.atp),
            ("exact", result.exact),
            ("exact_normalized", result.exact_normalized),
        ):
            assert row[column] == "" if grid is None else same(row[column], float(grid[cell]))
        if "pos" in result.axes:
            pos = cell[result.axes.index("pos")]
            assert row["pos_label"] == f"{pos} {result.tokens[pos]!r}"
        assert (row["method"], row["n_pairs"]) == (result.method, str(result.n_pairs))
    assert len(seen) == len(rows)  # each cell once
    if result.exact is not None:  # AtP*'s estimate, held to the exact patch it estimates
        estimate = torch.tensor([number(r["estimate"]) for r in rows])
        exact = torch.tensor([number(r["exact"]) for r in rows])
        both = ~(estimate.isnan() | exact.isnan())
        assert torch.corrcoef(torch.stack([estimate[both], exact[both]]))[0, 1] > 0.5


@pytest.mark.parametrize("name", ["path", "path_senders"])
def test_a_path_patchings_csv_names_each_sender(kept, name):
    result = kept[name]
    rows = result_table(name, result)
    assert [r["sender"] for r in rows] == result.senders
    for i, row in enumerate(rows):
        if result.all_heads:
            layer, head = int(row["layer"]), int(row["head"])
            assert row["sender"] == f"a{layer}.h{head}"
            assert same(row["raw"], float(result.raw[layer, head]))
            assert same(row["normalized"], float(result.normalized[layer, head]))
        else:
            assert same(row["raw"], float(result.raw[i]))
        assert row["receivers"] == ", ".join(result.receivers)
    if not result.all_heads:  # an MLP has no head
        assert [(r["layer"], r["head"]) for r in rows] == [("3", "4"), ("0", "")]


def test_an_edge_attributions_csv_ranks_its_edges_with_their_exact_checks(kept):
    result = kept["edges"]
    rows = result_table("edges", result)
    assert [r["edge"] for r in rows] == result.names
    assert [float(r["score"]) for r in rows] == result.scores
    assert [int(r["rank"]) for r in rows] == list(range(len(result.names)))
    assert all(f"{r['source']}->{r['target']}" == r["edge"] for r in rows)
    checked = [r for r in rows if r["exact_effect"] != ""]
    assert [r["edge"] for r in checked] == [c.edge for c in result.verified]
    assert [float(r["exact_effect"]) for r in checked] == [c.effect for c in result.verified]
    assert len(checked) == 3


def test_exact_edge_checks_csv(kept):
    result = kept["verify"]
    rows = result_table("verify", result)
    assert [r["edge"] for r in rows] == [c.edge for c in result.edges]
    for row, check in zip(rows, result.edges, strict=True):
        assert same(row["metric_value"], check.metric) and same(row["effect"], check.effect)
        assert same(row["normalized"], check.normalized)
        # the effect is the metric's change from the corrupted run (denoising), by definition
        assert float(row["effect"]) == pytest.approx(check.metric - result.corrupt, abs=1e-5)


def test_a_circuit_evaluations_csv_has_one_row_per_size(kept):
    result = kept["evaluation"]
    rows = result_table("evaluation", result)
    assert [int(r["n_edges"]) for r in rows] == [5, 20, 100]
    for row, point in zip(rows, result.points, strict=True):
        assert same(row["metric_value"], point.metric)
        faithfulness = (point.metric - result.corrupt) / (result.clean - result.corrupt)
        assert float(row["faithfulness"]) == pytest.approx(faithfulness, abs=1e-6)
        assert (row["ablation"], row["total_edges"]) == (result.ablation, str(result.total_edges))


@pytest.mark.parametrize(
    "name",
    [
        "patch",
        "attribution",
        "attribution_pos",
        "path",
        "path_senders",
        "edges",
        "verify",
        "evaluation",
    ],
)
def test_a_patching_results_csv_is_its_to_pandas_table(kept, name):
    """Column for column and row for row, the CSV is the notebook's table, its numbers exactly
    (written with repr, they read back as the same floats), its lists as JSON arrays."""
    import pandas as pd

    result = kept[name]
    stored = json.loads(json.dumps(result.to_dict()))
    header, *rows = list(
        csv.reader(io.StringIO(export(kind_of(name), {}, stored, "csv").decode(), newline=""))
    )
    frame = result.to_pandas()
    assert header == list(frame.columns)
    assert len(rows) == len(frame) > 0
    for row, want in zip(rows, frame.itertuples(index=False), strict=True):
        for cell, value in zip(row, want, strict=True):
            if value is None or value is pd.NA:
                assert cell == ""
            elif isinstance(value, (bool, str)):
                assert cell == str(value)
            elif isinstance(value, list):
                assert json.loads(cell) == value
            elif isinstance(value, float):
                assert same(cell, value)
            else:
                assert int(cell) == value


def test_every_kind_exports_in_exactly_the_formats_it_names(kept):
    """`formats_of(kind)` (what errors and the page list) is what `export` does: each format it
    names gives a file, each other is refused with a message naming those it has."""
    from actpatch.export import FORMATS, formats_of

    for name, result in kept.items():
        kind, stored = kind_of(name), json.loads(json.dumps(result.to_dict()))
        assert "csv" in formats_of(kind)
        for fmt in FORMATS:
            if fmt in formats_of(kind):
                assert export(kind, {}, stored, fmt)
            else:
                with pytest.raises(actpatch.InputError, match="export it as json") as refused:
                    export(kind, {}, stored, fmt)
                said = refused.value.message.split("export it as ")[1].split(" (")[0]
                assert set(re.split(r", | or ", said.rstrip("."))) == set(formats_of(kind))


def test_a_result_that_is_not_its_kind_is_refused_naming_the_field():
    with pytest.raises(actpatch.InputError, match="lacks field 'top_clean'"):
        export("patch", {}, {"layer": 1}, "csv")


def test_a_patching_results_csv_neutralises_cells_that_would_run_as_formulas():
    hostile = {
        "model": "=cmd|' /C calc'!A0",
        "metric": "logit_diff",
        "direction": "denoising",
        "clean": 1.0,
        "corrupt": -1.0,
        "edges": [
            {"edge": "=1+1->@SUM(A1)", "metric": -0.5, "effect": 0.5, "normalized": 0.25},
            {"edge": "a0.h1->m0", "metric": None, "effect": None, "normalized": None},
        ],
    }
    header, *rows = list(csv.reader(io.StringIO(export("verify", {}, hostile, "csv").decode())))
    table = [dict(zip(header, row, strict=True)) for row in rows]
    assert [(r["edge"], r["source"], r["target"]) for r in table] == [
        ("'=1+1->@SUM(A1)", "'=1+1", "'@SUM(A1)"),
        ("a0.h1->m0", "a0.h1", "m0"),
    ]
    assert {r["model"] for r in table} == {"'=cmd|' /C calc'!A0"}
    assert [table[0][c] for c in ("metric_value", "effect", "normalized")] == [
        "-0.5",
        "0.5",
        "0.25",
    ]  # a negative number is still a number
    assert [table[1][c] for c in ("metric_value", "effect", "normalized")] == ["", "", ""]
