"""Attribution patching against independent computations.

- AtP equals TransformerLens 4.3's own `attribution_patch` node scores (its attn_head_out nodes
  are our z by position, its mlp_out nodes our mlp_out) to 1e-4 relative, through its
  TransformerBridge: one pair and a batch, both directions, every gradient metric.
- Each estimate is a directional derivative: it equals a central finite difference of the
  metric along the patch, on a float64 copy of the tiny model.
- The QK fix equals a TransformerLens hook run that patches the query or key and reads the
  pattern, times TransformerLens's gradient at the pattern; GradDrop equals TransformerLens's
  gradients with each layer's attention and MLP outputs detached.
- Planted circuits: AtP ranks the planted head first; on the saturated circuit plain AtP
  estimates 0 for the query that carries the whole answer and AtP* recovers it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch
from transformer_lens.tools.analysis.attribution_patching import (
    attribution_patch,
    cache_activation_and_gradient,
)

import actpatch
from actpatch.patching import gradients
from actpatch.patching.attribution import attribute, attribute_components
from actpatch.patching.gradients import gradient_run
from actpatch.planted import build_head_circuit, build_saturated_circuit
from tests.conftest import ATTRIBUTE_FIELDS, IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import SHORT_CLEAN, SHORT_CORRUPT, _pick_answers
from tests.patching.test_gradients import _fresh, _metric_with
from tests.tiny_families import FAMILIES

REL = 1e-4


@pytest.fixture(scope="module")
def exp(tiny_model):
    # answers the random model tells apart, so that every metric (prob too) has a gradient
    answers = _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    return actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)


@contextmanager
def _differentiable(bridge) -> Iterator[None]:
    """The bridge's weights take gradients while TransformerLens computes its reference (actpatch
    loads models with requires_grad off); restored after."""
    params = list(bridge.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


def _tl_metric(exp, metric: str):
    target = int(exp.target_ids[0])
    wrong = int(exp.wrong_ids[0]) if exp.wrong_ids is not None else None

    def metric_fn(logits: torch.Tensor) -> torch.Tensor:
        last = logits[0, -1]
        if metric == "logit_diff":
            return last[target] - last[wrong]
        if metric == "logprob":
            return last.log_softmax(-1)[target]
        return last.softmax(-1)[target]

    return metric_fn


def _tl_nodes(bridge, exp, metric: str, direction: str, n_pos: int):
    """TransformerLens's node scores as (layer, pos, head) and (layer, pos) tensors."""
    clean, corrupt = exp.clean_tokens, exp.corrupt_tokens
    if direction == "noising":  # its convention is denoising: swap the runs
        clean, corrupt = corrupt, clean
    with _differentiable(bridge):
        scores = attribution_patch(bridge, clean, corrupt, _tl_metric(exp, metric)).node_scores
    layers, heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    z = torch.zeros(layers, n_pos, heads)
    mlp = torch.zeros(layers, n_pos)
    for node, value in scores.items():
        if node.kind == "attn_head_out":
            z[node.layer, node.position, node.head] = value
        elif node.kind == "mlp_out":
            mlp[node.layer, node.position] = value
    return z, mlp


def _close(ours: torch.Tensor, reference: torch.Tensor) -> None:
    assert ours.shape == reference.shape
    scale = float(reference.abs().max())
    assert scale > 1e-3, "test set-up: the reference must not be all zero"
    assert float((ours - reference).abs().max()) <= REL * scale


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("metric", ["logit_diff", "logprob", "prob"])
def test_atp_equals_transformer_lens_node_scores(bridge, exp, metric, direction):
    z, mlp, z_all = attribute_components(
        exp, ["z_by_pos", "mlp_out", "z"], "atp", direction, metric
    )
    ref_z, ref_mlp = _tl_nodes(bridge, exp, metric, direction, len(z.tokens))
    _close(z.estimate, ref_z)
    _close(mlp.estimate, ref_mlp)
    _close(z_all.estimate, ref_z.sum(1))  # over all positions: the sum of its positions


def test_atp_over_a_batch_is_transformer_lens_mean_over_pairs(tiny_model, bridge):
    clean = [IOI_CLEAN, IOI_CLEAN.replace("store", "park"), IOI_CLEAN.replace("drink", "book")]
    corrupt = [c.replace(", John gave", ", Mary gave") for c in clean]
    exp = actpatch.Experiment(tiny_model, clean, corrupt, " Mary", " John")
    z = attribute(exp, "z_by_pos")
    total = torch.zeros_like(z.estimate)
    for i in range(3):
        one = actpatch.Experiment(tiny_model, clean[i], corrupt[i], " Mary", " John")
        total += _tl_nodes(bridge, one, "logit_diff", "denoising", len(z.tokens))[0]
    _close(z.estimate, total / 3)


# -- finite differences ---------------------------------------------------------------------------


def _cell_delta(exp, component: str, cell: tuple[int, ...]) -> torch.Tensor:
    """The clean-minus-corrupted activation at the entries `cell` patches, zero elsewhere."""
    comp = actpatch.patching.get_component(component)
    clean = exp.run("clean", [comp.hook]).cache[(comp.hook, cell[0])]
    corrupt = exp.run("corrupt", [comp.hook]).cache[(comp.hook, cell[0])]
    delta = torch.zeros_like(clean)
    if comp.hook == "pattern" or not comp.per_head:  # (layer, head) of a pattern; (layer, pos)
        delta[:, cell[1]] = (clean - corrupt)[:, cell[1]]
    elif comp.by_pos:
        delta[:, cell[1], cell[2]] = (clean - corrupt)[:, cell[1], cell[2]]
    else:
        delta[:, :, cell[1]] = (clean - corrupt)[:, :, cell[1]]
    return delta


@pytest.mark.parametrize(
    ("component", "metric"),
    [
        ("resid_pre", "logit_diff"),
        ("resid_mid", "logit_diff"),
        ("attn_out", "logit_diff"),
        ("mlp_out", "logprob"),
        ("z_by_pos", "logit_diff"),
        ("q", "logit_diff"),
        ("k_by_pos", "logprob"),
        ("v", "logit_diff"),
    ],
)
def test_estimate_is_the_directional_derivative(exp64, component, metric):
    result = attribute(exp64, component, "atp", metric=metric)
    order = result.estimate.nan_to_num(0).abs().flatten().argsort(descending=True)[:3]
    for flat in order.tolist():
        cell = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), result.estimate.shape))
        comp = actpatch.patching.get_component(component)
        delta = _cell_delta(exp64, component, cell)

        def central(eps: float, delta=delta, comp=comp, cell=cell) -> float:
            up = _metric_with(exp64, comp.hook, cell[0], eps * delta, metric)
            down = _metric_with(exp64, comp.hook, cell[0], -eps * delta, metric)
            return (up - down) / (2 * eps)

        derivative = central(1e-5)
        # 1e-5: the fast path may compute its softmax in float32 (as Hugging Face's forward does
        # for half precision), even for a float64 model
        assert float(result.estimate[cell]) == pytest.approx(derivative, rel=1e-5, abs=1e-8)


def test_a_sweep_after_a_cold_attribution_equals_one_on_a_fresh_experiment(tiny_model):
    attributed = _fresh(tiny_model)
    attribute_components(attributed, ["z_by_pos", "mlp_out"], "atp")
    after = actpatch.sweep(attributed, "z_by_pos", "logit_diff")
    fresh = actpatch.sweep(_fresh(tiny_model), "z_by_pos", "logit_diff")
    torch.testing.assert_close(after.raw, fresh.raw, rtol=1e-5, atol=1e-6)


# -- AtP*: the QK fix and GradDrop against TransformerLens ------------------------------------


def _tl_pattern_gradient(bridge, exp):
    names = ["hook_embed"] + [f"blocks.{i}.attn.hook_pattern" for i in range(bridge.cfg.n_layers)]
    with _differentiable(bridge):
        return cache_activation_and_gradient(
            bridge, exp.corrupt_tokens, _tl_metric(exp, "logit_diff"), names_filter=names
        )


def _tl_patched_pattern(bridge, exp, layer: int, hook: str, index) -> torch.Tensor:
    """The corrupted run's pattern at `layer` with the clean run's `hook` (q or k) at `index`."""
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)
    name = f"blocks.{layer}.attn.hook_{hook}"
    seen = {}

    def patch(act, hook):
        act = act.clone()
        act[index] = clean[name][index]
        return act

    def keep(act, hook):
        seen["pattern"] = act.detach()
        return act

    with torch.no_grad():
        bridge.run_with_hooks(
            exp.corrupt_tokens,
            fwd_hooks=[(name, patch), (f"blocks.{layer}.attn.hook_pattern", keep)],
        )
    return seen["pattern"]


def test_qk_fix_is_the_exact_pattern_change_times_the_pattern_gradient(bridge, exp):
    grads = _tl_pattern_gradient(bridge, exp)
    q = attribute(exp, "q", "atp*")
    k_by_pos = attribute(exp, "k_by_pos", "atp*")
    reference_q = torch.zeros_like(q.estimate)
    n_layers, n_heads = q.estimate.shape
    for layer in range(n_layers):
        name = f"blocks.{layer}.attn.hook_pattern"
        base, g = grads.activations[name], grads.gradients[name]
        for head in range(n_heads):
            patched = _tl_patched_pattern(bridge, exp, layer, "q", (slice(None), slice(None), head))
            reference_q[layer, head] = ((patched - base) * g).sum()
        for pos in (len(q.tokens) - 1, exp.first_diff):
            patched = _tl_patched_pattern(bridge, exp, layer, "k", (slice(None), pos, 1))
            expected = float(((patched - base) * g).sum())
            assert float(k_by_pos.estimate[layer, pos, 1]) == pytest.approx(expected, abs=1e-5)
    _close(q.estimate, reference_q)
    # the pattern itself: plain AtP is its change times the same gradient
    pattern = attribute(exp, "pattern", "atp")
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)
    reference = torch.stack(
        [
            ((clean[n] - grads.activations[n]) * grads.gradients[n]).sum(dim=(0, 2, 3))
            for n in (f"blocks.{i}.attn.hook_pattern" for i in range(n_layers))
        ]
    )
    _close(pattern.estimate, reference)


def test_graddrop_equals_transformer_lens_gradients_with_a_layer_detached(bridge, exp):
    n_layers = bridge.cfg.n_layers
    names = ["hook_embed"] + [f"blocks.{i}.attn.hook_z" for i in range(n_layers)]
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)

    def detach(act, hook):
        return act.detach()

    terms = []
    for dropped in range(n_layers):
        hooks = [(f"blocks.{dropped}.hook_{w}", detach) for w in ("attn_out", "mlp_out")]
        with _differentiable(bridge), bridge.hooks(fwd_hooks=hooks):
            cache = cache_activation_and_gradient(
                bridge, exp.corrupt_tokens, _tl_metric(exp, "logit_diff"), names_filter=names
            )
        per_layer = []
        for layer in range(n_layers):
            name = f"blocks.{layer}.attn.hook_z"
            g = cache.gradients[name]
            g = torch.zeros_like(cache.activations[name]) if g is None else g
            per_layer.append(((clean[name] - cache.activations[name]) * g).sum(-1)[0])
        terms.append(torch.stack(per_layer))
    reference = torch.stack(terms).abs().sum(0) / (n_layers - 1)  # Kramar et al., eq. 11
    result = attribute(exp, "z_by_pos", "atp*")
    _close(result.score, reference)
    # z is linear in its own inputs: no QK fix, so AtP*'s signed estimate is plain AtP's
    assert torch.equal(result.estimate, result.atp)


# -- planted circuits ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def head_circuit(tmp_path_factory):
    truth = build_head_circuit(tmp_path_factory.mktemp("head-circuit"))
    return truth, actpatch.load_model(str(truth.folder))


@pytest.fixture(scope="module")
def saturated(tmp_path_factory):
    truth = build_saturated_circuit(tmp_path_factory.mktemp("saturated-circuit"))
    return truth, actpatch.load_model(str(truth.folder))


@pytest.mark.parametrize("method", ["atp", "atp*"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_atp_ranks_the_planted_head_first(head_circuit, method, direction):
    truth, model = head_circuit
    exp = actpatch.Experiment(model, **truth.prompts())
    result = attribute(exp, "z", method, direction)
    (first, _), (second, _) = result.top(2)
    assert first == truth.heads[0]
    expected = 1.0 if direction == "denoising" else -1.0
    # the whole gap, up to the layer norms' linearization (a few percent here)
    assert float(result.normalized[first]) == pytest.approx(expected, abs=0.05)
    # every other head, the decoy included, stays within 1% of the gap (exactly: 0)
    assert float(result.normalized[second]) == pytest.approx(0.0, abs=0.01)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_saturated_attention_hides_the_head_from_atp_and_atp_star_finds_it(saturated, direction):
    truth, model = saturated
    exp = actpatch.Experiment(model, **truth.prompts())
    head = truth.heads[0]
    final = truth.final_pos
    # the construction: patching the head's query moves the whole logit difference
    exact = actpatch.sweep(exp, "q", direction=direction)
    gap = truth.clean_logit_diff - truth.corrupt_logit_diff
    sign = 1.0 if direction == "denoising" else -1.0
    base = exact.corrupt if direction == "denoising" else exact.clean
    assert float(exact.raw[head] - base) == pytest.approx(sign * gap, abs=1e-3)

    atp = attribute_components(exp, ["q", "q_by_pos"], "atp", direction)
    star = attribute_components(exp, ["q", "q_by_pos"], "atp*", direction)
    # the softmax is saturated: its gradient is exactly 0, and so is plain AtP
    assert float(atp[0].estimate.abs().max()) == 0.0
    assert float(atp[1].estimate.nan_to_num(0).abs().max()) == 0.0
    # AtP* recomputes the pattern with the patched query: the whole gap, up to the final layer
    # norm's linearization (its scale moves by half a percent with one copied name)
    assert float(star[0].normalized[head]) == pytest.approx(sign, abs=0.02)
    assert float(star[1].normalized[head[0], final, head[1]]) == pytest.approx(sign, abs=0.02)
    assert star[0].top(1)[0][0] == head
    assert star[0].corrections[0]["cell"] == list(head)
    # the head's output is linear in the pattern: plain AtP finds the head through z
    z = attribute(exp, "z", "atp", direction)
    assert z.top(1)[0][0] == head


# -- screening, verifying and comparing ------------------------------------------------------------


def test_compare_reports_the_exact_sweep_beside_the_estimate(exp):
    result = attribute(exp, "resid_pre", "atp", compare=True)
    sweep = actpatch.sweep(exp, "resid_pre")
    assert torch.allclose(result.exact, sweep.raw - sweep.corrupt, equal_nan=True)
    a = result.agreement
    assert a is not None
    valid = ~result.estimate.isnan()
    est, ex = result.estimate[valid].double().numpy(), result.exact[valid].double().numpy()
    assert a["pearson"] == pytest.approx(float(np.corrcoef(est, ex)[0, 1]), abs=1e-9)
    ranks = [_average_ranks(v) for v in (est, ex)]
    assert a["spearman"] == pytest.approx(float(np.corrcoef(*ranks)[0, 1]), abs=1e-9)
    assert 0 <= a["top_k_overlap"] <= 1
    d = result.to_dict()
    for key in ("exact", "exact_normalized", "agreement", "estimate", "normalized"):
        assert key in d


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks with ties given their mean rank (as Spearman's correlation wants)."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return (first + (counts - 1) / 2)[inverse]


def test_verify_patches_the_top_cells_exactly(exp):
    result = attribute(exp, "z_by_pos", "atp*", verify=4)
    sweep = actpatch.sweep(exp, "z_by_pos")
    assert len(result.verified) == 4
    ranked = sorted((c for c in result.verified), key=lambda v: v["score"], reverse=True)
    assert ranked == result.verified
    top_scores = result.score.nan_to_num(-1).flatten().sort(descending=True).values[:4]
    assert [v["score"] for v in result.verified] == pytest.approx(top_scores.tolist())
    for v in result.verified:
        cell = tuple(v["cell"])
        assert v["exact"] == pytest.approx(float(sweep.raw[cell] - sweep.corrupt), abs=1e-5)


def test_unequal_lengths_use_the_sweeps_alignment(tiny_model, bridge):
    exp = actpatch.Experiment(
        tiny_model, "Paris is the capital of", "Berlin is the capital of", " France", " Germany"
    )
    result = attribute(exp, "resid_pre")
    assert result.unpatched_positions == [1, 2]
    assert result.estimate[:, 1:3].isnan().all()
    # reference: TransformerLens's gradient on the corrupted run, clean activations mapped
    # through the alignment's pairs
    names = ["hook_embed"] + [f"blocks.{i}.hook_resid_pre" for i in range(tiny_model.n_layers)]
    with _differentiable(bridge):
        grads = cache_activation_and_gradient(
            bridge, exp.corrupt_tokens, _tl_metric(exp, "logit_diff"), names_filter=names
        )
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)
    for layer in range(tiny_model.n_layers):
        name = names[layer + 1]
        for clean_pos, corrupt_pos in exp.alignment.pairs:
            delta = clean[name][0, clean_pos] - grads.activations[name][0, corrupt_pos]
            g = grads.gradients[name]
            expected = 0.0 if g is None else float((delta * g[0, corrupt_pos]).sum())
            assert float(result.estimate[layer, corrupt_pos]) == pytest.approx(
                expected, rel=REL, abs=1e-5
            )


def test_rank_and_the_bridge_are_refused_with_a_way_out(tiny_model, exp):
    with pytest.raises(actpatch.InputError, match="logit_diff") as err:
        attribute(exp, "z", metric="rank")
    assert err.value.field == "metric"
    with pytest.raises(actpatch.InputError, match="method"):
        attribute(exp, "z", method="eap")
    on_bridge = actpatch.Experiment(
        tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John", backend="bridge"
    )
    with pytest.raises(actpatch.InputError, match="exact sweep") as err:
        attribute(on_bridge, "z")
    assert err.value.field == "backend"


def test_progress_and_cancel(exp):
    seen: list[tuple[int, int]] = []
    attribute(exp, "z", "atp*", compare=True, progress=lambda d, t: seen.append((d, t)))
    assert seen[0][0] == 0 and seen[-1][0] == seen[-1][1]
    with pytest.raises(actpatch.CancelledError):
        attribute(exp, "z", should_stop=lambda: True)


def test_result_names_model_backend_and_fields(exp, tiny_model):
    d = attribute(exp, "z_by_pos", "atp*").to_dict()
    for key in ATTRIBUTE_FIELDS:
        assert key in d
    assert d["model"] == tiny_model.name and d["backend"] == "fast"
    assert d["method"] == "atp*"
    n_layers, n_pos = tiny_model.n_layers, len(d["tokens"])
    assert len(d["estimate"]) == n_layers and len(d["estimate"][0]) == n_pos
    assert len(d["estimate"][0][0]) == tiny_model.n_heads


# -- every family of the fast path -------------------------------------------------------------

FAMILY_NAMES = [f for f in FAMILIES if f != "gpt2"]  # GPT-2: the tests above


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_family_equals_transformer_lens_node_scores(family_model, family):
    """AtP on each family's tiny model (grouped-query attention, rotary, parallel residuals,
    soft-capping, qk-norm, post-norms) equals TransformerLens's attribution_patch through its
    bridge."""
    model = family_model(family)
    exp = actpatch.Experiment(
        model, SHORT_CLEAN, SHORT_CORRUPT, *_pick_answers(model, SHORT_CLEAN, SHORT_CORRUPT)
    )
    z, mlp = attribute_components(exp, ["z_by_pos", "mlp_out"], "atp")
    ref_z, ref_mlp = _tl_nodes(model.bridge(), exp, "logit_diff", "denoising", len(z.tokens))
    _close(z.estimate, ref_z)
    _close(mlp.estimate, ref_mlp)


@pytest.mark.parametrize("family", ["llama", "gemma2", "olmo2"])
def test_qk_fix_on_grouped_keys_soft_caps_and_qk_norms(family_model, family):
    """The QK fix recomputes patterns with the model's own block: keys shared by a group of
    query heads (Llama), soft-capped scores (Gemma 2), a norm over the whole key projection
    that couples the heads (OLMo 2). Each key cell equals TransformerLens's patched pattern
    times its pattern gradient."""
    model = family_model(family)
    exp = actpatch.Experiment(
        model, SHORT_CLEAN, SHORT_CORRUPT, *_pick_answers(model, SHORT_CLEAN, SHORT_CORRUPT)
    )
    bridge = model.bridge()
    grads = _tl_pattern_gradient(bridge, exp)
    result = attribute(exp, "k_by_pos", "atp*")
    n_kv = model.n_kv_heads
    assert result.estimate.shape[-1] == n_kv
    final = exp.corrupt_tokens.shape[1] - 1
    for layer in range(model.n_layers):
        name = f"blocks.{layer}.attn.hook_pattern"
        base, g = grads.activations[name], grads.gradients[name]
        for pos, head in ((final, n_kv - 1), (exp.first_diff, 0)):
            patched = _tl_patched_pattern(bridge, exp, layer, "k", (slice(None), pos, head))
            expected = float(((patched - base) * g).sum())
            assert float(result.estimate[layer, pos, head]) == pytest.approx(
                expected, rel=REL, abs=1e-6
            )


@pytest.mark.parametrize("shared", [False, True])
def test_a_padded_experiment_attributes_each_pair_as_alone(tiny_model, shared, monkeypatch):
    # Two pairs of different lengths, left-padded into one experiment (as a mixed-length dataset
    # runs): each pair's metric and per-head estimate must be what its own experiment gives,
    # whether the gradient pass is the cached forward or runs after it.
    from actpatch.patching.experiment import group_by_length, padded

    monkeypatch.setattr(gradients, "SHARED_ROWS", 10**9 if shared else 0)

    pairs = [(IOI_CLEAN, IOI_CORRUPT), (SHORT_CLEAN, SHORT_CORRUPT)]
    answers = [_pick_answers(tiny_model, c, k) for c, k in pairs]
    groups = group_by_length(
        tiny_model,
        [c for c, _ in pairs],
        [k for _, k in pairs],
        [a[0] for a in answers],
        [a[1] for a in answers],
    )
    joined = padded(groups)
    assert joined.pad is not None and int(joined.pad.max()) > 0
    alone = [
        actpatch.Experiment(tiny_model, c, k, *a) for (c, k), a in zip(pairs, answers, strict=True)
    ]
    grad = gradient_run(joined, "corrupt", "logit_diff", ["z"])
    expected = [float(gradient_run(e, "corrupt", "logit_diff", ["z"]).values[0]) for e in alone]
    torch.testing.assert_close(grad.values, torch.tensor(expected), rtol=1e-4, atol=1e-5)
    # AtP of z per head sums over positions: the mean over pairs of each pair's own estimate
    ours = attribute(padded(groups), "z", "atp", metric="logit_diff").estimate
    mean = sum(attribute(e, "z", "atp", metric="logit_diff").estimate for e in alone) / 2
    torch.testing.assert_close(ours, mean, rtol=1e-4, atol=1e-5)


def test_components_given_as_one_string_are_its_comma_separated_names(exp):
    """A string where a list is expected: 'z_by_pos' is one component, not eight letters."""
    (one,) = attribute_components(exp, "z_by_pos", "atp")
    assert one.component == "z_by_pos"
    z, mlp = attribute_components(exp, "z_by_pos, mlp_out", "atp")
    listed = attribute_components(exp, ["z_by_pos", "mlp_out"], "atp")
    assert [z.component, mlp.component] == ["z_by_pos", "mlp_out"]
    _close(z.estimate, listed[0].estimate)
    _close(mlp.estimate, listed[1].estimate)


# -- over a dataset's length groups ---------------------------------------------------------------


@pytest.fixture(scope="module")
def ioi_length_groups(tiny_model):
    from actpatch.datasets import load_dataset
    from actpatch.patching.experiment import dataset_experiments

    groups = dataset_experiments(tiny_model, load_dataset("ioi:12"))
    assert len(groups) > 1  # several token lengths, or the test shows nothing
    return groups


@pytest.mark.parametrize("method", ["atp", "atp*"])
def test_a_dataset_is_each_groups_estimate_weighted_by_its_pairs(ioi_length_groups, method):
    from actpatch.patching.attribution import attribute_many

    whole = attribute_many(ioi_length_groups, "z", method)
    total = sum(g.n_pairs for g in ioi_length_groups)
    # the metric is a mean over pairs, so its gradient estimate is each group's, pair-weighted
    expected = sum(
        attribute(g, "z", method).estimate * (g.n_pairs / total) for g in ioi_length_groups
    )
    torch.testing.assert_close(whole.estimate, expected, rtol=1e-4, atol=1e-5)
    assert whole.n_pairs == total and "one left-padded batch" in (whole.note or "")


def test_a_datasets_exact_comparison_is_the_dataset_sweep(ioi_length_groups):
    from actpatch.patching.attribution import attribute_many
    from actpatch.patching.engine import sweep_many

    result = attribute_many(ioi_length_groups, "z", compare=True)
    swept = sweep_many(ioi_length_groups, "z")  # each group on its own, then pooled
    assert result.exact is not None
    torch.testing.assert_close(result.exact, swept.raw - swept.corrupt, rtol=1e-4, atol=1e-5)


def test_a_component_by_position_needs_one_length_group(ioi_length_groups):
    from actpatch.patching.attribution import attribute_many

    with pytest.raises(actpatch.InputError, match="other tokens at each position") as caught:
        attribute_many(ioi_length_groups, "z_by_pos")
    assert caught.value.field == "component"


def test_the_old_attribute_many_of_components_still_answers_with_a_warning(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    with pytest.warns(FutureWarning, match="attribute_components"):
        old = actpatch.attribute_many(exp, ["z", "mlp_out"])
    new = attribute_components(exp, ["z", "mlp_out"])
    for a, b in zip(old, new, strict=True):
        torch.testing.assert_close(a.estimate, b.estimate)
