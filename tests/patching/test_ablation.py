"""Ablation sweeps against TransformerLens hook runs and a planted circuit's known answer.

Each ablation is redone with TransformerLens's bridge: a hook sets the activation to the
ablation value (0, the mean of TransformerLens's own cached activations, or another pair's),
one forward pass per cell, and the metric is read from its logits.
"""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.patching.ablation import ablate, ablate_many, derangement
from actpatch.planted import build_head_circuit
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

TOL = 1e-4


CLEAN3 = [IOI_CLEAN, IOI_CLEAN.replace("store", "park"), IOI_CLEAN.replace("drink", "book")]
CORRUPT3 = [c.replace(", John gave", ", Mary gave") for c in CLEAN3]


def _logit_diff(exp, logits: torch.Tensor) -> float:
    rows = torch.arange(logits.shape[0])
    last = logits[:, -1]
    return float((last[rows, exp.target_ids] - last[rows, exp.wrong_ids]).mean())


def _tl_head_sweep(bridge, exp, values: dict[int, torch.Tensor]) -> torch.Tensor:
    """The clean run's logit difference with each head's z set to values[layer][..., head]."""
    layers, heads = bridge.cfg.n_layers, bridge.cfg.n_heads
    out = torch.zeros(layers, heads)
    for layer in range(layers):
        for head in range(heads):

            def hook(act, hook, layer=layer, head=head):
                act = act.clone()
                act[:, :, head] = values[layer][:, :, head]
                return act

            with torch.no_grad():
                logits = bridge.run_with_hooks(
                    exp.clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_z", hook)]
                )
            out[layer, head] = _logit_diff(exp, logits)
    return out


def test_zero_ablation_matches_a_transformer_lens_hook_run(tiny_model, bridge):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    result = ablate(exp, "z", "zero", "logit_diff")
    with torch.no_grad():
        _, cache = bridge.run_with_cache(exp.clean_tokens)
    zeros = {i: torch.zeros_like(cache[f"blocks.{i}.attn.hook_z"]) for i in range(3)}
    reference = _tl_head_sweep(bridge, exp, zeros)
    assert (result.raw - reference).abs().max() < TOL
    assert result.direction == "noising" and result.ablation == "zero"
    assert result.clean == pytest.approx(_logit_diff(exp, bridge(exp.clean_tokens)), abs=TOL)


def test_mean_ablation_is_the_mean_over_the_prompts_by_position(tiny_model, bridge):
    exp = actpatch.Experiment(tiny_model, CLEAN3, CORRUPT3, " Mary", " John")
    result = ablate(exp, "z", "mean", "logit_diff")
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)
        _, corrupt = bridge.run_with_cache(exp.corrupt_tokens)
    means = {}
    for i in range(3):
        name = f"blocks.{i}.attn.hook_z"
        both = torch.cat([clean[name], corrupt[name]])  # 6 prompts, (6, pos, head, d_head)
        means[i] = both.mean(0, keepdim=True).expand_as(clean[name])
    reference = _tl_head_sweep(bridge, exp, means)
    assert (result.raw - reference).abs().max() < TOL
    assert "6 clean and corrupted prompts" in result.reference
    assert any(w.code == "small_reference" for w in result.warnings)


def test_resample_ablation_takes_another_pairs_activation(tiny_model, bridge):
    exp = actpatch.Experiment(tiny_model, CLEAN3, CORRUPT3, " Mary", " John")
    result = ablate(exp, "z", "resample", "logit_diff", seed=3)
    order = result.resample_from
    assert sorted(order) == [0, 1, 2] and all(i != j for i, j in enumerate(order))
    with torch.no_grad():
        _, clean = bridge.run_with_cache(exp.clean_tokens)
    drawn = {i: clean[f"blocks.{i}.attn.hook_z"][torch.tensor(order)] for i in range(3)}
    reference = _tl_head_sweep(bridge, exp, drawn)
    assert (result.raw - reference).abs().max() < TOL
    assert ablate(exp, "z", "resample", "logit_diff", seed=3).resample_from == order


def test_zero_ablation_by_position_matches_transformer_lens(tiny_model, bridge):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    result = ablate(exp, "resid_pre", "zero", "logit_diff")
    n_pos = exp.clean_tokens.shape[1]
    assert result.raw.shape == (3, n_pos) and not result.raw.isnan().any()
    for layer in range(3):
        for pos in (0, 5, n_pos - 1):

            def hook(act, hook, pos=pos):
                act = act.clone()
                act[:, pos] = 0
                return act

            with torch.no_grad():
                logits = bridge.run_with_hooks(
                    exp.clean_tokens, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)]
                )
            assert float(result.raw[layer, pos]) == pytest.approx(_logit_diff(exp, logits), abs=TOL)


def test_planted_head_by_hand(tmp_path):
    """Mean-ablating the planted head gives the mean of a Mary copy and a John copy: equal
    logits for both names, so the logit difference is 0, halfway between clean (+25) and
    corrupted (-25). Zero-ablating it writes no name: 0 too."""
    truth = build_head_circuit(tmp_path / "head")
    model = actpatch.load_model(str(truth.folder))
    exp = actpatch.Experiment(model, **truth.prompts())
    for method in ("zero", "mean"):
        result = ablate(exp, "z", method, "logit_diff")
        head = truth.heads[0]
        assert float(result.raw[head]) == pytest.approx(0.0, abs=1e-3)
        assert float(result.normalized[head]) == pytest.approx(0.5, abs=1e-4)
        others = result.normalized.clone()
        others[head] = 1.0
        # every other head changes nothing but a layer norm scale (by well under 1%)
        assert (others - 1).abs().max() < 0.01


def test_derangement_has_no_fixed_point_and_follows_its_seed():
    for n in (2, 3, 7):
        for seed in range(5):
            order = derangement(n, seed)
            assert sorted(order) == list(range(n))
            assert all(i != j for i, j in enumerate(order))
            assert derangement(n, seed) == order


def test_ablation_errors_teach(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    with pytest.raises(actpatch.InputError, match="another pair") as err:
        ablate(exp, "z", "resample")
    assert err.value.field == "ablate"
    with pytest.raises(actpatch.InputError, match="zero"):
        ablate(exp, "z", "knockout")


def test_ablate_many_averages_length_groups(tiny_model):
    short = actpatch.Experiment(
        tiny_model, "Mary met John, and John thanked", "Mary met John, and Mary thanked", " Mary"
    )
    long = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary")
    both = ablate_many([short, long], "z", "zero", "prob")
    one, two = ablate(short, "z", "zero", "prob"), ablate(long, "z", "zero", "prob")
    assert torch.allclose(both.raw, (one.raw + two.raw) / 2)
    assert both.n_pairs == 2 and len(both.length_groups) == 2
    with pytest.raises(actpatch.InputError, match="position"):
        ablate_many([short, long], "resid_pre", "zero")
    assert both.to_dict()["ablation"] == "zero"


def test_zero_ablation_of_grouped_values_on_llama(family_model):
    """Llama's tiny model shares each key/value head between two query heads: a `v` cell is a
    key/value head, and zeroing it matches a TransformerLens hook run."""
    model = family_model("llama")
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    result = ablate(exp, "v", "zero", "logit_diff")
    assert result.raw.shape == (model.n_layers, model.n_kv_heads)
    bridge = model.bridge()
    for layer in range(model.n_layers):
        for head in range(model.n_kv_heads):

            def hook(act, hook, head=head):
                act = act.clone()
                act[:, :, head] = 0
                return act

            with torch.no_grad():
                logits = bridge.run_with_hooks(
                    exp.clean_tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_v", hook)]
                )
            assert float(result.raw[layer, head]) == pytest.approx(
                _logit_diff(exp, logits), abs=TOL
            )
