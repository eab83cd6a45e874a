"""The engine against TransformerLens's own `transformer_lens.patching` functions.

Every component, both directions, every metric: our sweep must equal TransformerLens's loop
(one full forward pass per cell, through its TransformerBridge) to 1e-4 in the normalized
metric. Where TransformerLens has no function (resid_mid under the bridge, prompts of different
lengths) the reference is a naive loop of TransformerLens hook runs, written here.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from transformer_lens import patching as tlp

import actpatch
from actpatch.errors import InputError
from actpatch.patching.metrics import from_logits
from tests.conftest import IOI_CLEAN, IOI_CORRUPT, SPEC_FIELDS, SWEEP_FIELDS

TOL = 1e-4


def _pick_answers(model, clean: str, corrupt: str) -> tuple[str, str]:
    """A target the clean run ranks high and the corrupted run does not, and a wrong answer
    the other way round, so every metric differs between the runs. Each must be one token
    that survives a decode/encode round trip."""
    with torch.no_grad():
        c = model.hf_model(torch.tensor([model.to_tokens(clean)])).logits[0, -1].softmax(-1)
        k = model.hf_model(torch.tensor([model.to_tokens(corrupt)])).logits[0, -1].softmax(-1)

    def best(gain: torch.Tensor) -> str:
        for i in gain.argsort(descending=True)[:200].tolist():
            text = model.tokenizer.decode([i])
            if model.to_tokens(text, prepend_bos=False) == [i]:
                return text
        raise AssertionError("no round-trippable answer token")

    return best(c - k), best(k - c)


@pytest.fixture(scope="module")
def answers(tiny_model) -> tuple[str, str]:
    return _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)


def _tl_normalized_metric(
    bridge, exp: actpatch.Experiment, metric: str
) -> tuple[Callable[[torch.Tensor], torch.Tensor], float, float]:
    """TransformerLens-side metric: our metric definition on its logits, normalized by its runs."""
    target, wrong = exp.target_ids, exp.wrong_ids

    def raw(logits: torch.Tensor) -> torch.Tensor:
        return from_logits(metric, logits[:, -1], target, wrong).mean()

    with torch.no_grad():
        clean = float(raw(bridge(exp.clean_tokens)))
        corrupt = float(raw(bridge(exp.corrupt_tokens)))
    assert abs(clean - corrupt) > 1e-3, "test set-up: clean and corrupted must differ"
    return (lambda logits: (raw(logits) - corrupt) / (clean - corrupt)), clean, corrupt


def _generic(activation: str, setter, axes):
    def run(model, tokens, cache, metric):
        return tlp.generic_activation_patch(
            model,
            tokens,
            cache,
            metric,
            patch_setter=setter,
            activation_name=activation,
            index_axis_names=axes,
        )

    return run


TL_FUNCTIONS = {
    "resid_pre": tlp.get_act_patch_resid_pre,
    "resid_post": _generic("resid_post", tlp.layer_pos_patch_setter, ("layer", "pos")),
    "attn_out": tlp.get_act_patch_attn_out,
    "mlp_out": tlp.get_act_patch_mlp_out,
    "z": tlp.get_act_patch_attn_head_out_all_pos,
    "z_by_pos": tlp.get_act_patch_attn_head_out_by_pos,
    "q": tlp.get_act_patch_attn_head_q_all_pos,
    "k": tlp.get_act_patch_attn_head_k_all_pos,
    "v": tlp.get_act_patch_attn_head_v_all_pos,
    "q_by_pos": tlp.get_act_patch_attn_head_q_by_pos,
    "k_by_pos": tlp.get_act_patch_attn_head_k_by_pos,
    "v_by_pos": tlp.get_act_patch_attn_head_v_by_pos,
    "pattern": tlp.get_act_patch_attn_head_pattern_all_pos,
}


def _base_and_source(exp, direction: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The tokens of the run patched into, and of the run patched from."""
    if direction == "denoising":
        return exp.corrupt_tokens, exp.clean_tokens
    return exp.clean_tokens, exp.corrupt_tokens


def _tl_sweep(bridge, exp, component: str, metric: str, direction: str) -> torch.Tensor:
    metric_fn, _, _ = _tl_normalized_metric(bridge, exp, metric)
    base, source = _base_and_source(exp, direction)
    with torch.no_grad():
        _, source_cache = bridge.run_with_cache(source)
        return TL_FUNCTIONS[component](bridge, base, source_cache, metric_fn)


# Short prompts for the (layer, pos, head) components: TransformerLens runs one forward per cell.
SHORT_CLEAN, SHORT_CORRUPT = "Mary met John, and John thanked", "Mary met John, and Mary thanked"


# Every component, both directions. The (layer, pos, head) components run on a shorter prompt
# pair: TransformerLens runs one full forward pass per layer x position x head.
CASES = [(c, d) for c in TL_FUNCTIONS for d in ("denoising", "noising")]


@pytest.mark.parametrize(("component", "direction"), CASES)
def test_every_component_matches_transformer_lens(
    tiny_model, bridge, answers, component, direction
):
    if component.endswith("_by_pos"):
        short = _pick_answers(tiny_model, SHORT_CLEAN, SHORT_CORRUPT)
        exp = actpatch.Experiment(tiny_model, SHORT_CLEAN, SHORT_CORRUPT, *short)
    else:
        exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = actpatch.sweep(exp, component, "logit_diff", direction)
    reference = _tl_sweep(bridge, exp, component, "logit_diff", direction)
    assert ours.normalized.shape == reference.shape
    assert (ours.normalized - reference).abs().max() < TOL


@pytest.mark.parametrize("metric", ["prob", "logprob", "logit_diff"])
@pytest.mark.parametrize("component", ["z", "resid_pre"])
def test_every_metric_matches_transformer_lens(tiny_model, bridge, answers, component, metric):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = actpatch.sweep(exp, component, metric)
    reference = _tl_sweep(bridge, exp, component, metric, "denoising")
    assert (ours.normalized - reference).abs().max() < TOL


def test_rank_matches_transformer_lens_up_to_float_ties(tiny_model, bridge, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = actpatch.sweep(exp, "z", "rank")
    reference = _tl_sweep(bridge, exp, "z", "rank", "denoising")
    # ranks are integers; two logits within float noise of each other may swap places
    step = 1 / abs(ours.clean - ours.corrupt)
    assert (ours.normalized - reference).abs().max() <= step + TOL
    assert ours.raw.min() >= 1


def test_batch_of_pairs_matches_transformer_lens_batch_mean(tiny_model, bridge):
    clean = [IOI_CLEAN, IOI_CLEAN.replace("store", "park"), IOI_CLEAN.replace("drink", "book")]
    corrupt = [p.replace("store, John", "store, Mary") for p in clean]
    corrupt = [c.replace("park, John", "park, Mary") for c in corrupt]
    target, wrong = _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    exp = actpatch.Experiment(tiny_model, clean, corrupt, target, wrong)
    assert exp.n_pairs == 3
    for component in ("z", "resid_pre"):
        ours = actpatch.sweep(exp, component, "logit_diff")
        reference = _tl_sweep(bridge, exp, component, "logit_diff", "denoising")
        assert (ours.normalized - reference).abs().max() < TOL


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_resid_mid_matches_a_transformer_lens_hook_loop(tiny_model, bridge, answers, direction):
    """The bridge's hook_resid_mid feeds only the MLP (it is ln2's input); HookedTransformer's
    resid_mid is the residual stream itself. We patch the residual stream, and check it with
    TransformerLens hooks: setting attn_out[p] = source resid_mid[p] - base resid_pre[p] makes
    the residual stream after attention equal the source's resid_mid at p."""
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    ours = actpatch.sweep(exp, "resid_mid", "logit_diff", direction)
    metric_fn, _, _ = _tl_normalized_metric(bridge, exp, "logit_diff")
    base, source = _base_and_source(exp, direction)
    with torch.no_grad():
        _, source_cache = bridge.run_with_cache(source)
        _, base_cache = bridge.run_with_cache(base)
        reference = torch.zeros_like(ours.normalized)
        for layer in range(tiny_model.n_layers):
            for pos in range(base.shape[1]):
                wanted = (
                    source_cache[f"blocks.{layer}.hook_resid_mid"][:, pos]
                    - base_cache[f"blocks.{layer}.hook_resid_pre"][:, pos]
                )

                def hook(act, hook, pos=pos, wanted=wanted):
                    act = act.clone()
                    act[:, pos] = wanted
                    return act

                logits = bridge.run_with_hooks(
                    base, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", hook)]
                )
                reference[layer, pos] = metric_fn(logits)
    assert (ours.normalized - reference).abs().max() < TOL


PARIS, BERLIN = "Paris is the capital of", "Berlin is the capital of"


def test_different_lengths_align_prefix_and_suffix(tiny_model):
    exp = actpatch.Experiment(tiny_model, PARIS, BERLIN, " France", " Germany")
    # BOS | Paris | is the capital of   vs   BOS | Ber lin | is the capital of
    assert exp.alignment.pairs == ((0, 0), (2, 3), (3, 4), (4, 5), (5, 6))
    result = actpatch.sweep(exp, "resid_pre")
    assert result.tokens[1:3] == ["Ber", "lin"]
    assert result.unpatched_positions == [1, 2]
    assert result.raw[:, 1:3].isnan().all()
    assert not result.raw[:, 3:].isnan().any()


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("component", ["resid_pre", "z"])
def test_different_lengths_match_a_transformer_lens_hook_loop(
    tiny_model, bridge, component, direction
):
    exp = actpatch.Experiment(tiny_model, PARIS, BERLIN, " France", " Germany")
    ours = actpatch.sweep(exp, component, "logit_diff", direction)
    metric_fn, _, _ = _tl_normalized_metric(bridge, exp, "logit_diff")
    if direction == "denoising":
        base, source = exp.corrupt_tokens, exp.clean_tokens
        mapping = exp.alignment.corrupt_to_clean()
    else:
        base, source = exp.clean_tokens, exp.corrupt_tokens
        mapping = exp.alignment.clean_to_corrupt()
    reference = torch.full_like(ours.normalized, float("nan"))
    with torch.no_grad():
        _, source_cache = bridge.run_with_cache(source)
        for layer in range(tiny_model.n_layers):
            if component == "resid_pre":
                name = f"blocks.{layer}.hook_resid_pre"
                for pos, src_pos in mapping.items():

                    def hook(act, hook, pos=pos, src_pos=src_pos, name=name):
                        act = act.clone()
                        act[:, pos] = source_cache[name][:, src_pos]
                        return act

                    reference[layer, pos] = metric_fn(
                        bridge.run_with_hooks(base, fwd_hooks=[(name, hook)])
                    )
            else:
                name = f"blocks.{layer}.attn.hook_z"
                for head in range(tiny_model.n_heads):

                    def hook(act, hook, head=head, name=name):
                        act = act.clone()
                        for pos, src_pos in mapping.items():
                            act[:, pos, head] = source_cache[name][:, src_pos, head]
                        return act

                    reference[layer, head] = metric_fn(
                        bridge.run_with_hooks(base, fwd_hooks=[(name, hook)])
                    )
    both = ~reference.isnan()
    assert torch.equal(both, ~ours.normalized.isnan())
    assert (ours.normalized[both] - reference[both]).abs().max() < TOL


def test_single_patch_equals_the_sweep_cell(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    heads = actpatch.sweep(exp, "z", "logit_diff")
    probs = actpatch.sweep(exp, "z", "prob")
    one = actpatch.patch(exp, layer=1, head=2, metric="logit_diff")
    assert one.metric_patched == pytest.approx(float(heads.raw[1, 2]), abs=1e-5)
    assert one.patched_prob == pytest.approx(float(probs.raw[1, 2]), abs=1e-6)
    expected = 100 * (one.patched_prob - one.corrupt_prob) / (one.clean_prob - one.corrupt_prob)
    assert one.recovery_pct == pytest.approx(expected, rel=1e-6)
    spec = one.to_dict()
    assert list(spec)[: len(SPEC_FIELDS)] == SPEC_FIELDS
    assert len(spec["top_clean"]) == 10
    assert set(spec["top_clean"][0]) == {"token", "prob"}


def test_single_patch_probabilities_match_the_hf_model(tiny_model, answers):
    """Clean and corrupted probabilities and ranks come straight from Hugging Face's forward."""
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    one = actpatch.patch(exp, layer=0, head=0)
    target = int(exp.target_ids[0])
    with torch.no_grad():
        for tokens, prob, rank, top in (
            (exp.clean_tokens, one.clean_prob, one.clean_rank, one.top_clean),
            (exp.corrupt_tokens, one.corrupt_prob, one.corrupt_rank, one.top_corrupt),
        ):
            logits = tiny_model.hf_model(tokens).logits[0, -1]
            probs = logits.softmax(-1)
            assert prob == pytest.approx(float(probs[target]), abs=1e-6)
            assert rank == int((logits > logits[target]).sum()) + 1
            assert top[0].prob == pytest.approx(float(probs.max()), abs=1e-6)


def test_identical_prompts_say_normalization_is_undefined(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CLEAN, " Mary", " John")
    result = actpatch.sweep(exp, "z")
    assert result.normalized.isnan().all()
    assert result.note is not None and "undefined" in result.note
    assert result.to_dict()["normalized"][0][0] is None


def test_progress_is_reported_and_cancel_stops(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    seen: list[tuple[int, int]] = []
    actpatch.sweep(exp, "z", progress=lambda done, total: seen.append((done, total)))
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    with pytest.raises(actpatch.CancelledError):
        actpatch.sweep(exp, "z", should_stop=lambda: True)


def test_sweep_to_dict_has_what_the_cli_prints(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    d = actpatch.sweep(exp, "resid_pre").to_dict()
    for key in SWEEP_FIELDS:
        assert key in d
    assert len(d["raw"]) == tiny_model.n_layers and len(d["raw"][0]) == len(d["tokens"])
    assert d["model"] == tiny_model.name


def test_unknown_component_metric_direction_teach(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    with pytest.raises(actpatch.InputError, match="Choose one of") as err:
        actpatch.sweep(exp, "heads_everywhere")
    assert err.value.field == "component"
    with pytest.raises(actpatch.InputError, match="Choose one of"):
        actpatch.sweep(exp, "z", metric="accuracy")
    with pytest.raises(actpatch.InputError, match="denoising"):
        actpatch.sweep(exp, "z", direction="sideways")
    with pytest.raises(actpatch.InputError, match="out of range"):
        actpatch.patch(exp, layer=99, head=0)
    with pytest.raises(actpatch.InputError, match="out of range"):
        actpatch.patch(exp, layer=0, head=99)


def test_pattern_needs_equal_lengths(tiny_model):
    exp = actpatch.Experiment(tiny_model, PARIS, BERLIN, " France")
    with pytest.raises(actpatch.InputError, match="same token length"):
        actpatch.sweep(exp, "pattern")


# -- positions by role (issue 11) --------------------------------------------------------------

ROLE_TEMPLATES = (
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
)


@pytest.mark.parametrize(
    ("component", "direction", "n"), [("resid_pre", "denoising", 4), ("z_by_pos", "noising", 2)]
)
def test_role_sweep_across_templates_matches_a_transformer_lens_hook_loop(
    tiny_model, bridge, component, direction, n
):
    """Each pair patched at its own positions of each role, one TransformerLens hook run per
    pair and cell; the sweep's per-pair values and means must equal them."""
    from actpatch.datasets import ioi
    from actpatch.patching.experiment import dataset_experiments

    data = ioi(n, seed=1, templates=ROLE_TEMPLATES)
    experiments = dataset_experiments(tiny_model, data)
    assert len(experiments) == 2, "test set-up: two templates, two token lengths"
    ours = actpatch.sweep_many(experiments, component, "logit_diff", direction)
    assert ours.position_convention == "role"
    assert ours.position_labels == list(data.roles)
    assert ours.per_pair is not None and ours.per_pair.shape[0] == n
    reference = torch.full_like(ours.per_pair, float("nan"))
    with torch.no_grad():
        for p in range(n):
            clean = torch.tensor([tiny_model.to_tokens(data.clean[p])])
            corrupt = torch.tensor([tiny_model.to_tokens(data.corrupt[p])])
            base, source = (corrupt, clean) if direction == "denoising" else (clean, corrupt)
            target = tiny_model.to_tokens(data.target[p], prepend_bos=False)[0]
            wrong = tiny_model.to_tokens(data.wrong[p], prepend_bos=False)[0]
            _, cache = bridge.run_with_cache(source)
            roles = assert_single(data.positions)[p]
            for layer in range(tiny_model.n_layers):
                name = (
                    f"blocks.{layer}.hook_resid_pre"
                    if component == "resid_pre"
                    else f"blocks.{layer}.attn.hook_z"
                )
                heads = [None] if component == "resid_pre" else range(tiny_model.n_heads)
                for r, role in enumerate(data.roles):
                    for head in heads:

                        def hook(act, hook, where=roles[role], head=head, name=name, cache=cache):
                            act = act.clone()
                            if head is None:
                                act[:, where] = cache[name][:, where]
                            else:
                                act[:, where, head] = cache[name][:, where, head]
                            return act

                        logits = bridge.run_with_hooks(base, fwd_hooks=[(name, hook)])[0, -1]
                        index = (p, layer, r) if head is None else (p, layer, r, head)
                        reference[index] = logits[target] - logits[wrong]
    assert (ours.per_pair - reference).abs().max() < TOL
    assert (ours.raw - reference.mean(0)).abs().max() < TOL
    assert ours.ci is not None and ours.ci.low.shape == ours.raw.shape


def assert_single(positions):
    assert positions is not None
    return positions


def test_role_sweep_of_one_template_equals_the_index_sweep_at_each_role(tiny_model):
    from actpatch.datasets import ioi
    from actpatch.patching.experiment import dataset_experiments

    data = ioi(3, seed=2, same_length=True)
    (exp,) = dataset_experiments(tiny_model, data)
    by_index = actpatch.sweep(exp, "resid_pre", positions="index")
    by_role = actpatch.sweep(exp, "resid_pre", positions="role")
    assert by_index.position_convention == "index" and by_role.position_convention == "role"
    positions = assert_single(data.positions)
    # Single-token roles: ABBA and BABA pairs have IO and S1 at different positions.
    for p in range(3):
        for r, role in enumerate(data.roles):
            if len(positions[p][role]) == 1:
                pos = positions[p][role][0]
                assert (by_role.per_pair[p, :, r] - by_index.per_pair[p, :, pos]).abs().max() < TOL


def test_position_resolved_sweep_over_lengths_without_roles_teaches(tiny_model):
    from actpatch.datasets import PromptDataset
    from actpatch.patching.experiment import dataset_experiments

    data = PromptDataset(
        [IOI_CLEAN, "When Mary and John went to the big store, John gave a drink to"],
        [IOI_CORRUPT, "When Mary and John went to the big store, Mary gave a drink to"],
        [" Mary", " Mary"],
        [" John", " John"],
        name="two",
    )
    experiments = dataset_experiments(tiny_model, data)
    with pytest.raises(actpatch.InputError, match="name no roles") as err:
        actpatch.sweep_many(experiments, "resid_pre")
    assert err.value.field == "positions"
    with pytest.raises(actpatch.InputError, match="different token lengths"):
        actpatch.sweep_many(experiments, "resid_pre", positions="index")


def test_partial_snapshots_come_while_the_sweep_runs_and_end_equal(tiny_model, answers):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    snapshots = []
    final = actpatch.sweep(exp, "z", on_partial=snapshots.append)
    assert len(snapshots) >= 2
    done = [int((~s.raw.isnan()).sum()) for s in snapshots]
    assert done == sorted(done) and 0 < done[0] < final.raw.numel()
    for s in snapshots:
        assert not s.complete and s.ci is None
        have = ~s.raw.isnan()
        assert torch.equal(s.raw[have], final.raw[have])
    assert final.complete and final.to_dict()["complete"] is True


# -- mixed lengths in one padded batch (issue 11) ----------------------------------------------

# Three templates, three token lengths; the first two recompute the same number of positions
# (they differ before the names), the third more.
PAD_TEMPLATES = (
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "Then, when {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
)


def _padded_and_grouped(model, component, direction="denoising", templates=PAD_TEMPLATES, n=6):
    from actpatch.datasets import ioi
    from actpatch.patching.experiment import dataset_experiments

    data = ioi(n, seed=1, templates=templates)
    runs = {}
    for batching in ("padded", "grouped"):
        experiments = dataset_experiments(model, data)
        runs[batching] = actpatch.sweep_many(
            experiments, component, "logit_diff", direction, batching=batching
        )
    return runs["padded"], runs["grouped"], len(experiments)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
@pytest.mark.parametrize(
    ("component", "direction"),
    [
        ("z", "denoising"),
        ("resid_pre", "noising"),
        ("z_by_pos", "denoising"),
        ("pattern", "noising"),
    ],
)
def test_padded_batch_equals_the_grouped_sweep(family_model, family, component, direction):
    """One left-padded batch of every length group gives the per-group sweeps' numbers: raw,
    normalized, every pair's values and the bootstrap interval (the grouped path is itself held
    to TransformerLens above). GPT-2's learned positions, Llama's rotary angles, Gemma 2's
    sliding window (5 tokens, shorter than the prompts) and soft-caps."""
    model = family_model(family)
    padded, grouped, n_groups = _padded_and_grouped(model, component, direction)
    assert n_groups == 3
    assert padded.batching == "padded" and grouped.batching == "grouped"
    assert "3 length groups" in (padded.batching_note or "")
    assert padded.length_groups == grouped.length_groups and len(padded.length_groups) == 3
    assert padded.position_convention == grouped.position_convention
    assert padded.tokens == grouped.tokens and padded.alignment == grouped.alignment
    assert padded.per_pair is not None and grouped.per_pair is not None
    assert (padded.per_pair - grouped.per_pair).abs().max() < TOL
    assert (padded.raw - grouped.raw).abs().max() < TOL
    assert (padded.normalized - grouped.normalized).abs().max() < TOL
    assert abs(padded.clean - grouped.clean) < TOL and abs(padded.corrupt - grouped.corrupt) < TOL
    assert padded.ci is not None and grouped.ci is not None
    # The interval is of normalized values: ratios over resampled clean - corrupted gaps, some
    # small, which scale float rounding up (the same resamples: the pairs are in one order).
    for ours, theirs in ((padded.ci.low, grouped.ci.low), (padded.ci.high, grouped.ci.high)):
        assert torch.allclose(ours, theirs, rtol=1e-3, atol=1e-3, equal_nan=True)
    # the patches must move the metric (far beyond float rounding), else equal numbers would
    # prove little
    base = grouped.corrupt_per_pair if direction == "denoising" else grouped.clean_per_pair
    assert base is not None
    moved = grouped.per_pair - base.reshape(-1, *[1] * (grouped.per_pair.dim() - 1))
    assert moved.nan_to_num().abs().max() > 1e-2


def test_auto_pads_the_groups_that_recompute_as_many_positions(tiny_model):
    """The first two templates recompute the same positions: auto pads them into one batch and
    runs the third alone; the numbers are the grouped ones."""
    from actpatch.datasets import ioi
    from actpatch.patching.experiment import dataset_experiments

    data = ioi(6, seed=1, templates=PAD_TEMPLATES)
    experiments = dataset_experiments(tiny_model, data)
    snapshots: list = []
    auto = actpatch.sweep_many(experiments, "z", "logit_diff", on_partial=snapshots.append)
    grouped = actpatch.sweep_many(experiments, "z", "logit_diff", batching="grouped")
    assert auto.batching == "padded"
    # Snapshots while it runs describe the first group's unpadded prompts, as the result does.
    assert snapshots and all(not s.complete for s in snapshots)
    assert all(s.tokens == grouped.tokens and s.batching == "padded" for s in snapshots)
    assert auto.batching_note is not None and "2 left-padded batches" in auto.batching_note
    assert auto.to_dict()["batching"] == "padded"
    assert auto.per_pair is not None and grouped.per_pair is not None
    assert (auto.per_pair - grouped.per_pair).abs().max() < TOL
    # Two groups that recompute different numbers of positions stay grouped, saying why.
    two = ioi(4, seed=1, templates=PAD_TEMPLATES[1:])
    two_groups = dataset_experiments(tiny_model, two)
    assert len(two_groups) == 2
    kept = actpatch.sweep_many(two_groups, "z", "logit_diff")
    assert kept.batching == "grouped" and "recompute" in (kept.batching_note or "")


def test_the_bridge_keeps_one_sweep_per_length_group(tiny_model):
    from actpatch.datasets import ioi
    from actpatch.patching.experiment import dataset_experiments

    data = ioi(4, seed=1, templates=PAD_TEMPLATES[:2])
    experiments = dataset_experiments(tiny_model, data, backend="bridge")
    assert len(experiments) == 2
    result = actpatch.sweep_many(experiments, "z", "logit_diff")
    assert result.batching == "grouped" and "bridge" in (result.batching_note or "")
    with pytest.raises(actpatch.InputError, match="cannot be padded") as err:
        actpatch.sweep_many(experiments, "z", "logit_diff", batching="padded")
    assert err.value.field == "batching"
    with pytest.raises(actpatch.InputError, match="Unknown batching"):
        actpatch.sweep_many(experiments, "z", "logit_diff", batching="ragged")


def test_single_patch_teaches_its_index_and_top_k(tiny_model, answers):
    """A head given to a component without heads is refused, not silently dropped; top_k past
    the vocabulary and a layer given as text are InputErrors (were torch's RuntimeError and a
    TypeError); a numpy integer (a DataFrame's cell) is a whole number like any other."""
    np = pytest.importorskip("numpy")
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, *answers)
    with pytest.raises(InputError, match="indexed by layer, pos, not by head"):
        actpatch.patch(exp, layer=0, head=3, pos=10, component="resid_pre")
    with pytest.raises(InputError, match="indexed by layer, head, not by pos"):
        actpatch.patch(exp, layer=0, head=1, pos=10)
    vocab = tiny_model.hf_model.config.vocab_size
    with pytest.raises(InputError, match=f"top_k {vocab + 1} is out of range: list 0 to {vocab}"):
        actpatch.patch(exp, layer=0, head=1, top_k=vocab + 1)
    with pytest.raises(InputError, match="layer '1' is a str: give a whole number, 0 to 2"):
        actpatch.patch(exp, layer="1", head=1)
    by_numpy = actpatch.patch(exp, layer=np.int64(1), head=np.int64(2), top_k=np.int64(3))
    by_int = actpatch.patch(exp, layer=1, head=2, top_k=3)
    assert by_numpy.index == {"layer": 1, "head": 2} and len(by_numpy.top_patched) == 3
    assert by_numpy.patched_prob == by_int.patched_prob
