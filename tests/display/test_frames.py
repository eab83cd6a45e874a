"""`to_pandas()`: one row per cell with its labels, values equal to the result's own tensors
(a format test), a sweep's columns exactly its CSV export's; and the numbers that can be held to
an independent computation are (DLA's parts against the model's own logit difference, the logit
lens's last point against Hugging Face's forward, attention rows summing to 1)."""

from __future__ import annotations

import csv
import io
import math
import sys

import pytest
import torch

from actpatch.export import to_csv

pd = pytest.importorskip("pandas")


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.parametrize("name", ["sweep", "resid", "z_by_pos", "paris", "dataset", "ablation"])
def test_sweep_table_is_the_csv_export(results, name):
    result = results[name]
    frame = result.to_pandas()
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    assert list(frame.columns) == list(rows[0])
    assert len(frame) == len(rows) == result.raw.numel()
    for (_, got), row in zip(frame.iterrows(), rows, strict=True):
        cell = tuple(int(row[axis]) for axis in result.axes)
        assert tuple(got[axis] for axis in result.axes) == cell
        # the tensor itself, exactly: floats go through the CSV and back without rounding
        assert _same(got["raw"], float(result.raw[cell]))
        assert _same(got["normalized"], float(result.normalized[cell]))
        for column in ("pos_label", "metric", "component", "direction", "model"):
            if column in row:
                assert got[column] == row[column]
        assert got["n_pairs"] == result.n_pairs


def test_sweep_table_keeps_unpatched_cells_as_nan_and_the_interval(results):
    paris = results["paris"].to_pandas()  # 5 vs 6 tokens: one position has no counterpart
    assert paris["raw"].isna().sum() == int(results["paris"].raw.isnan().sum()) > 0
    assert paris["ci_low"].isna().all()
    dataset = results["dataset"]
    frame = dataset.to_pandas()
    assert set(frame["pos_label"]) == set(dataset.position_labels)  # IO, S1, S2, END, ...
    row = frame[(frame.layer == 2) & (frame.pos_label == "S2")].iloc[0]
    pos = dataset.position_labels.index("S2")
    assert row["ci_low"] == float(dataset.ci.low[2, pos])
    assert row["ci_level"] == dataset.ci.level


def test_a_model_named_like_a_missing_value_stays_text(results):
    from dataclasses import replace

    frame = replace(results["sweep"], model="NA").to_pandas()
    assert (frame["model"] == "NA").all()


def test_attribution_table(results):
    result = results["attribution"]  # resid_pre: (layer, pos), compared with exact patching
    frame = result.to_pandas()
    assert len(frame) == result.estimate.numel()
    for _, row in frame.iterrows():
        cell = (row["layer"], row["pos"])
        assert _same(row["estimate"], float(result.estimate[cell]))
        assert _same(row["exact"], float(result.exact[cell]))
        assert row["pos_label"] == f"{row['pos']} {result.tokens[row['pos']]!r}"
    assert frame["atp"].isna().all()  # plain AtP has no separate AtP estimate


def test_patch_table(results):
    result = results["patch"]
    frame = result.to_pandas().set_index("run")
    assert list(frame.index) == ["clean", "corrupt", "patched"]
    assert frame.loc["patched", "target_prob"] == result.patched_prob
    assert frame.loc["corrupt", "target_rank"] == result.corrupt_rank
    assert frame.loc["clean", "top_tokens"] == [t.token for t in result.top_clean]
    assert (frame["layer"] == 3).all() and (frame["head"] == 4).all()
    assert frame["pos"].isna().all()


def test_path_table_names_each_sender(results):
    every = results["path"].to_pandas()
    assert len(every) == results["path"].raw.numel()
    for _, row in every.iterrows():
        assert row["sender"] == f"a{row['layer']}.h{row['head']}"
        assert row["raw"] == float(results["path"].raw[row["layer"], row["head"]])
    chosen = results["path_senders"].to_pandas()
    assert list(chosen["sender"]) == ["a3.h4", "m0"]
    assert chosen["layer"].tolist() == [3, 0]
    assert chosen["head"].isna().tolist() == [False, True]


def test_edge_table_in_rank_order_with_the_exact_checks(results):
    result = results["edges"]
    frame = result.to_pandas()
    assert len(frame) == len(result.names)
    assert frame["edge"].tolist() == result.names
    assert frame["score"].tolist() == result.scores
    assert (frame["source"] + "->" + frame["target"]).tolist() == result.names
    checked = frame.dropna(subset=["exact_effect"])
    assert checked["edge"].tolist() == [c.edge for c in result.verified]
    assert checked["exact_effect"].tolist() == [c.effect for c in result.verified]


def test_verify_and_circuit_tables(results):
    verify = results["verify"].to_pandas()
    assert verify["edge"].tolist() == [c.edge for c in results["verify"].edges]
    assert verify["effect"].tolist() == [c.effect for c in results["verify"].edges]
    circuit = results["circuit"].to_pandas()
    assert circuit["n_edges"].tolist() == [5, 20, 100]
    assert circuit["faithfulness"].tolist() == [p.faithfulness for p in results["circuit"].points]


def test_attention_table_rows_sum_to_one_and_pivot_back(results):
    result = results["attention"]
    frame = result.to_pandas()
    n_heads, n_q, n_k = result.clean.shape
    assert len(frame) == 2 * n_heads * n_q * n_k
    sums = frame.groupby(["run", "head", "query_pos"])["weight"].sum()
    assert sums.to_numpy() == pytest.approx(1.0, abs=1e-5)  # a softmax over the keys
    clean = frame[(frame.run == "clean") & (frame["head"] == 4)]
    grid = torch.tensor(clean.pivot(index="query_pos", columns="key_pos", values="weight").values)
    assert torch.equal(grid, result.clean[1].double())
    row = clean[(clean.query_pos == 14) & (clean.key_pos == 2)].iloc[0]
    assert (row["query_token"], row["key_token"]) == (result.tokens[14], result.tokens[2])


def test_dla_table_sums_to_the_models_own_logit_difference(results):
    result = results["dla"]
    frame = result.to_pandas()
    n_layers, n_heads = result.clean.heads.shape
    assert len(frame) == 1 + n_layers * (n_heads + 2) + 1
    # `actual` is the model's own metric, not a sum of the parts: the parts must add up to it
    assert frame["clean"].sum() == pytest.approx(result.clean.actual, abs=1e-3)
    assert frame["corrupt"].sum() == pytest.approx(result.corrupt.actual, abs=1e-3)
    head = frame[frame.name == "L3H4"].iloc[0]
    assert head["clean"] == float(result.clean.heads[3, 4])
    assert head["difference"] == pytest.approx(head["clean"] - head["corrupt"])


def test_lens_table_ends_at_the_models_own_output(results, demo_exp):
    frame = results["lens"].to_pandas()
    assert frame["point"].tolist() == results["lens"].labels
    model = demo_exp.model
    target, wrong = (model.to_tokens(t)[-1] for t in (" Mary", " John"))
    with torch.no_grad():  # Hugging Face's own forward of the clean prompt
        logits = model.hf_model(demo_exp.clean_tokens).logits[0, -1]
    assert frame["clean_metric"].iloc[-1] == pytest.approx(float(logits[target] - logits[wrong]))
    assert frame["clean_top"].iloc[-1][0] == model.tokenizer.decode([int(logits.argmax())])


def test_without_pandas_the_error_names_the_extra(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)  # `import pandas` raises ImportError
    with pytest.raises(ImportError, match=r"actpatch\[notebook\]"):
        results["lens"].to_pandas()


# The columns `display.frames` documents for each patching result's table, in order: the shared
# tables (`patching.results.columns`) keep them as they were before the CSV export shared them.
COLUMNS = {
    "patch": "run target_prob target_rank metric_value top_tokens top_probs layer head pos "
    "metric component direction model",
    "attribution": "layer pos pos_label estimate normalized score atp exact exact_normalized "
    "n_pairs metric component method direction model",
    "path": "sender layer head raw normalized receivers freeze_mlps metric direction model",
    "edges": "rank edge source target score exact_effect exact_normalized method metric "
    "direction model",
    "verify": "edge source target metric_value effect normalized metric direction model",
    "circuit": "n_edges metric_value faithfulness ablation method total_edges metric model",
}


@pytest.mark.parametrize("name", list(COLUMNS))
def test_each_patching_tables_columns_are_as_documented(results, name):
    frame = results[name].to_pandas()
    assert list(frame.columns) == COLUMNS[name].split()
    integers = {"patch": ["layer", "head", "pos"], "path": ["layer", "head"]}.get(name, [])
    assert all(str(frame[c].dtype) == "Int64" for c in integers)  # <NA> where a cell has none
