"""Circuits on every fast-path family: grouped-query attention, parallel residual, post-norms.

References, each independent of the code under test:
- TransformerLens 4.3's edge-level `attribution_patch` and `faithfulness`, which run on GPT-NeoX
  (parallel residual) and on multi-head models. A grouped-query model equals the multi-head
  model whose key/value projections are repeated for each query head of their group
  (`_ungrouped`, checked by its logits): its edges are the ungrouped convention's, so TL on that
  model is the reference for ours on the grouped-query model.
- Path patching by plain TransformerLens hooks (freeze, patch, measure; tests/patching/
  test_paths.py's `_tl_path_patch`), on each family's own bridge.
- Definitions whose answers are known: the full graph is the clean run (faithfulness 1), the
  empty graph the corrupted run (0); EAP-IG with one step is EAP; EAP's grouped reader is the
  sum of its query heads' ungrouped readers (one key feeds them all: the chain rule).
- Finite differences for the post-norm Jacobian (Gemma 2's head edges).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tla

import actpatch
from actpatch.patching.circuit import evaluate, verify_edges
from actpatch.patching.edges import edge_attribution
from actpatch.patching.graph import Node, edge_name, parse_receivers, parse_senders
from actpatch.patching.graph_tables import graph_for
from actpatch.patching.paths import path_patch
from actpatch.patching.split import parts_of
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching import test_edges
from tests.patching.test_circuit import _edges_of, _tl_edges
from tests.patching.test_edges import _assert_scores_close, _summed
from tests.patching.test_engine import _pick_answers
from tests.patching.test_paths import _tl_path_patch
from tests.tiny_families import FAMILIES, build_family

GQA = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3", "olmo2")
TOL = 1e-4


def _experiment(model: Any) -> actpatch.Experiment:
    return actpatch.Experiment(
        model, IOI_CLEAN, IOI_CORRUPT, *_pick_answers(model, IOI_CLEAN, IOI_CORRUPT)
    )


def _tl_edges_summed(bridge: Any, exp: actpatch.Experiment) -> dict[str, float]:
    """TransformerLens 4.3's edge-level attribution_patch, summed over positions, by our names."""
    return _summed(test_edges._tl_edges(bridge, exp).edge_scores)


def _twin(exp: actpatch.Experiment, model: Any, **options: Any) -> actpatch.Experiment:
    """The experiment's prompts and answers on another model (or another backend)."""
    decode = exp.model.tokenizer.decode
    return actpatch.Experiment(
        model, IOI_CLEAN, IOI_CORRUPT, decode(exp.target_ids[:1]), decode(exp.wrong_ids[:1]),
        **options,
    )  # fmt: skip


def _metric(exp: actpatch.Experiment):
    from actpatch.patching.metrics import from_logits

    def metric(logits):
        return from_logits("logit_diff", logits[:, -1], exp.target_ids, exp.wrong_ids).mean()

    return metric


def _ungrouped(family: str, folder: Path) -> Any:
    """The multi-head model equal to `family`'s tiny grouped-query model: each key/value head's
    k_proj/v_proj rows (and biases) repeated for its query heads. Loaded through actpatch."""
    from actpatch.tokenizer import save_gpt2_tokenizer

    grouped = build_family(family)
    config = grouped.config.to_dict()
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    config["num_key_value_heads"] = heads
    multi = type(grouped)(type(grouped.config).from_dict(config))
    state = {}
    for name, value in grouped.state_dict().items():
        if name.endswith(("k_proj.weight", "v_proj.weight", "k_proj.bias", "v_proj.bias")):
            per_head = value.reshape(kv, -1, *value.shape[1:])
            value = per_head.repeat_interleave(heads // kv, dim=0).reshape(-1, *value.shape[1:])
        state[name] = value
    multi.load_state_dict(state)
    multi.eval().requires_grad_(False)
    tokens = torch.tensor([[50256, 818, 262, 3650, 11, 1757, 290, 5335, 1816]])
    assert torch.allclose(multi(tokens).logits, grouped(tokens).logits, atol=1e-5)
    multi.save_pretrained(str(folder))
    save_gpt2_tokenizer(folder)
    return actpatch.load_model(str(folder))


@pytest.fixture(scope="module")
def experiments(family_model):
    cache: dict[str, actpatch.Experiment] = {}

    def get(family: str) -> actpatch.Experiment:
        if family not in cache:
            cache[family] = _experiment(family_model(family))
        return cache[family]

    return get


# -- EAP against TransformerLens ------------------------------------------------------------------


def test_eap_on_gpt_neox_equals_transformer_lens(experiments):
    """Parallel residual: no a{L}.h{H}->m{L} edges; every edge as TL scores it."""
    exp = experiments("gpt_neox")
    ours = edge_attribution(exp, "eap")
    reference = _tl_edges_summed(exp.model.bridge(), exp)
    assert not any(e.name.startswith("a1.h") and e.name.endswith("->m1") for e in ours.edges)
    _assert_scores_close({e.name: e.score for e in ours.edges}, reference)


@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_eap_on_grouped_query_models_equals_transformer_lens_on_the_multi_head_model(
    experiments, tmp_path, family
):
    exp = experiments(family)
    multi = _ungrouped(family, tmp_path)
    reference = _tl_edges_summed(multi.bridge(), _twin(exp, multi))
    ours = edge_attribution(exp, "eap")
    assert exp.runner.n_kv_heads < exp.model.n_heads
    _assert_scores_close({e.name: e.score for e in ours.edges}, reference)


# -- EAP-IG, conventions --------------------------------------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_eap_ig_with_one_step_is_eap_on_every_family(experiments, family):
    exp = experiments(family)
    eap = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    one = {e.name: e.score for e in edge_attribution(exp, "eap-ig", steps=1).edges}
    _assert_scores_close(one, eap)
    assert len(eap) == graph_for(exp).n_edges


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma2", "olmo2"])
@pytest.mark.parametrize(("method", "steps"), [("eap", 1), ("eap-ig", 3)])
def test_grouped_scores_are_the_sums_of_the_ungrouped_ones(experiments, family, method, steps):
    """A key/value head's key feeds all its query heads, so d metric / d (its input) is the sum
    of their per-copy gradients: for the gradient methods (EAP, EAP-IG over the inputs), a
    grouped <k>/<v> edge's score is the sum of its query heads' ungrouped scores; q, MLP and
    logits edges are the same in both. (Exact patching and faithfulness do not add up so: a
    patch of one copy is not a patch of the shared key.)"""
    exp = experiments(family)
    ungrouped = {e.name: e.score for e in edge_attribution(exp, method, steps=steps).edges}
    grouped = {
        e.name: e.score for e in edge_attribution(exp, method, steps=steps, kv="grouped").edges
    }
    group = exp.model.n_heads // exp.runner.n_kv_heads
    expected: dict[str, float] = {}
    for name, score in ungrouped.items():
        writer, reader = name.split("->")
        if reader.endswith(("<k>", "<v>")):
            layer, head = reader[1:].split("<")[0].split(".h")
            reader = f"a{layer}.kv{int(head) // group}{reader[-3:]}"
        key = f"{writer}->{reader}"
        expected[key] = expected.get(key, 0.0) + score
    _assert_scores_close(grouped, expected)
    assert len(grouped) == graph_for(exp, "grouped").n_edges < len(ungrouped)


# -- circuits: faithfulness and exact edge patching ----------------------------------------------


@pytest.mark.parametrize("family", FAMILIES)
def test_the_full_graph_is_clean_and_the_empty_graph_corrupted_on_every_family(experiments, family):
    exp = experiments(family)
    kvs = ["ungrouped", "grouped"] if family in GQA else ["ungrouped"]
    for kv in kvs:
        every = graph_for(exp, kv).edge_names
        full = evaluate(exp, edges=every, kv=kv).points[0].faithfulness
        empty = evaluate(exp, edges=[], kv=kv).points[0].faithfulness
        assert full == pytest.approx(1.0, abs=TOL)
        assert empty == pytest.approx(0.0, abs=TOL)


def _tl_single_edges(bridge, exp, tl_exp, names: list[str]) -> list[float]:
    """TransformerLens's faithfulness run on the corrupted prompt with every edge but one kept,
    ablated from the clean prompt: the metric with that one edge patched from the clean run."""
    graph = graph_for(exp)
    every = _edges_of(graph.valid, graph)
    metric = _metric(tl_exp)
    out = []
    for name in names:
        keep = [e for e in every if edge_name(*e) != name]
        result = tla.faithfulness(
            bridge,
            tl_exp.corrupt_tokens,
            tl_exp.clean_tokens,
            metric,
            _tl_edges(keep, tl_exp.clean_tokens.shape[1], exp.model.n_layers),
        )
        out.append(
            result.recovered * (result.full_metric - result.corrupt_metric) + result.corrupt_metric
        )
    return out


def test_exact_edge_patching_on_gpt_neox_equals_transformer_lens(experiments):
    exp = experiments("gpt_neox")
    names = ["input->a0.h2<v>", "a0.h1->a1.h3<q>", "a0.h1->m1", "m0->a1.h2<k>", "a1.h1->logits"]
    checks = verify_edges(exp, names).edges
    reference = _tl_single_edges(exp.model.bridge(), exp, exp, names)
    assert [c.metric for c in checks] == pytest.approx(reference, abs=TOL)


def test_exact_edge_patching_on_a_grouped_query_model_equals_transformer_lens(
    experiments, tmp_path
):
    """Ungrouped key/value edges: one query head's copy of a shared key is patched; TL patches
    that head's own key in the equivalent multi-head model."""
    exp = experiments("llama")
    multi = _ungrouped("llama", tmp_path)
    tl_exp = _twin(exp, multi)
    names = ["input->a0.h2<v>", "a0.h1->a1.h3<k>", "input->a1.h0<k>", "a0.h0->m0", "m0->a1.h1<v>"]
    checks = verify_edges(exp, names).edges
    reference = _tl_single_edges(multi.bridge(), exp, tl_exp, names)
    assert [c.metric for c in checks] == pytest.approx(reference, abs=TOL)
    # and the circuit of every edge but those, evaluated whole
    graph = graph_for(exp)
    kept = [n for n in graph.edge_names if n not in names]
    ours = evaluate(exp, edges=kept).points[0].faithfulness
    theirs = tla.faithfulness(
        multi.bridge(),
        tl_exp.clean_tokens,
        tl_exp.corrupt_tokens,
        _metric(tl_exp),
        _tl_edges(
            [e for e in _edges_of(graph.valid, graph) if edge_name(*e) in set(kept)],
            tl_exp.clean_tokens.shape[1],
            exp.model.n_layers,
        ),
    ).recovered
    assert ours == pytest.approx(theirs, abs=TOL)


def test_eap_through_a_post_norm_is_the_derivative_of_exact_edge_patching(experiments):
    """Gemma 2: a head's edge passes through the attention post-norm. EAP's score of the edge
    is the derivative of the exact edge patch at the base run: patch the edge with the head's
    output moved a small step eps of the way from base to source, and the metric changes by
    eps * score (central differences; float32, so the tolerance is a fraction of the largest
    score)."""
    from actpatch.patching import circuit

    exp = experiments("gemma2")
    assert parts_of(exp.runner).post_normed[0]
    scores = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    names = ["a0.h1->a1.h2<q>", "a0.h3->m0", "a0.h0->logits", "a0.h2->a1.h0<v>"]
    setup = circuit._prepare(exp, None, "denoising")
    graph = graph_for(exp)
    replacement = circuit._replacements(setup, "corrupt", setup.start)  # source outputs
    scale = max(abs(v) for v in scores.values())
    eps = 1e-2
    for name in names:
        values = []
        for sign in (1.0, -1.0):

            def moved(kind: str, layer: int, s: float = sign) -> torch.Tensor:
                source = replacement(kind, layer)
                if kind != "head":
                    return source
                base = parts_of(exp.runner).head_out(
                    layer, setup.base.cache[("z", layer)][:, setup.start :]
                )
                return base + s * eps * (source - base)

            excluded = graph.mask(graph.parse([name]))[None]
            with torch.inference_mode():
                final = circuit._run(setup, graph, excluded, moved, setup.start)
            values.append(float(circuit.metric_values(setup, final)[0]))
        derivative = (values[0] - values[1]) / (2 * eps)
        assert derivative == pytest.approx(scores[name], abs=1e-3 * scale), name


# -- path patching against plain hooks -----------------------------------------------------------


def _reference(exp, senders: str, receivers: str, **kw) -> torch.Tensor:
    model = exp.model
    s_nodes = parse_senders(senders, model.n_layers, model.n_heads)
    r_nodes = parse_receivers(receivers, model.n_layers, model.n_heads, exp.runner.n_kv_heads)
    bridge = model.bridge()
    return torch.tensor(
        [
            _tl_path_patch(bridge, exp, s, r_nodes, kw.get("freeze_mlps", False), "denoising")
            for s in s_nodes
        ]
    )


@pytest.mark.parametrize("family", ["llama", "gpt_neox", "gemma2"])
@pytest.mark.parametrize("freeze_mlps", [False, True])
def test_path_patching_to_logits_matches_hooks(experiments, family, freeze_mlps):
    exp = experiments(family)
    ours = path_patch(exp, "all", "logits", freeze_mlps=freeze_mlps)
    reference = _reference(exp, "all", "logits", freeze_mlps=freeze_mlps)
    assert (ours.normalized.flatten() - reference).abs().max() < TOL


@pytest.mark.parametrize("family", ["llama", "gpt_neox", "gemma2"])
def test_path_patching_to_queries_keys_and_values_matches_hooks(experiments, family):
    """On the model's own hooks: a query head's query, and a key/value head's key and value
    (the grouped receivers; on GPT-NeoX, every head has its own)."""
    exp = experiments(family)
    grouped = exp.runner.n_kv_heads < exp.model.n_heads
    receivers = "a1.h1<q>," + ("a1.kv1<k>,a1.kv0<v>" if grouped else "a1.h2<k>,a1.h0<v>")
    for one in receivers.split(","):
        ours = path_patch(exp, "0.0,0.1,0.2,0.3,m0", one)
        reference = _reference(exp, "0.0,0.1,0.2,0.3,m0", one)
        assert (ours.normalized - reference).abs().max() < TOL, one
    ours = path_patch(exp, "0.0,0.1,0.2,0.3,m0", receivers)
    assert (ours.normalized - _reference(exp, "0.0,0.1,0.2,0.3,m0", receivers)).abs().max() < TOL


def test_path_patching_to_a_query_heads_own_key_matches_the_multi_head_model(experiments, tmp_path):
    exp = experiments("llama")
    multi = _ungrouped("llama", tmp_path)
    tl_exp = _twin(exp, multi)
    for receivers in ("a1.h3<k>", "a1.h0<v>,a1.h1<k>"):
        ours = path_patch(exp, "0.0,0.1,0.2,0.3,m0", receivers)
        reference = _reference(tl_exp, "0.0,0.1,0.2,0.3,m0", receivers)
        assert (ours.normalized - reference).abs().max() < TOL, receivers


# -- names that do not exist ---------------------------------------------------------------------


def test_edges_that_do_not_exist_on_the_model_are_refused_with_the_names_that_do(experiments):
    neox, llama = experiments("gpt_neox"), experiments("llama")
    with pytest.raises(actpatch.InputError, match="parallel residual") as err:
        evaluate(neox, edges=["a1.h0->m1"])
    assert "a0.h0->m1" in str(err.value)
    with pytest.raises(actpatch.InputError, match="key/value heads 0 to 1"):
        evaluate(llama, edges=["a0.h0->a1.kv2<k>"], kv="grouped")
    with pytest.raises(actpatch.InputError, match="ungrouped"):
        evaluate(llama, edges=["a0.h0->a1.kv1<k>"])
    with pytest.raises(actpatch.InputError, match=r"a1\.kv\{G\}<k>"):
        evaluate(llama, edges=["a0.h0->a1.h3<k>"], kv="grouped")
    with pytest.raises(actpatch.InputError, match="do not share keys"):
        path_patch(neox, "0.0", "a1.kv0<k>")


def test_models_on_the_bridge_are_refused_with_the_reason(experiments):
    exp = experiments("gpt2")
    bridge_exp = _twin(exp, exp.model, backend="bridge")
    with pytest.raises(actpatch.InputError, match="bridge") as err:
        edge_attribution(bridge_exp, "eap")
    assert err.value.field == "model"


def test_a_grouped_graph_names_key_value_heads(experiments):
    exp = experiments("qwen2")  # multi-query: one key/value head
    graph = graph_for(exp, "grouped")
    readers = [r.name for r in graph.readers if r.layer == 0]
    assert readers == [
        "a0.h0<q>", "a0.h1<q>", "a0.h2<q>", "a0.h3<q>", "a0.kv0<k>", "a0.kv0<v>", "m0",
    ]  # fmt: skip
    assert Node("kv", 1, 0, "k") in graph.reader_index


@pytest.mark.parametrize("family", ["llama", "gemma2"])
def test_edge_methods_run_in_bfloat16_and_agree_with_float32(experiments, tmp_path, family):
    """A bfloat16 model (how an 8B model fits a GPU): writer differences and reader gradients
    are scored in float32; the scores agree with the float32 model's to bfloat16's precision
    (0.1 of the largest score, the tolerance the sweeps are held to in bfloat16)."""
    from tests.tiny_families import save_family

    exp = experiments(family)
    half = actpatch.load_model(str(save_family(family, tmp_path / family)), dtype="bfloat16")
    half_exp = _twin(exp, half)
    for method in ("eap", "eap-ig"):
        full = {e.name: e.score for e in edge_attribution(exp, method, steps=2).edges}
        ours = {e.name: e.score for e in edge_attribution(half_exp, method, steps=2).edges}
        scale = max(abs(v) for v in full.values())
        assert max(abs(ours[k] - full[k]) for k in full) <= 0.1 * scale, method
    assert evaluate(half_exp, edges=[]).faithfulness == pytest.approx(0.0, abs=0.05)
    full_paths = path_patch(exp, "all", "a1.h1<q>").normalized
    half_paths = path_patch(half_exp, "all", "a1.h1<q>").normalized
    assert (half_paths - full_paths).abs().max() <= 0.1
