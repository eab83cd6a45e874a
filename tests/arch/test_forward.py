"""The one forward computes what each family's Hugging Face model computes, from any layer and
position, and its hooks see what TransformerLens's bridge caches under the same names."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from actpatch.arch import Transformer, load
from actpatch.arch.families import ADAPTERS
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.tiny_families import FAMILIES

# Our hook name -> TransformerLens's, at layer {}.
TL_NAMES = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "rot_k": "blocks.{}.attn.hook_rot_k",
    "pattern": "blocks.{}.attn.hook_pattern",
    "z": "blocks.{}.attn.hook_z",
    "attn_out": "blocks.{}.hook_attn_out",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "resid_post": "blocks.{}.hook_resid_post",
}


def _tokens(model) -> torch.Tensor:
    return torch.tensor([model.to_tokens(IOI_CLEAN), model.to_tokens(IOI_CORRUPT)])


def _close(ours: torch.Tensor, theirs: torch.Tensor, rel: float = 1e-5) -> float:
    """The largest difference relative to the activation's scale (at least 1)."""
    scale = max(1.0, float(theirs.abs().max()))
    return float((ours - theirs).abs().max()) / scale


@pytest.mark.parametrize("family", FAMILIES)
def test_logits_match_hugging_face(family_model, family):
    model = family_model(family)
    fast = load(model.hf_model)
    tokens = _tokens(model)
    with torch.no_grad():
        reference = model.hf_model(tokens).logits[:, -1]
        final, _ = fast.run_with_cache(tokens, [])
        ours = fast.unembed(final)
    # The prompts must give clearly different answers, else the patching tests prove little.
    assert (reference[0] - reference[1]).abs().max() > 0.5
    assert _close(ours, reference) < 1e-5


@pytest.mark.parametrize("family", FAMILIES)
def test_run_from_a_layer_and_position_equals_the_full_run(family_model, family):
    model = family_model(family)
    fast = load(model.hf_model)
    tokens = _tokens(model)
    n_pos = tokens.shape[1]
    with torch.no_grad():
        full, cache = fast.run_with_cache(tokens, ["resid_pre", "rot_k", "v"])
        for layer, pos0 in [(0, 0), (1, 6), (1, n_pos - 1)]:
            past = fast.past_kv(cache, pos0)
            x = cache[("resid_pre", layer)][:, pos0:].repeat(3, 1, 1)  # 3 cells x 2 pairs
            partial = fast.run(x, layer, pos0, past)
            assert _close(partial, full.repeat(3, 1)) < 1e-5, (layer, pos0)


@pytest.mark.parametrize("family", FAMILIES)
def test_hooks_match_transformer_lens_bridge(family_model, family):
    """The bridge as actpatch boots it (`LoadedModel.bridge`: compatibility mode's names and
    shapes, no weight processing, so its activations are the model's own)."""
    model = family_model(family)
    fast = load(model.hf_model)
    tokens = _tokens(model)
    with torch.no_grad():
        _, ours = fast.run_with_cache(tokens, TL_NAMES)
        _, theirs = model.bridge().run_with_cache(tokens)
    compared = set()
    for (name, layer), act in ours.items():
        tl_name = TL_NAMES[name].format(layer)
        if tl_name not in theirs:
            # the bridge has no hook_rot_k without rotary, nor on NeoX's fused-QKV attention
            assert name == "rot_k", tl_name
            continue
        reference = theirs[tl_name]
        assert act.shape == reference.shape, name
        assert _close(act, reference) < 1e-5, (name, layer)
        compared.add(name)
    expected = set(TL_NAMES) - {"rot_k"} - ({"resid_mid"} if fast.spec.parallel else set())
    assert expected <= compared


@pytest.mark.parametrize("family", FAMILIES)
def test_keys_and_values_have_n_kv_heads(family_model, family):
    model = family_model(family)
    fast = load(model.hf_model)
    _, cache = fast.run_with_cache(_tokens(model), ["q", "k", "v", "z"])
    config = model.hf_model.config
    n_kv = getattr(config, "num_key_value_heads", None) or fast.n_heads
    assert fast.n_kv_heads == n_kv
    assert cache[("k", 0)].shape[2] == cache[("v", 0)].shape[2] == n_kv
    assert cache[("q", 0)].shape[2] == cache[("z", 0)].shape[2] == fast.n_heads


def _variant(model, **changes) -> Transformer:
    """The fast forward with one feature of the spec changed (weights re-read for it)."""
    adapter = ADAPTERS[model.hf_model.config.model_type]
    spec = dataclasses.replace(load(model.hf_model).spec, **changes)
    return Transformer(spec, adapter.weights(model.hf_model, spec))


# Each feature a tiny model has must change its answer: else matching Hugging Face would not
# show that the feature is computed right.
FEATURES = [
    ("gpt_neox", {"parallel": False}),
    ("gpt_neox_sequential", {"parallel": True}),
    ("llama", {"rope": None}),
    ("mistral", {"sliding_window": None}),
    ("qwen2", {"qkv_bias": False}),
    ("qwen3", {"qk_norm": "projection"}),
    ("gemma2", {"attn_softcap": None}),
    ("gemma2", {"final_softcap": None}),
    ("gemma2", {"sliding_window": None}),
    ("gemma2", {"norm_offset": False}),
    ("gemma3", {"rope_local": None}),
    ("gemma3", {"sliding_window": None}),
    ("gemma3", {"embed_scale": None}),
    ("olmo2", {"qk_norm": "head"}),
]


@pytest.mark.parametrize(("family", "changes"), FEATURES)
def test_each_feature_of_the_tiny_models_matters(family_model, family, changes):
    model = family_model(family)
    tokens = _tokens(model)
    with torch.no_grad():
        reference = model.hf_model(tokens).logits[:, -1]
        if "qkv_bias" in changes:  # biases are weights: drop them from the forward
            fast = load(model.hf_model)
            for layer in fast.weights.layers:
                layer.b_Q = layer.b_K = layer.b_V = None
        elif "rope" in changes:  # Llama 3's scaled frequencies against plain ones
            spec = load(model.hf_model).spec
            assert spec.rope is not None
            plain = dataclasses.replace(spec.rope, scaling="default")
            fast = _variant(model, rope=plain)
        elif "qk_norm" in changes and changes["qk_norm"] == "head":
            fast = load(model.hf_model)  # OLMo 2's projection-wide norm, applied per head
            d_head = fast.d_head
            for layer in fast.weights.layers:
                for norm in (layer.q_norm, layer.k_norm):
                    assert norm is not None
                    norm.w = norm.w[:d_head]
            fast = Transformer(dataclasses.replace(fast.spec, qk_norm="head"), fast.weights)
        elif "qk_norm" in changes:
            fast = load(model.hf_model)
            for layer in fast.weights.layers:
                layer.q_norm = layer.k_norm = None
        else:
            fast = _variant(model, **changes)
        final, _ = fast.run_with_cache(tokens, [])
        changed = float((fast.unembed(final) - reference).abs().max())
    assert changed > 1e-3, f"{family}'s tiny model does not exercise {changes}"


def test_logit_columns_equal_full_logits_with_final_softcap(family_model):
    model = family_model("gemma2")
    fast = load(model.hf_model)
    with torch.no_grad():
        final, _ = fast.run_with_cache(_tokens(model), [])
        ids = torch.tensor([[11, 42], [7, 50256]])
        columns = fast.unembed(final, ids)
        full = fast.unembed(final)
    assert torch.allclose(columns, full.gather(1, ids), atol=1e-5)
    assert full.abs().max() <= fast.spec.final_softcap


def test_a_hook_patches_what_flows_on(family_model):
    """Zeroing one KV head's values at one layer changes only the outputs that read it."""
    model = family_model("llama")
    fast = load(model.hf_model)
    tokens = _tokens(model)

    def zero_kv_head(name, layer, act, pos0):
        if name == "v" and layer == 1:
            act = act.clone()
            act[:, :, 0] = 0
        return act

    with torch.no_grad():
        _, clean = fast.run_with_cache(tokens, ["z"])
        cache: dict = {}

        def both(name, layer, act, pos0):
            act = zero_kv_head(name, layer, act, pos0)
            if name == "z":
                cache[layer] = act
            return act

        fast.run(fast.embed(tokens), hook=both, last_only=False)
    group = fast.n_heads // fast.n_kv_heads  # query heads 0..group-1 read KV head 0
    assert not torch.allclose(cache[1][:, :, :group], clean[("z", 1)][:, :, :group])
    assert torch.allclose(cache[1][:, :, group:], clean[("z", 1)][:, :, group:])


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("family", ["gpt2", "gpt_neox", "llama", "gemma2", "olmo2"])
def test_half_precision_is_as_close_to_float32_as_hugging_face_is(family_model, family, dtype):
    """In bfloat16 or float16 no two implementations round alike; ours must stay within twice
    Hugging Face's own distance from the float32 answer (plus a hair)."""
    model = family_model(family)
    tokens = _tokens(model)
    with torch.no_grad():
        exact = model.hf_model(tokens).logits[:, -1]
        half = copy.deepcopy(model.hf_model).to(dtype)
        theirs = half(tokens).logits[:, -1].float()
        fast = load(half)
        final, _ = fast.run_with_cache(tokens, [])
        ours = fast.unembed(final)
    assert fast.dtype == dtype and ours.dtype == torch.float32
    hf_error = float((theirs - exact).abs().max())
    assert float((ours - exact).abs().max()) <= 2 * hf_error + 1e-3


# Prompts of three token lengths, for left-padding: the longest is the IOI prompt.
MIXED = [
    IOI_CLEAN,
    "Then Mary and John talked, John gave a book to",
    "When Mary and John went out, Mary said to",
]


def _padded(model) -> tuple[list[list[int]], torch.Tensor, torch.Tensor]:
    """Each prompt's ids, and the prompts left-padded to the longest (batch, pos) with each
    row's padding count (batch,)."""
    ids = [model.to_tokens(p) for p in MIXED]
    longest = max(len(i) for i in ids)
    pad = torch.tensor([longest - len(i) for i in ids])
    assert len(set(pad.tolist())) == 3  # three lengths: the test pads differently per row
    tokens = torch.tensor([[ids[0][0]] * (longest - len(i)) + i for i in ids])
    return ids, tokens, pad


@pytest.mark.parametrize("family", FAMILIES)
def test_padded_rows_compute_what_each_prompt_computes_alone(family_model, family):
    """Left-padded prompts of different lengths in one batch give each prompt's Hugging Face
    logits, and every real position's activations equal the prompt's own unpadded run
    (learned positions, rotary angles and sliding windows at each row's true positions)."""
    model = family_model(family)
    fast = load(model.hf_model)
    ids, tokens, pad = _padded(model)
    names = ["resid_pre", "k", "rot_k", "z", "resid_post"]
    with torch.no_grad():
        final, cache = fast.run_with_cache(tokens, names, pad=pad)
        logits = fast.unembed(final)
        for row, prompt in enumerate(ids):
            reference = model.hf_model(torch.tensor([prompt])).logits[0, -1]
            assert _close(logits[row], reference) < 1e-5, row
            _, alone = fast.run_with_cache(torch.tensor([prompt]), names)
            for key, act in alone.items():
                assert _close(cache[key][row, int(pad[row]) :], act[0]) < 1e-5, (row, key)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_padded_run_from_a_layer_and_position_equals_the_full_run(family_model, family):
    """Starting at a layer and a position past every row's padding, from the padded run's own
    keys and values, gives the full padded run's answer (pad grouped like the past)."""
    model = family_model(family)
    fast = load(model.hf_model)
    _, tokens, pad = _padded(model)
    with torch.no_grad():
        full, cache = fast.run_with_cache(tokens, ["resid_pre", "rot_k", "v"], pad=pad)
        for layer, pos0 in [(0, 0), (1, int(pad.max()) + 1), (1, tokens.shape[1] - 1)]:
            past = fast.past_kv(cache, pos0)
            x = cache[("resid_pre", layer)][:, pos0:].repeat(2, 1, 1)  # 2 cells x 3 rows
            partial = fast.run(x, layer, pos0, past, pad=pad)
            assert _close(partial, full.repeat(2, 1)) < 1e-5, (layer, pos0)


def test_without_padding_nothing_changes(family_model):
    """No pad and a pad of zeros give the same numbers (the unpadded path is the default)."""
    model = family_model("llama")
    fast = load(model.hf_model)
    tokens = _tokens(model)
    with torch.no_grad():
        plain, _ = fast.run_with_cache(tokens, [])
        zeros, _ = fast.run_with_cache(tokens, [], pad=torch.zeros(2, dtype=torch.long))
    assert torch.allclose(plain, zeros, atol=1e-6)
