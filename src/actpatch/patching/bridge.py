"""The generic path: any model TransformerLens's `TransformerBridge` can wrap.

The fast path (`actpatch.gpt2`) covers GPT-2's architecture. Every other model runs here:
TransformerLens's bridge with its hooks, still batched (one forward pass per layer of a sweep,
every cell of that layer a row of the batch), but always from the first layer and over every
position. Results mean the same as on the fast path; tests hold both to TransformerLens's own
patching functions.

The bridge registers hooks on the shared model, so runs here take a lock: concurrent callers
wait rather than see each other's patches.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from actpatch.errors import InputError

TL_HOOKS = {
    "resid_pre": "blocks.{}.hook_resid_pre",
    "resid_mid": "blocks.{}.hook_resid_mid",
    "resid_post": "blocks.{}.hook_resid_post",
    "attn_out": "blocks.{}.hook_attn_out",
    "mlp_out": "blocks.{}.hook_mlp_out",
    "q": "blocks.{}.attn.hook_q",
    "k": "blocks.{}.attn.hook_k",
    "v": "blocks.{}.attn.hook_v",
    "pattern": "blocks.{}.attn.hook_pattern",
    "z": "blocks.{}.attn.hook_z",
}


class BridgeRunner:
    """Unpatched and patched runs of a model through TransformerLens's TransformerBridge."""

    def __init__(self, model: Any) -> None:
        self.bridge = model.bridge()
        self.n_layers = int(self.bridge.cfg.n_layers)
        self.n_heads = int(self.bridge.cfg.n_heads)
        self.lock = threading.Lock()  # one runner per model (LoadedModel.bridge_runner)

    def hook_name(self, name: str, layer: int) -> str:
        return TL_HOOKS[name].format(layer)

    def run_with_cache(
        self, tokens: Tensor, names: Iterable[str]
    ) -> tuple[Tensor, dict[tuple[str, int], Tensor]]:
        """Final-position logits (batch, d_vocab) and the named activations at every layer."""
        wanted = {
            self.hook_name(n, layer): (n, layer) for n in names for layer in range(self.n_layers)
        }
        with self.lock, torch.inference_mode():
            logits, cache = self.bridge.run_with_cache(
                tokens, names_filter=lambda hook: hook in wanted
            )
        missing = [tl for tl in wanted if tl not in cache]
        if missing:
            raise InputError(
                f"This model's TransformerLens bridge has no hook {missing[0]}: that component "
                "cannot be patched on it.",
                field="component",
            )
        return logits[:, -1], {key: cache[tl] for tl, key in wanted.items()}

    def unembed(self, final: Tensor, token_ids: Tensor | None = None) -> Tensor:
        """Logits (they are what this path's runs return): all, or only `token_ids`' columns."""
        return final if token_ids is None else final.gather(1, token_ids)

    def run_patched(self, tokens: Tensor, hook_name: str, hook: Any) -> Tensor:
        """Final-position logits of a batch run with one patching hook. (batch, d_vocab)"""
        with self.lock, torch.inference_mode():
            logits = self.bridge.run_with_hooks(tokens, fwd_hooks=[(hook_name, hook)])
        return logits[:, -1]
