"""MIB's circuit files, sizes, pruning and areas, held to hand computations and to MIB's own
files (`circuits/ioi-eap-ig.json` in github.com/hannamw/MIB-circuit-track, written by EAP-IG's
`Graph.to_json`)."""

from __future__ import annotations

import json
import math
import random
import re
from pathlib import Path

import pytest

from actpatch.errors import InputError
from actpatch.patching import graph, mib

TINY = Path(__file__).parent / "data" / "mib_tiny.json"  # 1 layer x 2 heads, by hand


# --- the graph in EAP-IG's order ----------------------------------------------------------------


def test_edge_order_is_eap_igs():
    """Copied by hand from MIB's GPT-2 file: its 35th to 52nd edges, the start of layer 1's
    second writer, and its last 14 edges; 32,491 edges and 158 nodes in all."""
    names = mib.mib_edge_names(12, 12)
    assert len(names) == 32491 and len(mib.mib_node_names(12, 12)) == 158
    assert names[34:52] == [
        "input->a0.h11<k>", "input->a0.h11<v>", "input->m0",
        *[f"a0.h{h}->m0" for h in range(12)],
        "input->a1.h0<q>", "input->a1.h0<k>", "input->a1.h0<v>",
    ]  # fmt: skip
    assert names[49 + 36 : 49 + 40] == [
        "a0.h0->a1.h0<q>", "a0.h0->a1.h0<k>", "a0.h0->a1.h0<v>", "a0.h0->a1.h1<q>",
    ]  # fmt: skip
    assert names[-14:] == ["m10->logits", *[f"a11.h{h}->logits" for h in range(12)], "m11->logits"]


@pytest.mark.parametrize(("n_layers", "n_heads"), [(1, 1), (2, 3), (3, 4)])
def test_sequential_edges_are_our_graphs(n_layers, n_heads):
    ours = {graph.edge_name(w, r) for w, r in graph.edges(n_layers, n_heads)}
    names = mib.mib_edge_names(n_layers, n_heads)
    assert len(names) == len(set(names)) and set(names) == ours


def test_parallel_mlp_does_not_read_its_own_heads():
    """2 layers x 3 heads. Writers before layer L: 1 + 4L. Sequential: layer 0 has 9 head inputs
    x 1 + MLP 1 + 3 = 13, layer 1 has 9 x 5 + 5 + 3 = 53, logits 9: 75. Parallel drops the
    3 same-layer head->MLP edges of each layer: 69."""
    sequential = mib.mib_edge_names(2, 3)
    parallel = mib.mib_edge_names(2, 3, parallel=True)
    assert (len(sequential), len(parallel)) == (75, 69)
    assert set(sequential) - set(parallel) == {f"a{L}.h{h}->m{L}" for L in (0, 1) for h in range(3)}
    assert "a0.h2->m1" in parallel and "m0->a1.h0<q>" in parallel


# --- sizes and areas ----------------------------------------------------------------------------


def test_mib_sizes_by_hand():
    # int(fraction * 32491): 32.491, 64.982, 162.455, 324.91, 649.82, 1624.55, 3249.1, 6498.2,
    # 16245.5, 32491; and for 13 edges 0.013 ... 0.65 give 0, then 1.3, 2.6, 6.5, 13.
    assert mib.mib_sizes(32491) == [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
    assert mib.mib_sizes(13) == [0, 0, 0, 0, 0, 0, 1, 2, 6, 13]


def test_cpr_and_cmd_by_hand():
    """Fractions 0.001 0.002 0.005 0.01 0.02 0.05 0.1 0.2 0.5 1; faithfulness 0 up to 10%, then
    0.5, 1, 1.
    CPR: 0 on [0.001, 0.1]; [0.1, 0.2]: 0.1 x (0 + 0.5)/2 = 0.025; [0.2, 0.5]: 0.3 x (0.5 + 1)/2
    = 0.225; [0.5, 1]: 0.5 x 1 = 0.5. Total 0.75.
    CMD (|1 - f| = 1 up to 10%, then 0.5, 0, 0): [0.001, 0.1]: 0.099 x 1 = 0.099; [0.1, 0.2]:
    0.1 x (1 + 0.5)/2 = 0.075; [0.2, 0.5]: 0.3 x (0.5 + 0)/2 = 0.075; [0.5, 1]: 0. Total 0.249."""
    f = [0, 0, 0, 0, 0, 0, 0, 0.5, 1, 1]
    assert mib.cpr(f) == pytest.approx(0.75)
    assert mib.cmd(f) == pytest.approx(0.249)


def test_cmd_counts_overshoot_and_crossing_as_mib_does():
    """Constant 1.2: CPR 1.2 x 0.999 = 1.1988, CMD 0.2 x 0.999 = 0.1998.
    1 up to 20%, then 0 at 50% and 2 at 100%: CPR 0.199 + 0.3 x 0.5 + 0.5 x 1 = 0.849; CMD is
    0.3 x (0 + 1)/2 + 0.5 x (1 + 1)/2 = 0.65, though the straight line from 0 to 2 lies only
    0.25 from 1 on [0.5, 1]: MIB averages |1 - f| at the ends."""
    assert mib.cpr([1.2] * 10) == pytest.approx(1.1988)
    assert mib.cmd([1.2] * 10) == pytest.approx(0.1998)
    crossing = [1.0] * 8 + [0.0, 2.0]
    assert mib.cpr(crossing) == pytest.approx(0.849)
    assert mib.cmd(crossing) == pytest.approx(0.65)


def test_log_scale_and_custom_fractions():
    # Faithful everywhere on a log axis: ln(1) - ln(0.001) = 3 ln 10 = 6.907755...
    assert mib.cpr([1.0] * 10, log_scale=True) == pytest.approx(6.907755278982137)
    assert mib.cmd([1.0] * 10, log_scale=True) == 0
    # Two points 0 and 1 at x = 0, 1: a triangle of area 1/2 under f, 1/2 between f and 1.
    assert mib.cpr([0.0, 1.0], [0.0, 1.0]) == pytest.approx(0.5)
    assert mib.cmd([0.0, 1.0], [0.0, 1.0]) == pytest.approx(0.5)
    with pytest.raises(InputError, match="one per fraction"):
        mib.cpr([1.0, 1.0])


# --- selection and pruning ----------------------------------------------------------------------

CHAIN_FROM_NOWHERE = ["m0->a1.h0<q>", "a1.h0->m1", "m1->logits"]


def test_prune_drops_a_chain_with_no_input():
    """2 layers x 1 head. input->a0.h0<q>, a0.h0->logits is a path. m0 has no edge in, so
    m0->a1.h0<q> goes; then a1.h0 has none, so a1.h0->m1 goes; then m1, so m1->logits goes."""
    edges = ["input->a0.h0<q>", "a0.h0->logits", *CHAIN_FROM_NOWHERE]
    assert mib.prune(edges) == ["input->a0.h0<q>", "a0.h0->logits"]


def test_prune_keeps_the_chain_once_fed():
    """Adding a0.h0->m0 feeds m0 from a reached node: the whole chain lies on a path."""
    edges = ["input->a0.h0<q>", "a0.h0->logits", *CHAIN_FROM_NOWHERE, "a0.h0->m0"]
    assert mib.prune(edges) == edges


def test_prune_drops_dead_ends_and_counts_any_head_input():
    """input->m0: m0 writes nowhere kept. a0.h0->a1.h0<v>: a1.h0 writes nowhere kept. The head
    a0.h0 is reached through its k input alone."""
    edges = ["input->a0.h0<k>", "a0.h0->logits", "input->m0", "a0.h0->a1.h0<v>"]
    assert mib.prune(edges) == ["input->a0.h0<k>", "a0.h0->logits"]


def _eap_ig_prune(edges: list[str]) -> set[str]:
    """EAP-IG's Graph.prune, as it is written: repeat until nothing changes: a node stays if it
    has a kept edge out and (input aside) a kept edge in; an edge stays if its writer stays and
    its reader stays (logits always do)."""
    kept = set(edges)
    while True:
        writers = {e.split("->")[0] for e in kept}
        readers = {e.split("->")[1].split("<")[0] for e in kept}
        nodes = {n for n in writers if n == "input" or n in readers}
        after = {
            e
            for e in kept
            if e.split("->")[0] in nodes and e.split("->")[1].split("<")[0] in nodes | {"logits"}
        }
        if after == kept:
            return kept
        kept = after


def test_prune_agrees_with_eap_igs_fixpoint():
    every = mib.mib_edge_names(3, 2)
    rng = random.Random(0)
    for _ in range(200):
        chosen = rng.sample(every, rng.randint(0, 40))
        assert set(mib.prune(chosen)) == _eap_ig_prune(chosen)


def test_select_top_absolute_signed_and_pruned():
    """The tiny fixture's scores. By |score|: m0->logits .9, a0.h1->logits -.7, a0.h0->m0 -.6,
    input->a0.h0<q> .5, input->a0.h0<v> .3; a0.h1 has no kept edge in, so pruning drops
    a0.h1->logits. Signed: .9, .5 (a0.h0<q>), .3 (a0.h0<v>), .25 (input->m0), .2 (a0.h0->logits),
    all on paths."""
    circuit = mib.from_mib(TINY.read_text(), n_layers=1, n_heads=2)
    names, scores = list(circuit.names), list(circuit.scores or [])
    by_abs = ["m0->logits", "a0.h1->logits", "a0.h0->m0", "input->a0.h0<q>", "input->a0.h0<v>"]
    assert mib.select_top(names, scores, 5, pruned=False) == by_abs
    assert mib.select_top(names, scores, 5) == [e for e in by_abs if e != "a0.h1->logits"]
    assert mib.select_top(names, scores, 5, absolute=False) == [
        "m0->logits", "input->a0.h0<q>", "input->a0.h0<v>", "input->m0", "a0.h0->logits",
    ]  # fmt: skip
    # The fixture's in_graph circuit is that pruned top 5, as MIB's own file's is (its pruned
    # top 800 by |score|).
    assert set(circuit.circuit) == set(mib.select_top(names, scores, 5))


def test_select_top_ties_keep_the_given_order_and_bad_input_is_refused():
    pair = ["m0->logits", "input->logits"]
    assert mib.select_top(pair, [1.0, -1.0], 1, pruned=False) == ["m0->logits"]
    assert mib.select_top(pair[::-1], [1.0, 1.0], 1, pruned=False) == ["input->logits"]
    assert mib.select_top(pair, [1.0, 1.0], 1) == []  # m0 alone has no edge in: pruned
    with pytest.raises(InputError, match="2 scored edges"):
        mib.select_top(["input->logits", "m0->logits"], [1.0, 1.0], 3)
    with pytest.raises(InputError, match="NaN"):
        mib.select_top(["input->logits"], [math.nan], 1)


# --- files --------------------------------------------------------------------------------------


def test_reads_a_file_in_mibs_format():
    circuit = mib.from_mib(TINY.read_text(), n_layers=1, n_heads=2, d_model=8)
    assert circuit.shape == mib.MibShape(1, 2, False, 8)
    assert list(circuit.names) == mib.mib_edge_names(1, 2)
    assert circuit.scores == (0.5, -0.1, 0.3, 0.02, 0.0, -0.04, 0.25, -0.6, 0.01, 0.05, 0.2,
                              -0.7, 0.9)  # fmt: skip
    assert circuit.circuit == ["input->a0.h0<q>", "input->a0.h0<v>", "a0.h0->m0", "m0->logits"]
    assert circuit.n_missing == 0


def test_round_trip():
    """2 layers x 4 heads: write every edge (given in our reader-major order) with score
    i / 100 - 1, read it back: the same score for each name; the whole graph in the circuit."""
    names = [graph.edge_name(w, r) for w, r in graph.edges(2, 4)]
    scores = [i / 100 - 1 for i in range(len(names))]
    doc = mib.to_mib(names, scores, n_layers=2, n_heads=4, d_model=16)
    assert doc["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 16}
    assert list(doc["nodes"]) == mib.mib_node_names(2, 4)
    assert all(node["in_graph"] for node in doc["nodes"].values())
    back = mib.from_mib(json.dumps(doc), n_layers=2, n_heads=4, d_model=16)
    assert list(back.names) == mib.mib_edge_names(2, 4)
    assert dict(zip(back.names, back.scores or [], strict=True)) == dict(
        zip(names, scores, strict=True)
    )
    assert all(back.in_graph)


def test_write_marks_the_pruned_top_n():
    """top_n marks select_top's edges; nodes are in the graph when they write a marked edge."""
    names = mib.mib_edge_names(2, 1)  # input, a0.h0, m0, a1.h0, m1
    scores = {name: 0.0 for name in names}
    scores |= {"input->a0.h0<q>": 3.0, "a0.h0->logits": -2.0, "m0->a1.h0<q>": 1.0}
    doc = mib.to_mib(list(scores), list(scores.values()), n_layers=2, n_heads=1, d_model=4,
                     top_n=3)  # fmt: skip
    marked = [name for name, e in doc["edges"].items() if e["in_graph"]]
    assert marked == ["input->a0.h0<q>", "a0.h0->logits"]  # m0 has no edge in: pruned
    assert {n for n, v in doc["nodes"].items() if v["in_graph"]} == {"input", "a0.h0", "logits"}


def test_wrong_shape_is_refused_naming_both():
    doc = {"cfg": {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": False, "d_model": 768},
           "nodes": {}, "edges": {}}  # fmt: skip
    with pytest.raises(InputError) as err:
        mib.from_mib(doc, n_layers=2, n_heads=4, d_model=64)
    assert "made for a model of 12 layers x 12 heads" in str(err.value)
    assert "this model has 2 layers x 4 heads" in str(err.value)
    assert err.value.field == "circuit"
    doc["cfg"] |= {"n_layers": 1, "n_heads": 2, "parallel_attn_mlp": True, "d_model": 8}
    with pytest.raises(InputError, match=r"parallel attention and MLP.*sequential"):
        mib.from_mib(doc, n_layers=1, n_heads=2)


def test_unknown_edges_are_refused_saying_what_exists():
    doc = json.loads(TINY.read_text())
    doc["edges"]["a0.h0->a0.h1<q>"] = {"score": 1.0, "in_graph": False}
    with pytest.raises(InputError) as err:
        mib.from_mib(doc, n_layers=1, n_heads=2)
    text = str(err.value)
    assert "'a0.h0->a0.h1<q>'" in text and "has 13 edges" in text
    assert "L from 0 to 0, H from 0 to 1" in text and "input->a0.h0<q>" in text


def test_missing_edges_take_score_zero_as_eap_ig_does():
    doc = json.loads(TINY.read_text())
    del doc["edges"]["m0->logits"]
    circuit = mib.from_mib(doc, n_layers=1, n_heads=2)
    assert circuit.n_missing == 1 and circuit.names[-1] == "m0->logits"
    assert (circuit.scores or ())[-1] == 0.0 and circuit.in_graph[-1] is False


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("edges"), "lacks 'edges'"),
        (lambda d: d["cfg"].pop("parallel_attn_mlp"), "lacks parallel_attn_mlp"),
        (lambda d: d["nodes"]["m0"].update(score=0.4), "node- or neuron-level"),
        (lambda d: d["edges"]["m0->logits"].pop("score"), "1 of the file's 13 edges"),
        (lambda d: d["edges"]["m0->logits"].update(in_graph=1), "true or false"),
    ],
)
def test_malformed_files_are_refused(change, message):
    doc = json.loads(TINY.read_text())
    change(doc)
    with pytest.raises(InputError, match=message):
        mib.from_mib(doc, n_layers=1, n_heads=2)


def test_a_circuit_file_without_scores_is_read():
    """MIB's "multiple circuits" submissions mark in_graph and carry no scores."""
    doc = json.loads(TINY.read_text())
    for fields in doc["edges"].values():
        del fields["score"]
    circuit = mib.from_mib(doc, n_layers=1, n_heads=2)
    assert circuit.scores is None and len(circuit.circuit) == 4


def test_grouped_key_value_graphs_have_no_mib_form():
    names = mib.mib_edge_names(1, 4)
    with pytest.raises(InputError, match="kv='ungrouped'"):
        mib.to_mib(names, [0.0] * len(names), n_layers=1, n_heads=4, d_model=8, n_kv_heads=2,
                   kv="grouped")  # fmt: skip
    with pytest.raises(InputError, match="kv='ungrouped'"):
        mib.from_mib(TINY.read_text(), n_layers=1, n_heads=2, kv="grouped")
    # Ungrouped, a GQA model's names and cfg are a multi-head model's (n_heads = query heads).
    doc = mib.to_mib(names, [0.0] * len(names), n_layers=1, n_heads=4, d_model=8, n_kv_heads=2)
    assert doc["cfg"]["n_heads"] == 4 and "n_kv_heads" not in doc["cfg"]


def test_write_refuses_missing_duplicate_and_unknown_edges():
    names = mib.mib_edge_names(1, 2)
    with pytest.raises(InputError, match="1 of the graph's 13 edges have no score"):
        mib.to_mib(names[1:], [0.0] * 12, n_layers=1, n_heads=2, d_model=8)
    with pytest.raises(InputError, match="scored twice"):
        mib.to_mib([*names, names[0]], [0.0] * 14, n_layers=1, n_heads=2, d_model=8)
    with pytest.raises(InputError, match=re.escape("'a0.kv0->m0'")):
        mib.to_mib([*names, "a0.kv0->m0"], [0.0] * 14, n_layers=1, n_heads=2, d_model=8)
