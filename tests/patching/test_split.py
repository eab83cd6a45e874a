"""The per-head parts of a block against the runner's own forward and autograd."""

from __future__ import annotations

import pytest
import torch

from actpatch.patching.runners import runner
from actpatch.patching.split import Parts
from tests.conftest import IOI_CLEAN


@pytest.fixture(scope="module")
def setup(tiny_model):
    fast = runner(tiny_model, "fast")
    tokens = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)])
    names = ("resid_pre", "q", "k", "v", "z", "attn_out", "resid_mid", "mlp_out")
    with torch.no_grad():
        _, cache = fast.run_with_cache(tokens, names)
    return fast, Parts(fast), cache


def test_each_heads_qkv_from_the_shared_input_equals_the_forward(setup):
    fast, parts, cache = setup
    for layer in range(fast.n_layers):
        x = cache[("resid_pre", layer)][:, :, None, :].expand(-1, -1, fast.n_heads, -1)
        q, k, v = parts.head_qkv(layer, x, x, x)
        for name, ours in (("q", q), ("k", k), ("v", v)):
            torch.testing.assert_close(ours, cache[(name, layer)], atol=1e-5, rtol=1e-5)


def test_head_outputs_sum_to_the_attention_output(setup):
    fast, parts, cache = setup
    for layer in range(fast.n_layers):
        heads = parts.head_out(layer, cache[("z", layer)])
        total = heads.sum(dim=2) + fast.weights.layers[layer].b_O
        torch.testing.assert_close(total, cache[("attn_out", layer)], atol=1e-5, rtol=1e-5)


def test_mlp_of_its_input_equals_the_forward(setup):
    fast, parts, cache = setup
    for layer in range(fast.n_layers):
        ours = parts.mlp(layer, cache[("resid_mid", layer)])
        torch.testing.assert_close(ours, cache[("mlp_out", layer)], atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def rms_setup():
    """A tiny Llama whose heads have their own keys and values (no grouped-query attention):
    an RMS-norm model edge methods accept."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from actpatch.models import LoadedModel
    from actpatch.tokenizer import gpt2_tokenizer
    from tests.tiny_families import COMMON

    torch.manual_seed(0)
    hf = LlamaForCausalLM(LlamaConfig(**{**COMMON, "num_key_value_heads": 4})).eval()
    with torch.no_grad():
        for name, param in hf.named_parameters():
            if "norm" in name:
                param.add_(0.3 * torch.randn_like(param))
    hf.requires_grad_(False)
    model = LoadedModel("tiny llama", "random weights", hf, gpt2_tokenizer())
    fast = runner(model, "fast")
    tokens = torch.tensor([model.to_tokens(IOI_CLEAN)])
    with torch.no_grad():
        _, cache = fast.run_with_cache(tokens, ("resid_pre", "q", "k", "v"))
    return fast, Parts(fast), cache


@pytest.mark.parametrize("which", ["setup", "rms_setup"])
def test_input_grads_equal_autograd_through_split_inputs(request, which):
    """Give each head's q, k and v its own copy of the residual stream, take the gradient of a
    random linear function of q, k, v by autograd: it must equal input_grads from the hook
    gradients (which are that function's coefficients)."""
    fast, parts, cache = request.getfixturevalue(which)
    torch.manual_seed(0)
    layer = 1
    x = cache[("resid_pre", layer)]
    g = [torch.randn_like(cache[(n, layer)]) for n in ("q", "k", "v")]
    copies = x[:, :, None, None, :].expand(-1, -1, 3, fast.n_heads, -1).clone().requires_grad_()
    q, k, v = parts.head_qkv(layer, copies[:, :, 0], copies[:, :, 1], copies[:, :, 2])
    objective = sum((t * gi).sum() for t, gi in zip((q, k, v), g, strict=True))
    (expected,) = torch.autograd.grad(objective, copies)
    ours = parts.input_grads(layer, x, *g)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-4)
    # and summed over heads and q/k/v it is the gradient with respect to the block's input
    whole = x.clone().requires_grad_()
    xs = whole[:, :, None, :].expand(-1, -1, fast.n_heads, -1)
    q, k, v = parts.head_qkv(layer, xs, xs, xs)
    objective = sum((t * gi).sum() for t, gi in zip((q, k, v), g, strict=True))
    (total,) = torch.autograd.grad(objective, whole)
    torch.testing.assert_close(ours.sum(dim=(2, 3)), total, atol=1e-5, rtol=1e-4)


def test_other_runners_are_refused_with_a_teaching_error(tiny_model):
    from actpatch.errors import InputError

    with pytest.raises(InputError, match="fast path"):
        Parts(object())
