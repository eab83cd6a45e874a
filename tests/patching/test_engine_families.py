"""Every family on the fast path against TransformerLens's own patching functions.

For each family's tiny random model (tests/tiny_families.py): every component, both
directions, must equal `transformer_lens.patching` run through its `TransformerBridge` (one
full forward pass per cell) to 1e-4 in the normalized logit difference, or, when the clean and
corrupted runs are less than one logit apart (normalization ill-conditioned), to 1e-4 in the
raw logit difference. resid_mid, which TransformerLens's bridge cannot patch as the residual
stream, is checked against a loop of bridge hook runs written here. And the engine's two paths,
fast and bridge, must agree on every component. GPT-2 is held to the same in test_engine.py.

The prompts are short (8 tokens, first difference at position 6) so that TransformerLens's
loop stays quick; the sliding windows of the tiny models (5 positions) still hide the first
positions from the last one.
"""

from __future__ import annotations

import pytest
import torch

import actpatch
from tests.patching.test_engine import TL_FUNCTIONS, _pick_answers, _tl_normalized_metric
from tests.tiny_families import FAMILIES

CLEAN, CORRUPT = "Mary met John, and John thanked", "Mary met John, and Mary thanked"
TOL = 1e-4
FAMILY_NAMES = [f for f in FAMILIES if f != "gpt2"]  # GPT-2: test_engine.py
COMPONENTS = [*TL_FUNCTIONS, "resid_mid"]


def _experiment(model, backend: str = "auto") -> actpatch.Experiment:
    return actpatch.Experiment(
        model, CLEAN, CORRUPT, *_pick_answers(model, CLEAN, CORRUPT), backend=backend
    )


def _resid_mid_reference(bridge, base, source, metric_fn, n_layers: int) -> torch.Tensor:
    """resid_mid patched as the residual stream: attn_out[p] = source resid_mid[p] - base
    resid_pre[p] makes the stream after attention equal the source's (see test_engine.py)."""
    with torch.no_grad():
        _, source_cache = bridge.run_with_cache(source)
        _, base_cache = bridge.run_with_cache(base)
        reference = torch.zeros(n_layers, base.shape[1])
        for layer in range(n_layers):
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
    return reference


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_every_component_matches_transformer_lens(family_model, family, direction):
    model = family_model(family)
    bridge = model.bridge()
    exp = _experiment(model)
    assert exp.backend == "fast"
    metric_fn, clean, corrupt = _tl_normalized_metric(bridge, exp, "logit_diff")
    gap = abs(clean - corrupt)
    if direction == "denoising":
        base, source = exp.corrupt_tokens, exp.clean_tokens
    else:
        base, source = exp.clean_tokens, exp.corrupt_tokens
    with torch.no_grad():
        _, source_cache = bridge.run_with_cache(source)
    parallel = bool(getattr(model.hf_model.config, "use_parallel_residual", False))
    for component in COMPONENTS:
        if component == "resid_mid" and parallel:
            with pytest.raises(actpatch.InputError, match="parallel"):
                actpatch.sweep(exp, component, "logit_diff", direction)
            continue
        ours = actpatch.sweep(exp, component, "logit_diff", direction)
        assert ours.backend == "fast"
        if component == "resid_mid":
            reference = _resid_mid_reference(bridge, base, source, metric_fn, model.n_layers)
        else:
            with torch.no_grad():
                reference = TL_FUNCTIONS[component](bridge, base, source_cache, metric_fn)
        assert ours.normalized.shape == reference.shape, component
        # The raw logit difference's error, within 1e-4 of max(1, gap): 1e-4 normalized when
        # the runs are at least a logit apart, 1e-4 raw when they are closer.
        error = float((ours.normalized - reference).abs().max()) * gap
        assert error < TOL * max(1.0, gap), (component, error)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_fast_and_bridge_paths_agree(family_model, family):
    model = family_model(family)
    fast, slow = _experiment(model), _experiment(model, backend="bridge")
    for component in COMPONENTS:
        if component not in ("resid_mid",) or fast.runner.spec.parallel is False:
            a = actpatch.sweep(fast, component, "logit_diff", "noising")
            b = actpatch.sweep(slow, component, "logit_diff", "noising")
            assert (a.backend, b.backend) == ("fast", "bridge")
            assert (a.raw - b.raw).abs().max() < TOL * max(1.0, abs(a.clean - a.corrupt))
    # The bridge path continued from the cached shared prefix (its self-check passed).
    assert slow.runner.reuses_prefix
    last_kv_head = fast.runner.n_kv_heads - 1
    one = actpatch.patch(fast, layer=1, head=last_kv_head, component="v")
    other = actpatch.patch(slow, layer=1, head=last_kv_head, component="v")
    assert one.metric_patched == pytest.approx(other.metric_patched, abs=1e-4)


# How far a half-precision sweep may be from the float32 one, in the normalized metric (the
# tiny models' weights are large, which makes rounding errors larger than in trained models).
HALF_TOL = {"bfloat16": 0.1, "float16": 0.02}


@pytest.mark.parametrize("dtype", list(HALF_TOL))
@pytest.mark.parametrize("family", ["llama", "gemma2", "gpt_neox_sequential"])
def test_half_precision_sweeps_stay_near_float32(family_model, tmp_path, family, dtype):
    from tests.tiny_families import save_family

    exact = family_model(family)
    half = actpatch.load_model(str(save_family(family, tmp_path / family)), dtype=dtype)
    answers = _pick_answers(exact, CLEAN, CORRUPT)
    for component in ("z", "resid_pre"):
        a = actpatch.sweep(actpatch.Experiment(exact, CLEAN, CORRUPT, *answers), component)
        b = actpatch.sweep(actpatch.Experiment(half, CLEAN, CORRUPT, *answers), component)
        assert b.backend == "fast"
        assert (a.normalized - b.normalized).abs().max() < HALF_TOL[dtype], component
