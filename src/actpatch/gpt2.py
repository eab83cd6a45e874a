"""GPT-2, written out as plain tensor functions so that a patched run can start anywhere.

This is the engine's fast path. It computes exactly what Hugging Face's `GPT2LMHeadModel`
computes (and so what TransformerLens's bridge computes), from the same weights, but a run can
- start at any layer, from a cached residual stream (`resid_pre`), and
- start at any position `pos0`: positions before it take their keys and values from a cache,
  because a causal model's earlier positions cannot see a later change;
- stop the last layer at the final position, the only one the answer is read from.

Hook points carry TransformerLens's names and shapes, so a patch means the same thing here as
in `transformer_lens.patching`:

    resid_pre   (batch, pos, d_model)      q, k, v   (batch, pos, head, d_head)
    attn_out    (batch, pos, d_model)      pattern   (batch, head, query_pos, key_pos)
    resid_mid   (batch, pos, d_model)      z         (batch, pos, head, d_head)
    mlp_out     (batch, pos, d_model)
    resid_post  (batch, pos, d_model)

A hook is called as `hook(name, layer, activation, pos0)` and returns the activation to use;
`pos0` is the absolute position of index 0 on the activation's position axis (the query axis
for `pattern`, whose key axis always starts at 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

Hook = Callable[[str, int, Tensor, int], Tensor]

HOOK_NAMES = (
    "resid_pre",
    "q",
    "k",
    "v",
    "pattern",
    "z",
    "attn_out",
    "resid_mid",
    "mlp_out",
    "resid_post",
)


def supports(hf_model: Any) -> str | None:
    """None if the fast path can run this model exactly, else the reason it cannot."""
    config = getattr(hf_model, "config", None)
    if config is None or getattr(config, "model_type", None) != "gpt2":
        kind = getattr(config, "model_type", type(hf_model).__name__)
        return f"the fast path is written for GPT-2's architecture, not {kind!r}"
    if getattr(config, "reorder_and_upcast_attn", False):
        return "reorder_and_upcast_attn is not supported"
    if getattr(config, "add_cross_attention", False):
        return "cross-attention is not supported"
    return None


def _activation(name: str, registry: dict) -> Callable[[Tensor], Tensor]:
    """GPT-2's activation; gelu_new is the tanh GELU, one fused kernel instead of five ops."""
    if name in ("gelu_new", "gelu_pytorch_tanh"):
        return lambda x: F.gelu(x, approximate="tanh")
    if name == "gelu":
        return F.gelu
    return registry[name]


@dataclass
class Block:
    """One transformer block's weights, laid out for `x @ W` (Hugging Face's Conv1D layout)."""

    ln1_w: Tensor
    ln1_b: Tensor
    W_qkv: Tensor  # (d_model, 3 * d_model)
    b_qkv: Tensor
    W_O: Tensor  # (d_model, d_model), input index = head * d_head + d
    b_O: Tensor
    ln2_w: Tensor
    ln2_b: Tensor
    W_in: Tensor  # (d_model, d_mlp)
    b_in: Tensor
    W_out: Tensor  # (d_mlp, d_model)
    b_out: Tensor
    attn_scale: float


class GPT2:
    """GPT-2's forward pass as tensor functions over a Hugging Face model's weights."""

    def __init__(self, hf_model: Any) -> None:
        reason = supports(hf_model)
        if reason is not None:
            raise ValueError(reason)
        from transformers.activations import ACT2FN

        config = hf_model.config
        transformer = hf_model.transformer
        self.n_layers = int(config.n_layer)
        self.n_heads = int(config.n_head)
        self.d_model = int(config.n_embd)
        self.d_head = self.d_model // self.n_heads
        self.eps = float(config.layer_norm_epsilon)
        self.act = _activation(config.activation_function, ACT2FN)
        self.W_E = transformer.wte.weight.detach()  # (d_vocab, d_model)
        self.W_pos = transformer.wpe.weight.detach()  # (n_ctx, d_model)
        self.lnf_w = transformer.ln_f.weight.detach()
        self.lnf_b = transformer.ln_f.bias.detach()
        self.W_U = hf_model.lm_head.weight.detach().T  # (d_model, d_vocab)
        self.blocks: list[Block] = []
        for layer, hf_block in enumerate(transformer.h):
            scale = 1.0
            if config.scale_attn_weights:
                scale /= math.sqrt(self.d_head)
            if config.scale_attn_by_inverse_layer_idx:
                scale /= float(layer + 1)
            attn, mlp = hf_block.attn, hf_block.mlp
            self.blocks.append(
                Block(
                    ln1_w=hf_block.ln_1.weight.detach(),
                    ln1_b=hf_block.ln_1.bias.detach(),
                    W_qkv=attn.c_attn.weight.detach(),
                    b_qkv=attn.c_attn.bias.detach(),
                    W_O=attn.c_proj.weight.detach(),
                    b_O=attn.c_proj.bias.detach(),
                    ln2_w=hf_block.ln_2.weight.detach(),
                    ln2_b=hf_block.ln_2.bias.detach(),
                    W_in=mlp.c_fc.weight.detach(),
                    b_in=mlp.c_fc.bias.detach(),
                    W_out=mlp.c_proj.weight.detach(),
                    b_out=mlp.c_proj.bias.detach(),
                    attn_scale=scale,
                )
            )

    # -- the forward pass, in the order data flows through it ---------------------------------

    def embed(self, tokens: Tensor) -> Tensor:
        """resid_pre of layer 0: token plus position embeddings. (batch, pos, d_model)"""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return self.W_E[tokens] + self.W_pos[positions]

    def _layer_norm(self, x: Tensor, w: Tensor, b: Tensor) -> Tensor:
        return F.layer_norm(x, (self.d_model,), w, b, self.eps)

    def _linear(self, x: Tensor, W: Tensor, b: Tensor) -> Tensor:
        """x @ W + b in one fused call. (..., d_in) -> (..., d_out)"""
        return torch.addmm(b, x.reshape(-1, x.shape[-1]), W).reshape(*x.shape[:-1], W.shape[1])

    def block(
        self,
        layer: int,
        x: Tensor,
        pos0: int,
        past_k: Tensor | None,
        past_v: Tensor | None,
        hook: Hook | None,
        last_only: bool = False,
    ) -> Tensor:
        """Run block `layer` on positions pos0.. of `x` (batch, n, d_model); return its output.

        `past_k`/`past_v` (groups, pos0, head, d_head) hold the keys and values of positions
        before pos0, shared by every row of a group: batch row r uses group r % groups. (A sweep
        patches many cells of the same base run, so the cells share one cache, never copied.)
        With `last_only`, only the final position's output is computed; every position's keys
        and values still are, since the final position attends to them.
        """
        w = self.blocks[layer]
        batch, n, _ = x.shape
        H, dh = self.n_heads, self.d_head
        if hook is not None:
            x = hook("resid_pre", layer, x, pos0)
        qkv = self._linear(self._layer_norm(x, w.ln1_w, w.ln1_b), w.W_qkv, w.b_qkv)
        q, k, v = (t.reshape(batch, n, H, dh) for t in qkv.split(self.d_model, dim=-1))
        if hook is not None:
            q = hook("q", layer, q, pos0)
            k = hook("k", layer, k, pos0)
            v = hook("v", layer, v, pos0)
        q_pos0 = pos0
        if last_only:
            q, x = q[:, -1:], x[:, -1:]
            q_pos0 = pos0 + n - 1
        n_q = q.shape[1]
        # Scores against this run's own keys: (batch, head, query_pos, key_pos), causal.
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * w.attn_scale
        query_at = torch.arange(q_pos0, q_pos0 + n_q, device=x.device)[:, None]
        key_at = torch.arange(pos0, pos0 + n, device=x.device)[None, :]
        scores = scores.masked_fill(key_at > query_at, torch.finfo(scores.dtype).min)
        has_past = past_k is not None and past_v is not None and pos0 > 0
        if has_past:
            assert past_k is not None and past_v is not None
            groups = past_k.shape[0]
            q_grouped = q.reshape(batch // groups, groups, n_q, H, dh)
            past_scores = torch.einsum("cgqhd,gkhd->cghqk", q_grouped, past_k) * w.attn_scale
            scores = torch.cat([past_scores.reshape(batch, H, n_q, pos0), scores], dim=-1)
        pattern = scores.softmax(dim=-1)
        if hook is not None:
            pattern = hook("pattern", layer, pattern, q_pos0)
        if has_past:
            assert past_v is not None
            groups = past_v.shape[0]
            past_pattern = pattern[..., :pos0].reshape(batch // groups, groups, H, n_q, pos0)
            z = torch.einsum("bhqk,bkhd->bqhd", pattern[..., pos0:], v)
            z = z + torch.einsum("cghqk,gkhd->cgqhd", past_pattern, past_v).reshape(z.shape)
        else:
            z = torch.einsum("bhqk,bkhd->bqhd", pattern, v)  # (batch, query_pos, head, d_head)
        if hook is not None:
            z = hook("z", layer, z, q_pos0)
        attn_out = self._linear(z.reshape(batch, n_q, self.d_model), w.W_O, w.b_O)
        if hook is not None:
            attn_out = hook("attn_out", layer, attn_out, q_pos0)
        x = x + attn_out
        if hook is not None:
            x = hook("resid_mid", layer, x, q_pos0)
        hidden = self.act(self._linear(self._layer_norm(x, w.ln2_w, w.ln2_b), w.W_in, w.b_in))
        mlp_out = self._linear(hidden, w.W_out, w.b_out)
        if hook is not None:
            mlp_out = hook("mlp_out", layer, mlp_out, q_pos0)
        x = x + mlp_out
        if hook is not None:
            x = hook("resid_post", layer, x, q_pos0)
        return x

    def run(
        self,
        x: Tensor,
        start_layer: int = 0,
        pos0: int = 0,
        past_kv: list[tuple[Tensor, Tensor]] | None = None,
        hook: Hook | None = None,
        last_only: bool = True,
    ) -> Tensor:
        """Run layers start_layer.. from residual `x` at positions pos0..; return the final
        position's residual stream after the last block, before ln_f. (batch, d_model)

        `past_kv[layer]` holds each layer's (keys, values) of positions before pos0.
        """
        for layer in range(start_layer, self.n_layers):
            past_k, past_v = past_kv[layer] if past_kv is not None else (None, None)
            last = last_only and layer == self.n_layers - 1
            x = self.block(layer, x, pos0, past_k, past_v, hook, last_only=last)
        return x[:, -1]

    def run_with_cache(
        self, tokens: Tensor, names: Iterable[str]
    ) -> tuple[Tensor, dict[tuple[str, int], Tensor]]:
        """Run the whole model on `tokens`; return the final residual and the named activations.

        The cache maps (hook name, layer) to the activation over every position.
        """
        wanted = set(names)
        cache: dict[tuple[str, int], Tensor] = {}

        def keep(name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
            if name in wanted:
                cache[(name, layer)] = act
            return act

        final = self.run(self.embed(tokens), hook=keep, last_only=False)
        return final, cache

    def ln_final(self, resid: Tensor) -> Tensor:
        """The final layer norm, applied to residual streams. (..., d_model)"""
        return self._layer_norm(resid, self.lnf_w, self.lnf_b)

    def unembed(self, resid: Tensor, token_ids: Tensor | None = None) -> Tensor:
        """Logits from final residuals (batch, d_model): all of them, or only `token_ids`' columns.

        `token_ids` is (batch, k); reading k columns instead of the whole vocabulary is what
        makes a logit difference cheap.
        """
        normed = self.ln_final(resid)
        if token_ids is None:
            return normed @ self.W_U
        columns = self.W_U.T[token_ids]  # (batch, k, d_model)
        return torch.einsum("bd,bkd->bk", normed, columns)
