"""One short adapter per Hugging Face family: its config -> an `ArchSpec`, its weights ->
`Weights`. `supports(hf_model)` says whether the fast path computes a model exactly (None) or
why not; `load(hf_model)` builds the fast forward over the model's own tensors.

Covered (model_type): gpt2, gpt_neox (Pythia), llama, mistral, qwen2, qwen3, gemma2,
gemma3_text (Gemma 3's `Gemma3ForCausalLM`), olmo2. Anything else, or a covered family with a
feature the forward does not compute (an unknown rope scaling, cross-attention, experts), is
refused with the reason, so the engine falls back to TransformerLens's bridge rather than
returning a wrong number.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

from actpatch.arch.families import (
    gemma2,
    gemma3,
    gpt2,
    gpt_neox,
    llama,
    mistral,
    olmo2,
    qwen2,
    qwen3,
)
from actpatch.arch.families._common import Unsupported
from actpatch.arch.forward import Transformer
from actpatch.arch.spec import ArchSpec

ADAPTERS: dict[str, ModuleType] = {
    model_type: module
    for module in (gpt2, gpt_neox, llama, mistral, qwen2, qwen3, gemma2, gemma3, olmo2)
    for model_type in module.MODEL_TYPES
}
FAMILIES = tuple(ADAPTERS)


def _checked_spec(hf_model: Any) -> ArchSpec:
    config = getattr(hf_model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        kind = model_type or type(hf_model).__name__
        raise Unsupported(f"the fast path covers {', '.join(FAMILIES)}; {kind!r} is not among them")
    if hf_model.get_output_embeddings() is None:
        raise Unsupported("the model has no language-model head")
    params = list(hf_model.parameters())
    if any(not p.is_floating_point() for p in params):
        raise Unsupported("quantized (non-floating-point) weights are not covered")
    devices = {p.device for p in params}
    # Several devices only as a device map places them (actpatch.models.placement: whole blocks
    # on their devices, the forward moving the residual stream between them); never offloaded.
    placed = getattr(hf_model, "actpatch_device_map", None) is not None
    if (len(devices) > 1 and not placed) or any(d.type == "meta" for d in devices):
        raise Unsupported(f"the weights are spread over {sorted(map(str, devices))}")
    try:
        return ADAPTERS[model_type].spec(config)  # type: ignore[no-any-return]
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        # a config this adapter was not written for: refuse rather than guess
        raise Unsupported(f"its {model_type} config could not be read ({exc})") from None


def supports(hf_model: Any) -> str | None:
    """None if the fast path computes this model exactly, else the reason it cannot."""
    try:
        _checked_spec(hf_model)
    except Unsupported as exc:
        return str(exc)
    return None


def load(hf_model: Any) -> Transformer:
    """The fast forward over a Hugging Face model's weights (views of its tensors)."""
    try:
        spec = _checked_spec(hf_model)
    except Unsupported as exc:
        raise ValueError(str(exc)) from None
    adapter = ADAPTERS[hf_model.config.model_type]
    return Transformer(spec, adapter.weights(hf_model, spec))


__all__ = ["ADAPTERS", "FAMILIES", "Unsupported", "load", "supports"]
