"""Edge attribution (EAP, EAP-IG) against TransformerLens 4.3 and hand-built circuits.

References: TransformerLens's edge-level `attribution_patch`
(`EdgeAttributionConfig(granularity="edge")`, per position: we sum its scores over positions);
for EAP-IG, TransformerLens's own gradient capture (`cache_activation_and_gradient`) run at
each interpolation point of the input embeddings, averaged; the planted two-hop circuit, whose
key edge is known by construction; and exact edge patching, which EAP estimates to first order.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from transformer_lens.tools.analysis import attribution_patching as tla

import actpatch
from actpatch.patching.edges import edge_attribution
from actpatch.patching.metrics import from_logits
from actpatch.planted import build_two_hop_circuit
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import _pick_answers

REL = 1e-4


@contextmanager
def differentiable(bridge) -> Iterator[None]:
    """Gradients on, and the bridge's weights taking them, while TransformerLens computes its
    reference (actpatch loads models with requires_grad off); restored after."""
    params = list(bridge.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)


@pytest.fixture(scope="module")
def answers(tiny_model):
    return _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)


def _name(node: tla.Node) -> str:
    """TransformerLens's node as our (position-free) node name."""
    if node.kind == "embed":
        return "input"
    if node.kind == "logits":
        return "logits"
    if node.kind in ("mlp_out", "mlp_in"):
        return f"m{node.layer}"
    if node.kind == "attn_head_out":
        return f"a{node.layer}.h{node.head}"
    return f"a{node.layer}.h{node.head}<{node.kind[0]}>"


def _tl_edges(bridge: Any, exp: actpatch.Experiment, noising: bool = False) -> Any:
    """TransformerLens's edge-level attribution of the experiment (the reference), with the
    bridge's weights taking gradients meanwhile; `noising` swaps the runs' roles (its gradient
    is then taken at the clean run)."""
    clean, corrupt = exp.clean_tokens, exp.corrupt_tokens
    if noising:
        clean, corrupt = corrupt, clean
    with differentiable(bridge):
        return tla.attribution_patch(
            bridge, clean, corrupt, _metric(exp), tla.EdgeAttributionConfig(granularity="edge")
        )


def _summed(edge_scores: dict) -> dict[str, float]:
    """TransformerLens's per-position edge scores, summed over positions, by our edge names."""
    out: dict[str, float] = {}
    for (w, r), score in edge_scores.items():
        key = f"{_name(w)}->{_name(r)}"
        out[key] = out.get(key, 0.0) + score
    return out


def _metric(exp):
    def metric(logits):
        return from_logits(
            "logit_diff", logits[:, -1], exp.target_ids[:1], exp.wrong_ids[:1]
        ).mean()

    return metric


def _assert_scores_close(ours: dict[str, float], reference: dict[str, float]) -> None:
    assert set(ours) == set(reference)
    scale = max(abs(v) for v in reference.values())
    worst = max(abs(ours[k] - reference[k]) for k in reference)
    assert worst <= REL * scale, f"max |ours - reference| = {worst:.3g}, scale {scale:.3g}"


@pytest.mark.parametrize("n_pairs", [1, 2])
def test_eap_equals_transformer_lens_edge_attribution(tiny_model, bridge, answers, n_pairs):
    clean = [IOI_CLEAN, IOI_CLEAN.replace("store", "park")][:n_pairs]
    corrupt = [IOI_CORRUPT, IOI_CORRUPT.replace("store", "park")][:n_pairs]
    exp = actpatch.Experiment(tiny_model, clean, corrupt, *answers)
    ours = edge_attribution(exp, "eap")
    reference = _tl_edges(bridge, exp)
    assert len(ours.edges) == 3 * 4 * (1 + 6 + 11) + (1 + 4) + (6 + 4) + (11 + 4) + 16
    _assert_scores_close({e.name: e.score for e in ours.edges}, _summed(reference.edge_scores))
    assert ours.steps == 1 and ours.method == "eap"


def test_eap_by_position_sums_to_the_score_and_matches_per_position(tiny_model, bridge, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = edge_attribution(exp, "eap", by_pos=True)
    reference = _tl_edges(bridge, exp)
    per_pos = {
        (f"{_name(w)}->{_name(r)}", w.position): s for (w, r), s in reference.edge_scores.items()
    }
    scale = max(abs(s) for s in per_pos.values())
    for edge in ours.edges:
        assert edge.by_pos is not None and len(edge.by_pos) == len(ours.tokens)
        assert sum(edge.by_pos) == pytest.approx(edge.score, abs=REL * scale)
        for pos, value in enumerate(edge.by_pos):
            assert value == pytest.approx(per_pos[(edge.name, pos)], abs=REL * scale)


def test_eap_ig_with_one_step_is_eap(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    eap = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    one = {e.name: e.score for e in edge_attribution(exp, "eap-ig", steps=1).edges}
    _assert_scores_close(one, eap)


def _tl_integrated(bridge, exp, points) -> dict:
    """Edge scores from reader gradients averaged over runs of the corrupted prompt, by
    TransformerLens: `points(clean_out, corrupt_out)` lists (hook name, value) pairs, one a
    run, the hook's output set to that value (a leaf of its own: nothing upstream of it gets a
    gradient); each run's readers' gradients come from TL's own cache_activation_and_gradient,
    and TL's own _edge_effects scores every edge with their mean."""
    names = tla._edge_hook_names(exp.model.n_layers)
    metric = _metric(exp)
    outputs = ["hook_embed", "blocks.0.hook_resid_pre"]
    for layer in range(exp.model.n_layers):
        outputs += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
    with tla._edge_hook_flags(bridge), differentiable(bridge):
        clean_cache = tla.cache_activation_and_gradient(
            bridge, exp.clean_tokens, metric, names, compute_gradient=False
        )
        corrupt_cache = tla.cache_activation_and_gradient(
            bridge, exp.corrupt_tokens, metric, names, compute_gradient=False
        )
        with torch.no_grad():
            _, clean_out = bridge.run_with_cache(exp.clean_tokens, names_filter=outputs)
            _, corrupt_out = bridge.run_with_cache(exp.corrupt_tokens, names_filter=outputs)
        runs = points(clean_out, corrupt_out)
        mean_grads: dict[str, torch.Tensor] = {}
        for hook_name, point in runs:

            def setting(act, hook, point=point):
                return point.clone().requires_grad_(True)

            with bridge.hooks(fwd_hooks=[(hook_name, setting)]):
                cache = tla.cache_activation_and_gradient(bridge, exp.corrupt_tokens, metric, names)
            for name, grad in cache.gradients.items():
                if grad is not None:
                    mean_grads[name] = mean_grads.get(name, 0) + grad / len(runs)
        averaged = tla.GradientCache(corrupt_cache.activations, mean_grads, corrupt_cache.metric)
        edges = tla.enumerate_edges(bridge, corrupt_cache)
        return _summed(tla._edge_effects(clean_cache, averaged, edges))


def _along(clean, corrupt, name: str, steps: int) -> list:
    """(name, corrupted + k/steps * (clean - corrupted)) for k = 0 .. steps-1."""
    return [(name, corrupt[name] + k / steps * (clean[name] - corrupt[name])) for k in range(steps)]


def test_eap_ig_equals_transformer_lens_gradients_along_the_path(tiny_model, bridge, answers):
    """EAP-IG by hand with TransformerLens: at each of `steps` points, run the corrupted prompt
    with its embeddings moved k/steps of the way to the clean ones (hook_embed) and capture the
    readers' gradients with TL's own cache_activation_and_gradient; average them; score each
    edge with TL's own _edge_effects."""
    steps = 3
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = edge_attribution(exp, "eap-ig", steps=steps)
    reference = _tl_integrated(
        bridge, exp, lambda clean, corrupt: _along(clean, corrupt, "hook_embed", steps)
    )
    _assert_scores_close({e.name: e.score for e in ours.edges}, reference)
    eap = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    assert max(abs(eap[e.name] - e.score) for e in ours.edges) > 1e-3  # IG is not EAP here


def test_eap_ig_over_activations_equals_transformer_lens_by_hand(tiny_model, bridge, answers):
    """MIB's EAP-IG-activations by hand with TransformerLens: for each writer group (the
    embeddings, one layer's attention through its hook_z, one layer's MLP through hook_mlp_out)
    and each point k/steps, run the corrupted prompt with that group's output set to
    corrupted + k/steps * (clean - corrupted); average the readers' gradients over every run."""
    steps = 2
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = edge_attribution(exp, "eap-ig-act", steps=steps)
    groups = ["blocks.0.hook_resid_pre"]
    for layer in range(tiny_model.n_layers):
        groups += [f"blocks.{layer}.attn.hook_z", f"blocks.{layer}.hook_mlp_out"]
    reference = _tl_integrated(
        bridge,
        exp,
        lambda clean, corrupt: [p for g in groups for p in _along(clean, corrupt, g, steps)],
    )
    assert ours.method == "eap-ig-act" and ours.steps == steps
    _assert_scores_close({e.name: e.score for e in ours.edges}, reference)
    inputs = {e.name: e.score for e in edge_attribution(exp, "eap-ig", steps=steps).edges}
    assert max(abs(inputs[e.name] - e.score) for e in ours.edges) > 1e-3  # another method


def test_noising_scores_are_taken_at_the_clean_run(tiny_model, bridge, answers):
    """Noising swaps the runs' roles: TL's attribution with clean and corrupted swapped."""
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = edge_attribution(exp, "eap", direction="noising")
    reference = _tl_edges(bridge, exp, noising=True)
    _assert_scores_close({e.name: e.score for e in ours.edges}, _summed(reference.edge_scores))


def test_verify_patches_the_top_edges_exactly(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    result = edge_attribution(exp, "eap", verify=3)
    assert [c.edge for c in result.verified] == [e.name for e in result.edges[:3]]
    # the exact effects are those of verify_edges, and the scores estimate them
    from actpatch.patching.circuit import verify_edges

    again = verify_edges(exp, [e.name for e in result.edges[:3]]).edges
    for a, b in zip(result.verified, again, strict=True):
        assert a.effect == pytest.approx(b.effect, abs=1e-6)


def test_json_has_the_contract_fields(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    d = edge_attribution(exp, "eap-ig", steps=2).to_dict()
    for key in ("edges", "clean", "corrupt", "metric", "model", "seconds"):
        assert key in d
    assert set(d["edges"][0]) == {"source", "target", "score"}
    scores = [abs(e["score"]) for e in d["edges"]]
    assert scores == sorted(scores, reverse=True)


def test_bad_options_teach(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    with pytest.raises(actpatch.InputError, match="Unknown method"):
        edge_attribution(exp, "acdc")
    with pytest.raises(actpatch.InputError, match="no gradient"):
        edge_attribution(exp, "eap", metric="rank")
    with pytest.raises(actpatch.InputError, match="steps"):
        edge_attribution(exp, "eap-ig", steps=0)


@pytest.fixture(scope="module")
def two_hop(tmp_path_factory):
    truth = build_two_hop_circuit(tmp_path_factory.mktemp("two-hop"))
    model = actpatch.load_model(str(truth.folder))
    return truth, actpatch.Experiment(model, **truth.prompts())


@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_planted_two_hop_key_edge_ranks_first(two_hop, method):
    """The A -> B<v> edge carries the whole effect and every other edge on the path half of it
    (docs/planted-circuits.md): attribution must rank it first, well clear of the rest, and its
    exact patch restores the whole clean run."""
    truth, exp = two_hop
    result = edge_attribution(exp, method, verify=1)
    first, second = result.edges[0], result.edges[1]
    assert first.name == truth.key_edge
    assert first.score > 1.5 * abs(second.score)
    gap = truth.clean_logit_diff - truth.corrupt_logit_diff
    assert result.verified[0].effect == pytest.approx(gap, abs=1e-2)
    # the linear estimate is close to the exact effect (layer norm bends it a little)
    assert first.score == pytest.approx(gap, rel=0.15)


def test_several_length_groups_average_transformer_lens_over_pairs(tiny_model, bridge, answers):
    """Each group scored by TransformerLens's attribution_patch; the whole is the average of
    the groups' scores weighted by their pairs."""
    from actpatch.patching.edges import edge_attribution_many

    short = ("Mary met John, and John thanked", "Mary met John, and Mary thanked")
    groups = [
        actpatch.Experiment(tiny_model, [IOI_CLEAN] * 2, [IOI_CORRUPT] * 2, *answers),
        actpatch.Experiment(tiny_model, *short, *answers),
    ]
    ours = edge_attribution_many(groups, "eap", verify=2)
    expected: dict[str, float] = {}
    for exp, weight in zip(groups, (2 / 3, 1 / 3), strict=True):
        reference = _tl_edges(bridge, exp)
        for name, score in _summed(reference.edge_scores).items():
            expected[name] = expected.get(name, 0.0) + weight * score
    _assert_scores_close({e.name: e.score for e in ours.edges}, expected)
    assert ours.n_pairs == 3 and len(ours.verified) == 2


def test_eap_on_a_rotary_layer_norm_family_equals_transformer_lens(tmp_path):
    """A sequential GPT-NeoX (rotary positions, biased layer norms, separate q/k/v weights):
    the per-head parts read arch's weights and norms, not GPT-2's."""
    from tests.tiny_families import load_family

    model = load_family("gpt_neox_sequential", tmp_path)
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, *_pick_answers(model, IOI_CLEAN,
                              IOI_CORRUPT))  # fmt: skip
    ours = edge_attribution(exp, "eap")
    bridge = model.bridge()
    reference = _tl_edges(bridge, exp)
    _assert_scores_close(dict(zip(ours.names, ours.scores, strict=True)),
                         _summed(reference.edge_scores))  # fmt: skip


@pytest.mark.parametrize("verify", [-1, 2.5, "3"])
def test_verify_is_a_count_of_edges_not_a_slice(tiny_model, answers, verify):
    # names[:-1] would have patched every edge but the last, one run each
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    with pytest.raises(actpatch.InputError, match="0 \\(none\\) or more") as caught:
        edge_attribution(exp, "eap", verify=verify)
    assert caught.value.field == "verify"
