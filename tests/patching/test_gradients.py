"""The gradient pass against independent computations.

- Every hooked activation's gradient equals a central finite difference of the metric, computed
  by Hugging Face's own GPT-2 forward on a float64 copy of the tiny model.
- On a cold experiment the gradient pass is also the cached forward of both runs: the runs it
  keeps equal the plain cached forward's, and its gradients those of the pass from a warm cache.
- A runner first used inside inference mode (a cached run) still serves gradients.
"""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.patching import gradients
from actpatch.patching.attribution import attribute
from actpatch.patching.gradients import gradient_run
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import SHORT_CLEAN, SHORT_CORRUPT, _pick_answers


def _metric_with(exp, hook_name: str, layer: int, add: torch.Tensor, metric: str) -> float:
    """The metric of the corrupted run with `add` added to one activation, by Hugging Face's own
    GPT-2 forward (float64 throughout) with module hooks at the same points."""
    hf = exp.model.hf_model
    block = hf.transformer.h[layer]
    d = hf.config.n_embd
    flat = add.reshape(*add.shape[:2], -1) if add.dim() > 2 else add

    def add_input(module, args):
        return (args[0] + flat, *args[1:])

    def add_output(module, args, out):
        if isinstance(out, tuple):
            return (out[0] + flat, *out[1:])
        return out + flat

    def add_qkv(module, args, out):
        which = {"q": 0, "k": 1, "v": 2}[hook_name]
        out = out.clone()
        out[..., which * d : (which + 1) * d] += flat
        return out

    if hook_name == "resid_pre":
        handle = block.register_forward_pre_hook(add_input)
    elif hook_name in ("attn_out", "resid_mid"):  # resid_mid = resid_pre + attn_out
        handle = block.attn.register_forward_hook(add_output)
    elif hook_name == "mlp_out":
        handle = block.mlp.register_forward_hook(add_output)
    elif hook_name == "z":  # the heads' outputs, concatenated, are c_proj's input
        handle = block.attn.c_proj.register_forward_pre_hook(add_input)
    else:
        handle = block.attn.c_attn.register_forward_hook(add_qkv)
    try:
        with torch.no_grad():
            logits = hf(exp.corrupt_tokens).logits[:, -1]
    finally:
        handle.remove()
    rows = torch.arange(logits.shape[0])
    if metric == "logit_diff":
        return float((logits[rows, exp.target_ids] - logits[rows, exp.wrong_ids]).mean())
    return float(logits.log_softmax(-1)[0, exp.target_ids[0]])


def test_gradient_run_gives_every_hook_and_its_gradient(exp64):
    grad = gradient_run(exp64, "corrupt", "logit_diff")
    start = grad.start
    assert start == exp64.first_diff
    for (name, layer), act in grad.activations.items():
        assert grad.gradients[(name, layer)].shape == act.shape
    # the gradient at resid_pre of layer 1, position `start`, against a finite difference
    key = ("resid_pre", 1)
    direction = grad.gradients[key][:, :1] / grad.gradients[key][:, :1].norm()  # steepest
    add = torch.zeros_like(exp64.run("corrupt").cache[key])
    add[:, start : start + 1] = direction

    def central(eps: float) -> float:
        up = _metric_with(exp64, "resid_pre", 1, eps * add, "logit_diff")
        down = _metric_with(exp64, "resid_pre", 1, -eps * add, "logit_diff")
        return (up - down) / (2 * eps)

    analytic = float((grad.gradients[key][:, :1] * direction).sum())
    assert analytic == pytest.approx(central(1e-5), rel=1e-5)
    assert float(grad.values[0]) == pytest.approx(
        _metric_with(exp64, "resid_pre", 0, torch.zeros(()), "logit_diff"), rel=1e-6
    )


def _fresh(model):
    answers = _pick_answers(model, IOI_CLEAN, IOI_CORRUPT)
    return actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, *answers)


@pytest.mark.parametrize("which", ["corrupt", "clean"])
def test_the_gradient_pass_caches_what_a_plain_forward_caches(tiny_model, which, monkeypatch):
    # A cold experiment's gradient pass is also its cached forward of both runs: the runs it
    # keeps must be the plain cached runs (Experiment.run's own inference forward), so that
    # exact sweeps after it are unchanged; and its gradients must be those of the run that
    # starts from a warm cache at the first differing position.
    names = ("z", "mlp_out", "resid_pre", "pattern", "q")
    # share the pass whatever its size (when it pays is SHARED_ROWS's business, not this test's)
    monkeypatch.setattr(gradients, "SHARED_ROWS", 10**9)
    cold = _fresh(tiny_model)
    shared = gradient_run(cold, which, "logit_diff", names, drop_layers=[0])
    # (the runs came from the gradient pass: Experiment.run's own are inference tensors)
    assert not cold.run("clean").final.is_inference()
    plain = _fresh(tiny_model)
    for run in ("clean", "corrupt"):
        ours, theirs = cold.run(run), plain.run(run, names)
        assert torch.equal(ours.tokens, theirs.tokens)
        assert set(ours.cache) >= set(theirs.cache)
        torch.testing.assert_close(ours.final, theirs.final, rtol=1e-5, atol=1e-6)
        for key, value in theirs.cache.items():
            torch.testing.assert_close(ours.cache[key], value, rtol=1e-5, atol=1e-6)
    warm = gradient_run(plain, which, "logit_diff", names, drop_layers=[0])
    assert shared.start == warm.start
    torch.testing.assert_close(shared.values, warm.values, rtol=1e-5, atol=1e-6)
    # (the warm run recomputes positions start.. alone: float32 sums in another order)
    close = {"rtol": 1e-4, "atol": 1e-5}
    for key, value in warm.activations.items():
        torch.testing.assert_close(shared.activations[key], value, **close)
        torch.testing.assert_close(shared.gradients[key], warm.gradients[key], **close)
        torch.testing.assert_close(shared.dropped[0][key], warm.dropped[0][key], **close)
    # only activations took gradients: no weight of the model did
    assert all(p.grad is None for p in tiny_model.hf_model.parameters())


def test_a_runner_first_used_by_a_cached_run_serves_gradients(tmp_path):
    """A cached run (inference mode) is often the first to use a model: what the runner builds
    then (rotary tables) must still serve the gradient pass. The attribution of an experiment
    whose runs were cached first equals that of a fresh experiment on a fresh load."""
    from tests.tiny_families import save_family

    folder = save_family("llama", tmp_path / "llama", None)
    scores = []
    for cached_first in (True, False):  # two loads of the same weights: two runners
        model = actpatch.load_model(str(folder))
        exp = actpatch.Experiment(
            model, SHORT_CLEAN, SHORT_CORRUPT, *_pick_answers(model, SHORT_CLEAN, SHORT_CORRUPT)
        )
        if cached_first:
            exp.run("clean")
            exp.run("corrupt")
        scores.append(attribute(exp, "k_by_pos", "atp*").estimate)
    assert torch.allclose(scores[0], scores[1], atol=1e-5)
