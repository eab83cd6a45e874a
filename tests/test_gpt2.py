"""The fast path computes what Hugging Face's GPT-2 computes, from any layer and position."""

import pytest
import torch

from actpatch.gpt2 import GPT2, supports
from tests.conftest import IOI_CLEAN


@pytest.fixture(scope="module")
def fast(tiny_model):
    return GPT2(tiny_model.hf_model)


def test_full_run_matches_hugging_face_logits(tiny_model, fast):
    tokens = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)])
    with torch.no_grad():
        reference = tiny_model.hf_model(tokens).logits[:, -1]
        final, _ = fast.run_with_cache(tokens, [])
    assert (fast.unembed(final) - reference).abs().max() < 1e-4


def test_cache_matches_transformer_lens_hooks(tiny_model, fast):
    bridge = tiny_model.bridge()
    tokens = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)])
    with torch.no_grad():
        _, ours = fast.run_with_cache(tokens, ["resid_pre", "z", "pattern", "mlp_out"])
        _, theirs = bridge.run_with_cache(tokens)
    for layer in range(tiny_model.n_layers):
        for ours_name, tl_name in (
            ("resid_pre", f"blocks.{layer}.hook_resid_pre"),
            ("z", f"blocks.{layer}.attn.hook_z"),
            ("pattern", f"blocks.{layer}.attn.hook_pattern"),
            ("mlp_out", f"blocks.{layer}.hook_mlp_out"),
        ):
            assert (ours[(ours_name, layer)] - theirs[tl_name]).abs().max() < 1e-4


@pytest.mark.parametrize(("layer", "pos0"), [(0, 0), (1, 5), (2, 13)])
def test_partial_run_from_cache_equals_full_run(tiny_model, fast, layer, pos0):
    tokens = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)] * 2)
    with torch.no_grad():
        full, cache = fast.run_with_cache(tokens, ["resid_pre", "k", "v"])
        past = [(cache[("k", i)][:, :pos0], cache[("v", i)][:, :pos0]) for i in range(3)]
        x = cache[("resid_pre", layer)][:, pos0:].repeat(3, 1, 1)  # 3 cells x 2 pairs
        partial = fast.run(x, layer, pos0, past)
    assert (partial - full.repeat(3, 1)).abs().max() < 1e-4


def test_other_architectures_are_named():
    class NotGPT2(torch.nn.Module):
        class config:
            model_type = "llama"

    assert "llama" in (supports(NotGPT2()) or "")
