"""Circuit evaluation and exact edge patching against TransformerLens 4.3.

References: TransformerLens's own `faithfulness` (tools/analysis/attribution_patching.py: it
ablates every edge outside a circuit by rebuilding each reader's input through the bridge's
split q/k/v inputs), where its definition and ours coincide (corrupted-run ablation, one
prompt pair, edges kept at every position); and plain hook runs for node sets.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tla

import actpatch
from actpatch.patching.circuit import default_sizes, evaluate, verify_edges
from actpatch.patching.graph import GraphShape, Node, edge_name
from actpatch.patching.graph_tables import Graph, graph_for, graph_of
from actpatch.patching.metrics import from_logits
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import _pick_answers

TOL = 1e-4


@pytest.fixture(scope="module")
def exp(tiny_model):
    return actpatch.Experiment(
        tiny_model, IOI_CLEAN, IOI_CORRUPT, *_pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    )


def _metric_fn(exp):
    def metric(logits):
        return from_logits("logit_diff", logits[:, -1], exp.target_ids, exp.wrong_ids).mean()

    return metric


def _tl_writer(node: Node, pos: int) -> tla.Node:
    """Our position-free writer as TransformerLens's node at one position."""
    if node.kind == "input":
        return tla.Node("embed", pos)
    if node.kind == "mlp":
        return tla.Node("mlp_out", pos, layer=node.layer)
    return tla.Node("attn_head_out", pos, layer=node.layer, head=node.head)


def _tl_reader(node: Node, pos: int, n_layers: int) -> tla.Node:
    """Our position-free reader as TransformerLens's node at one position."""
    if node.kind == "logits":
        return tla.Node("logits", pos, layer=n_layers - 1)
    if node.kind == "mlp":
        return tla.Node("mlp_in", pos, layer=node.layer)
    return tla.Node(f"{node.qkv}_input", pos, layer=node.layer, head=node.head)


def _tl_edges(edges: list[tuple[Node, Node]], n_pos: int, n_layers: int) -> list:
    """Each of our edges at every position, as TransformerLens's (writer, reader) pairs."""
    return [
        (_tl_writer(w, pos), _tl_reader(r, pos, n_layers)) for w, r in edges for pos in range(n_pos)
    ]


def _edges_of(mask: torch.Tensor, graph: Graph) -> list[tuple[Node, Node]]:
    return [
        (graph.writers[wi], graph.readers[ri]) for ri, wi in (mask & graph.valid).nonzero().tolist()
    ]


def _tl_faithfulness(bridge, clean, corrupt, metric, edges, graph, n_layers) -> float:
    circuit = _tl_edges(edges, clean.shape[1], n_layers)
    return tla.faithfulness(bridge, clean, corrupt, metric, circuit).recovered


def test_the_full_graph_gives_one_and_the_empty_graph_zero(exp):
    graph = graph_for(exp)
    every = [edge_name(w, r) for w, r in _edges_of(graph.valid, graph)]
    full = evaluate(exp, edges=every)
    empty = evaluate(exp, edges=[])
    assert full.points[0].n_edges == graph.n_edges == full.total_edges
    assert full.faithfulness == pytest.approx(1.0, abs=TOL)
    assert empty.points[0].n_edges == 0
    assert empty.faithfulness == pytest.approx(0.0, abs=TOL)
    assert full.points[0].metric == pytest.approx(full.clean, abs=TOL)


# node sets whose faithfulness on the tiny model is far from 0 and 1 (-0.5, 0.7, 0.4), so the
# comparison cannot pass by both sides giving a trivial answer
NODE_SETS = [
    ["a2.h1", "a0.h3", "a2.h0", "a0.h2", "a1.h0", "a2.h3"],
    ["m2", "a0.h2", "a1.h0", "a0.h1", "a2.h3", "a1.h1", "a1.h3", "a2.h2", "m1"],
    ["a1.h3", "a0.h1", "a2.h1", "a1.h2", "a1.h1", "m0", "a0.h3", "a1.h0", "m1", "a2.h3"],
]


@pytest.mark.parametrize("nodes", NODE_SETS)
def test_a_node_set_agrees_with_transformer_lens_faithfulness(bridge, exp, nodes):
    graph = graph_for(exp)
    ours = evaluate(exp, nodes=nodes)
    mask = graph.induced([graph_node(n) for n in nodes])
    reference = _tl_faithfulness(
        bridge,
        exp.clean_tokens,
        exp.corrupt_tokens,
        _metric_fn(exp),
        _edges_of(mask, graph),
        graph,
        exp.model.n_layers,
    )
    assert ours.faithfulness == pytest.approx(reference, abs=TOL)
    assert abs(reference) > 0.1
    assert ours.nodes == sorted(nodes)


def graph_node(name: str) -> Node:
    from actpatch.patching.graph import parse_node

    return parse_node(name, 3, 4)


def test_an_edge_set_agrees_with_transformer_lens_faithfulness(bridge, exp):
    graph = graph_for(exp)
    torch.manual_seed(1)
    every = _edges_of(graph.valid, graph)
    # a random 70% of the edges: faithfulness 0.42 on the tiny model, far from 0 and 1
    chosen = [every[i] for i in torch.randperm(len(every))[: int(0.7 * len(every))].tolist()]
    ours = evaluate(exp, edges=[edge_name(w, r) for w, r in chosen])
    reference = _tl_faithfulness(
        bridge,
        exp.clean_tokens,
        exp.corrupt_tokens,
        _metric_fn(exp),
        chosen,
        graph,
        exp.model.n_layers,
    )
    assert ours.faithfulness == pytest.approx(reference, abs=TOL)
    assert 0.1 < reference < 0.9


def test_node_sets_equal_patching_their_outside_by_hooks(bridge, exp):
    """Ablating outside a node set = the clean run with every other head's z and MLP output set
    to its corrupted (or mean) value, by plain TransformerLens hooks."""
    nodes = NODE_SETS[1]
    kept = {graph_node(n) for n in nodes}
    metric = _metric_fn(exp)
    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(exp.clean_tokens)
        _, corrupt_cache = bridge.run_with_cache(exp.corrupt_tokens)
        clean_m, corrupt_m = (
            float(metric(bridge(t))) for t in (exp.clean_tokens, exp.corrupt_tokens)
        )
    for ablation in ("corrupt", "mean"):

        def value(name: str, ablation: str = ablation) -> torch.Tensor:
            if ablation == "corrupt":
                return corrupt_cache[name]
            return torch.cat([clean_cache[name], corrupt_cache[name]]).mean(0, keepdim=True)

        hooks = []
        for layer in range(exp.model.n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            heads = [h for h in range(exp.model.n_heads) if Node("head", layer, h) not in kept]

            def z_hook(act, hook, name=name, heads=heads):
                act = act.clone()
                act[:, :, heads] = value(name)[:, :, heads]
                return act

            hooks.append((name, z_hook))
            if Node("mlp", layer) not in kept:
                name = f"blocks.{layer}.hook_mlp_out"
                hooks.append((name, lambda act, hook, name=name: value(name).clone()))
        with torch.no_grad():
            ablated = float(metric(bridge.run_with_hooks(exp.clean_tokens, fwd_hooks=hooks)))
        ours = evaluate(exp, nodes=nodes, ablation=ablation)
        assert ours.points[0].metric == pytest.approx(ablated, abs=TOL)
        expected = (ablated - corrupt_m) / (clean_m - corrupt_m)
        assert ours.faithfulness == pytest.approx(expected, abs=TOL)


def test_mean_ablation_keeps_the_full_graph_clean(exp):
    graph = graph_for(exp)
    every = [edge_name(w, r) for w, r in _edges_of(graph.valid, graph)]
    assert evaluate(exp, edges=every, ablation="mean").faithfulness == pytest.approx(1, abs=TOL)


def test_a_curve_over_a_ranking_matches_single_evaluations(exp):
    graph = graph_for(exp)
    torch.manual_seed(2)
    every = _edges_of(graph.valid, graph)
    ranked = [edge_name(*every[i]) for i in torch.randperm(len(every)).tolist()]
    curve = evaluate(exp, ranked=ranked, sizes=[0, 10, 40, len(ranked)])
    assert [p.n_edges for p in curve.points] == [0, 10, 40, len(ranked)]
    assert curve.points[0].faithfulness == pytest.approx(0, abs=TOL)
    assert curve.points[-1].faithfulness == pytest.approx(1, abs=TOL)
    single = evaluate(exp, edges=ranked[:40])
    assert curve.points[2].metric == pytest.approx(single.points[0].metric, abs=TOL)


def test_default_sizes():
    assert default_sizes(250) == [0, 10, 20, 50, 100, 200, 250]
    assert default_sizes(5) == [0, 5]


def test_verify_edges_equal_transformer_lens_single_edge_ablation(bridge, exp):
    """Exact edge patching (denoising: the corrupted run, one edge from the clean run) equals
    TransformerLens's faithfulness run on the corrupted prompt with every edge but that one
    kept, ablated from the clean prompt."""
    graph = graph_for(exp)
    names = ["input->a0.h2<v>", "a0.h1->a2.h3<q>", "a1.h0->m1", "m0->a1.h2<k>", "a2.h1->logits"]
    checks = verify_edges(exp, names).edges
    metric = _metric_fn(exp)
    every = _edges_of(graph.valid, graph)
    with torch.no_grad():
        clean_m = float(metric(bridge(exp.clean_tokens)))
        corrupt_m = float(metric(bridge(exp.corrupt_tokens)))
    for name, check in zip(names, checks, strict=True):
        keep = [e for e in every if edge_name(*e) != name]
        result = tla.faithfulness(
            bridge,
            exp.corrupt_tokens,
            exp.clean_tokens,
            metric,
            _tl_edges(keep, exp.clean_tokens.shape[1], exp.model.n_layers),
        )
        # TL's run is on its "clean" argument (our corrupted prompt); undo its normalization
        patched = result.recovered * (result.full_metric - result.corrupt_metric) + (
            result.corrupt_metric
        )
        assert check.edge == name
        assert check.metric == pytest.approx(patched, abs=TOL)
        assert check.effect == pytest.approx(patched - corrupt_m, abs=TOL)
        assert check.normalized == pytest.approx(
            (patched - corrupt_m) / (clean_m - corrupt_m), abs=TOL
        )


def test_bad_circuits_teach(exp):
    with pytest.raises(actpatch.InputError, match="not an edge"):
        evaluate(exp, edges=["a2.h0->a1.h0<q>"])
    with pytest.raises(actpatch.InputError, match="Unknown ablation"):
        evaluate(exp, nodes=["m0"], ablation="zero")
    with pytest.raises(actpatch.InputError, match="out of range"):
        evaluate(exp, ranked=["m0->logits"], sizes=[5])


def test_several_length_groups_average_over_pairs(tiny_model, bridge):
    """Each group's ablated metric from TransformerLens's faithfulness; the whole circuit's
    faithfulness from the pair-weighted averages of the ablated, clean and corrupted metrics."""
    from actpatch.patching.circuit import evaluate_many

    answers = _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    short = ("Mary met John, and John thanked", "Mary met John, and Mary thanked")
    groups = [
        actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers),
        actpatch.Experiment(tiny_model, *short, *answers),
    ]
    nodes = NODE_SETS[1]
    ours = evaluate_many(groups, nodes=nodes)
    graph = graph_of(GraphShape(tiny_model.n_layers, tiny_model.n_heads))
    edges = _edges_of(graph.induced([graph_node(n) for n in nodes]), graph)
    ablated = clean = corrupt = 0.0
    for exp in groups:
        result = tla.faithfulness(
            bridge,
            exp.clean_tokens,
            exp.corrupt_tokens,
            _metric_fn(exp),
            _tl_edges(edges, exp.clean_tokens.shape[1], tiny_model.n_layers),
        )
        gap = result.full_metric - result.corrupt_metric
        ablated += 0.5 * (result.recovered * gap + result.corrupt_metric)
        clean += 0.5 * result.full_metric
        corrupt += 0.5 * result.corrupt_metric
    assert ours.points[0].metric == pytest.approx(ablated, abs=TOL)
    assert ours.faithfulness == pytest.approx((ablated - corrupt) / (clean - corrupt), abs=TOL)


@pytest.mark.parametrize("ablation", ["corrupt", "mean"])
def test_mib_evaluation_normalizes_by_the_empty_circuit_as_mib_does(exp, ablation):
    """MIB's faithfulness is (circuit - empty circuit) / (clean - empty circuit), the empty
    circuit ablated like the others: 0 for an empty circuit under either ablation, 1 for the
    whole graph; each point is `evaluate` of that pruned circuit, renormalized so."""
    from actpatch.patching import mib
    from actpatch.patching.circuit import evaluate_mib
    from actpatch.patching.edges import edge_attribution

    scores = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    names = graph_for(exp).edge_names
    values = [scores[n] for n in names]
    result = evaluate_mib([exp], names, values, ablation=ablation)
    summary = result.mib
    assert summary is not None and summary["fractions"] == list(mib.MIB_FRACTIONS)
    empty = evaluate(exp, edges=[], ablation=ablation).points[0].metric
    clean = result.clean  # the clean model's metric (MIB's baseline)
    circuits = mib.mib_circuits(names, values, absolute=True)
    for circuit, faith in zip(circuits, summary["faithfulness"]["absolute"], strict=True):
        metric = evaluate(exp, edges=circuit, ablation=ablation).points[0].metric
        assert faith == pytest.approx((metric - empty) / (clean - empty), abs=TOL)
        if not circuit:
            assert faith == pytest.approx(0.0, abs=TOL)
    assert summary["faithfulness"]["absolute"][-1] == pytest.approx(1.0, abs=TOL)
    assert summary["cpr"] == pytest.approx(mib.cpr(summary["faithfulness"]["signed"]))
    assert summary["cmd"] == pytest.approx(mib.cmd(summary["faithfulness"]["absolute"]))


def test_mib_evaluation_refuses_grouped_readers_and_missing_scores(tiny_model):
    """The rules of MIB's evaluation live in the core, so every shell says the same."""
    import actpatch
    from actpatch.errors import InputError
    from actpatch.patching.circuit import evaluate_mib
    from actpatch.patching.graph_tables import graph_for

    exp = actpatch.Experiment(
        tiny_model, "Paris is the capital of", "Berlin is the capital of", " France"
    )
    names = graph_for(exp).edge_names
    for kwargs, field in (
        ({"scores": [1.0] * len(names), "kv": "grouped"}, "kv"),
        ({"scores": None}, "scores"),
        ({"scores": [1.0]}, "scores"),
    ):
        with pytest.raises(InputError) as caught:
            evaluate_mib([exp], names, **kwargs)
        assert caught.value.field == field


def test_names_in_one_comma_separated_string_are_the_list_of_them(exp):
    """A string where a list is expected (as the CLI writes them): each comma-separated name,
    never the string's letters."""
    as_list = evaluate(exp, nodes=["a0.h1", "m0", "a2.h3"])
    as_text = evaluate(exp, nodes="a0.h1, m0,a2.h3")
    assert as_text.nodes == ["a0.h1", "a2.h3", "m0"]
    assert as_text.points[0].metric == as_list.points[0].metric
    assert as_text.points[0].n_edges == as_list.points[0].n_edges
    one = verify_edges(exp, "m0->logits")
    assert [c.edge for c in one.edges] == ["m0->logits"]
    assert one.edges[0].metric == verify_edges(exp, ["m0->logits"]).edges[0].metric
    with pytest.raises(actpatch.InputError, match=r"\(0, 1\) among the nodes is a tuple"):
        evaluate(exp, nodes=[(0, 1)])
