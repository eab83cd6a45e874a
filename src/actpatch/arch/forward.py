"""The one transformer forward: every covered architecture, as plain tensor functions.

This is the engine's fast path. Given an `ArchSpec` (what varies) and `Weights` (the tensors,
read from a Hugging Face model by `actpatch.arch.families`), it computes exactly what the
Hugging Face model computes (and so what TransformerLens's bridge computes), but a run can
- start at any layer, from a cached residual stream (`resid_pre`), and
- start at any position `pos0`: positions before it take their keys and values from a cache,
  because a causal model's earlier positions cannot see a later change;
- stop the last layer at the final position, the only one the answer is read from.
Rotary angles and sliding windows depend on absolute positions, so a run that starts at pos0
still knows where it is.

Hook points carry TransformerLens's names and shapes, so a patch means the same thing here as
in `transformer_lens.patching` run through its `TransformerBridge`:

    resid_pre   (batch, pos, d_model)      q           (batch, pos, head, d_head)
    attn_out    (batch, pos, d_model)      k, v        (batch, pos, kv_head, d_head)
    resid_mid   (batch, pos, d_model)      pattern     (batch, head, query_pos, key_pos)
    mlp_out     (batch, pos, d_model)      z           (batch, pos, head, d_head)
    resid_post  (batch, pos, d_model)

- q, k, v are the projections' outputs, before qk-norm and the rotary embedding (the bridge's
  hook_q/hook_k/hook_v). Patching k therefore patches what the norm and the rotation then act
  on, at the base run's position. With grouped-query attention k and v have n_kv_heads heads.
- `rot_k` (TransformerLens's hook_rot_k) is the key attention actually consumes: after
  qk-norm and rotation. It is not a patchable component; it is what a later run reuses as the
  past keys of positions before pos0 (`past_kv`).
- attn_out and mlp_out are what is added to the residual stream (after Gemma's and OLMo 2's
  post-norms). A parallel-residual model (GPT-NeoX) has no resid_mid.
- `mlp_in` (TransformerLens's hook_mlp_in) is the residual stream the MLP reads, before its
  norm: resid_mid, or the block's input on a parallel-residual model. What a hook returns there
  feeds the MLP alone, not the residual stream. Like rot_k it is no patchable component; edge
  methods read and rebuild the MLP's input there.
- Keys and values *per query head*: a hook at k or v may return n_heads heads instead of
  n_kv_heads (the key/value heads repeated for their query heads, then changed per query head);
  attention then reads them per query head, exactly as the multi-head model whose key/value
  projections are repeated would. Edge methods use this for grouped-query attention; the
  weights are never copied.

A hook is called as `hook(name, layer, activation, pos0)` and returns the activation to use;
`pos0` is the absolute position of index 0 on the activation's position axis (the query axis
for `pattern`, whose key axis always starts at 0).

Mixed lengths in one batch. Prompts of different token lengths can share a batch *left-padded*
(`pad`: each row's number of padding positions), so that every row's final token sits at the
last index and "the last layer computes only the final position" still holds. A row's real
tokens then see exactly what they would see alone: their keys hide the padding, and learned
positions and rotary angles use each token's true position (index - pad). Causal masks and
sliding windows compare differences of positions, which padding does not change. Padding
positions attend only to each other (a causal run of the padding token), so they never depend
on a row's real tokens and are the same in a clean and a corrupted run. Without `pad` nothing
of this runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from actpatch.arch.spec import ArchSpec, Rope

Hook = Callable[[str, int, Tensor, int], Tensor]

HOOK_NAMES = (
    "resid_pre",
    "q",
    "k",
    "v",
    "rot_k",
    "pattern",
    "z",
    "attn_out",
    "resid_mid",
    "mlp_in",
    "mlp_out",
    "resid_post",
)
# Hook points that are not patchable components (what later runs reuse, what edges rebuild).
INTERNAL_NAMES = ("rot_k", "mlp_in")
# What a later run needs from a cached one to start at pos0: the keys attention consumed, and
# the values.
PAST_NAMES = ("rot_k", "v")
# Causal masks kept per model (one per query/key shape): a server sees few prompt lengths.
_MASKS_KEPT = 64


@dataclass
class Norm:
    """A norm's scale (already 1 + w for Gemma; float32 where the norm multiplies in float32)
    and, for LayerNorm, its bias."""

    w: Tensor
    b: Tensor | None = None


@dataclass
class LayerWeights:
    """One block's weights, laid out for `x @ W` (input dimension first)."""

    W_Q: Tensor  # (d_model, head * d_head)
    W_K: Tensor  # (d_model, kv_head * d_head)
    W_V: Tensor  # (d_model, kv_head * d_head)
    W_O: Tensor  # (head * d_head, d_model), input index = head * d_head + d
    W_in: Tensor  # (d_model, d_mlp): the MLP's input (Llama's up_proj)
    W_out: Tensor  # (d_mlp, d_model)
    W_gate: Tensor | None = None  # (d_model, d_mlp), gated MLPs
    b_Q: Tensor | None = None
    b_K: Tensor | None = None
    b_V: Tensor | None = None
    b_O: Tensor | None = None
    b_in: Tensor | None = None
    b_out: Tensor | None = None
    ln1: Norm | None = None  # before attention
    ln2: Norm | None = None  # before the MLP
    ln1_post: Norm | None = None  # on attention's output
    ln2_post: Norm | None = None  # on the MLP's output
    q_norm: Norm | None = None
    k_norm: Norm | None = None


@dataclass
class Weights:
    """The whole model's weights."""

    W_E: Tensor  # (d_vocab, d_model)
    W_U: Tensor  # (d_model, d_vocab)
    ln_final: Norm
    layers: list[LayerWeights]
    W_pos: Tensor | None = None  # (n_ctx, d_model), learned positions
    b_U: Tensor | None = None
    embed_scale: Tensor | None = None  # a 0-dim tensor in the model's dtype (Gemma)
    extra: dict[str, Tensor] = field(default_factory=dict)


_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    # Hugging Face's gelu_new is the tanh GELU written in five ops; one fused kernel here.
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_fast": lambda x: F.gelu(x, approximate="tanh"),
    "gelu": F.gelu,
    "silu": F.silu,
    "swish": F.silu,
    "relu": F.relu,
}


def activation(name: str) -> Callable[[Tensor], Tensor]:
    """The MLP activation Hugging Face calls `name` (its own module for rarer ones)."""
    if name in _ACTIVATIONS:
        return _ACTIVATIONS[name]
    from transformers.activations import ACT2FN

    return ACT2FN[name]  # type: ignore[no-any-return]


def _linear(x: Tensor, W: Tensor, b: Tensor | None) -> Tensor:
    """x @ W (+ b) in one BLAS call. (..., d_in) -> (..., d_out)"""
    flat = x.reshape(-1, x.shape[-1])
    out = flat @ W if b is None else torch.addmm(b, flat, W)
    return out.reshape(*x.shape[:-1], W.shape[1])


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _softcap(x: Tensor, cap: float | None) -> Tensor:
    return x if cap is None else torch.tanh(x / cap) * cap


def per_query_head(t: Tensor, n_heads: int) -> Tensor:
    """Keys or values (batch, pos, kv_head, d_head) repeated for each query head of their group
    (batch, pos, head, d_head); already per query head, unchanged."""
    if t.shape[2] == n_heads:
        return t
    return t.repeat_interleave(n_heads // t.shape[2], dim=2)


def _rows(pad: Tensor, batch: int) -> Tensor:
    """Per-row padding counts (batch,) from per-group ones (groups,): row r is group r % groups."""
    return pad if pad.shape[0] == batch else pad.repeat(batch // pad.shape[0])


class Transformer:
    """A decoder-only transformer's forward pass as tensor functions over its weights."""

    def __init__(self, spec: ArchSpec, weights: Weights) -> None:
        self.spec, self.weights = spec, weights
        self.n_layers, self.d_model = spec.n_layers, spec.d_model
        self.n_heads, self.n_kv_heads, self.d_head = spec.n_heads, spec.n_kv_heads, spec.d_head
        self.dtype, self.device = weights.W_E.dtype, weights.W_E.device
        self.act = activation(spec.act)
        # The hook points a patch can target (a parallel-residual model has no resid_mid),
        # and what a run must cache for later runs to start past position 0.
        self.hook_names = tuple(
            n
            for n in HOOK_NAMES
            if n not in INTERNAL_NAMES and not (spec.parallel and n == "resid_mid")
        )
        self.past_names = PAST_NAMES
        self._rope_tables: dict[Rope, tuple[Tensor, Tensor]] = {}
        self._masks: dict[tuple[Any, ...], Tensor] = {}

    # -- the pieces, in the order data flows through them ------------------------------------

    def embed(self, tokens: Tensor, pad: Tensor | None = None) -> Tensor:
        """Layer 0's resid_pre: token embeddings, scaled or plus positions. (batch, pos, d_model)

        With `pad` (left-padding per row), learned positions count from each row's first real
        token.
        """
        w = self.weights
        x = F.embedding(tokens.to(w.W_E.device), w.W_E)
        if w.embed_scale is not None:
            x = x * w.embed_scale
        if w.W_pos is not None:
            at = torch.arange(tokens.shape[1], device=tokens.device)
            if pad is not None:  # (batch, pos): true positions (padding reads position 0)
                at = (at[None, :] - _rows(pad, tokens.shape[0])[:, None]).clamp(min=0)
            x = x + w.W_pos[at]
        return x

    def norm(self, x: Tensor, norm: Norm) -> Tensor:
        """LayerNorm or RMS norm over the last axis, as the spec says."""
        spec = self.spec
        if spec.norm == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), norm.w, norm.b, spec.norm_eps)
        # RMS norms compute in float32 (a no-op on float32 input), as Hugging Face does.
        xf = x.float()
        normed = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.norm_eps)
        if spec.norm_weight_in_float32:
            return (normed * norm.w).to(x.dtype)
        return norm.w * normed.to(x.dtype)

    def _qk_norm(self, t: Tensor, norm: Norm | None) -> Tensor:
        """qk-norm of queries or keys (batch, pos, head, d_head): per head, or over the whole
        projection (OLMo 2, where one head's change moves every head's scale)."""
        if norm is None:
            return t
        if self.spec.qk_norm == "projection":
            flat = t.flatten(-2)
            if flat.shape[-1] != norm.w.shape[-1]:  # keys per query head: repeat the scale too
                per_head = norm.w.view(-1, t.shape[-1])
                repeat = t.shape[-2] // per_head.shape[0]
                norm = Norm(per_head.repeat_interleave(repeat, dim=0).flatten())
            return self.norm(flat, norm).view(t.shape)
        return self.norm(t, norm)

    def _rope_table(self, rope: Rope, length: int) -> tuple[Tensor, Tensor]:
        """cos and sin of every position's rotation angles, (length, rope.dim), built once.

        Built outside inference mode (a cached run may be the first to ask), so that runs with
        gradients can use the same table.
        """
        known = self._rope_tables.get(rope)
        if known is None or known[0].shape[0] < length:
            length = max(length, 2 * known[0].shape[0] if known is not None else 64)
            with torch.inference_mode(False):
                positions = torch.arange(length, device=self.device).float()
                freqs = positions[:, None] * rope.inv_freq().to(self.device)
                angles = torch.cat((freqs, freqs), dim=-1)  # (length, rope.dim)
                known = (angles.cos().to(self.dtype), angles.sin().to(self.dtype))
            self._rope_tables[rope] = known
        return known

    def _rotate(self, layer: int, t: Tensor, pos0: int, pad: Tensor | None = None) -> Tensor:
        """The rotary embedding of queries or keys (batch, pos, head, d_head) at pos0..
        (with `pad`, at each row's true positions)."""
        rope = self.spec.rope_for(layer)
        if rope is None:
            return t
        n = t.shape[1]
        cos, sin = self._rope_table(rope, pos0 + n)
        if cos.device != t.device:  # a block on another device (device map)
            cos, sin = cos.to(t.device), sin.to(t.device)
        if pad is None:
            cos, sin = cos[pos0 : pos0 + n, None, :], sin[pos0 : pos0 + n, None, :]  # (pos, 1, dim)
        else:
            at = torch.arange(pos0, pos0 + n, device=t.device)
            at = (at[None, :] - _rows(pad, t.shape[0])[:, None]).clamp(min=0)  # (batch, pos)
            cos, sin = cos[at][:, :, None, :], sin[at][:, :, None, :]  # (batch, pos, 1, dim)
        if rope.dim == t.shape[-1]:
            return t * cos + _rotate_half(t) * sin
        rot, rest = t[..., : rope.dim], t[..., rope.dim :]  # partial rotary (Pythia)
        return torch.cat((rot * cos + _rotate_half(rot) * sin, rest), dim=-1)

    def _hidden(
        self, q_pos0: int, n_q: int, first_key: int, end: int, window: int | None, device: Any
    ) -> Tensor:
        """Which keys (first_key..end) each query (q_pos0..) may not read: later ones, and those
        past a sliding window. (query, key), built once per shape (a sweep asks for the same
        few masks in every layer, and on a GPU each small operation costs a launch), outside
        inference mode so that runs with gradients can use it too."""
        key = (q_pos0, n_q, first_key, end, window, str(device))
        known = self._masks.get(key)
        if known is None:
            with torch.inference_mode(False):
                query_at = torch.arange(q_pos0, q_pos0 + n_q, device=device)[:, None]
                key_at = torch.arange(first_key, end, device=device)[None, :]
                known = key_at > query_at
                if window is not None:
                    known = known | (key_at <= query_at - window)
            if len(self._masks) >= _MASKS_KEPT:
                self._masks.clear()
            self._masks[key] = known
        return known

    def _attend(
        self,
        layer: int,
        q: Tensor,
        k: Tensor,
        v: Tensor,
        past_k: Tensor | None,
        past_v: Tensor | None,
        pos0: int,
        q_pos0: int,
        hook: Hook | None,
        pad: Tensor | None = None,
    ) -> Tensor:
        """Causal attention of queries q (batch, n_q, head, d_head) at q_pos0.. over the keys
        and values k, v (batch, n, kv_head, d_head) at pos0.., and the past ones
        (groups, pos0, kv_head, d_head) before pos0. Returns z (batch, n_q, head, d_head).
        With `pad`, a real query hides its row's padding keys.

        Query head h reads KV head h // (head / kv_head), as Hugging Face's repeat_kv lays
        them out; the heads are grouped rather than the keys copied. Keys or values given per
        query head (module docstring) make every one of them per query head.
        """
        spec = self.spec
        batch, n_q, H, dh = q.shape
        if not k.shape[2] == v.shape[2] == (past_k.shape[2] if past_k is not None else k.shape[2]):
            k, v = per_query_head(k, H), per_query_head(v, H)
            if past_k is not None and past_v is not None:
                past_k, past_v = per_query_head(past_k, H), per_query_head(past_v, H)
        n, Hkv = k.shape[1], k.shape[2]
        G = H // Hkv
        qg = q.reshape(batch, n_q, Hkv, G, dh)
        scores = torch.einsum("bqkgd,bskd->bkgqs", qg, k)  # (batch, kv_head, group, query, key)
        has_past = past_k is not None and past_v is not None and pos0 > 0
        if has_past:
            assert past_k is not None
            groups = past_k.shape[0]
            q_past = qg.reshape(batch // groups, groups, n_q, Hkv, G, dh)
            past = torch.einsum("cgqkhd,gskd->cgkhqs", q_past, past_k)
            scores = torch.cat([past.reshape(batch, Hkv, G, n_q, pos0), scores], dim=-1)
        scores = _softcap(scores * spec.layer_scale(layer), spec.attn_softcap)
        first_key = 0 if has_past else pos0
        hidden = self._hidden(q_pos0, n_q, first_key, pos0 + n, spec.window(layer), q.device)
        if pad is not None:
            # (batch, 1, 1, query, key): a real query never reads a padding key; padding
            # queries read only padding keys (causally), so every row keeps a key.
            query_at = torch.arange(q_pos0, q_pos0 + n_q, device=q.device)[:, None]
            key_at = torch.arange(first_key, pos0 + n, device=q.device)[None, :]
            rows = _rows(pad, batch)[:, None, None]
            padding = (key_at[None] < rows) & (query_at[None] >= rows)
            hidden = (hidden[None] | padding)[:, None, None]
        scores = scores.masked_fill(hidden, torch.finfo(scores.dtype).min)
        # softmax in float32, as Hugging Face does (a no-op for float32 models)
        pattern = scores.softmax(dim=-1, dtype=torch.float32)
        if pattern.dtype != q.dtype:
            pattern = pattern.to(q.dtype)
        if hook is not None:
            flat = hook("pattern", layer, pattern.reshape(batch, H, n_q, -1), q_pos0)
            pattern = flat.reshape(pattern.shape)
        own = pattern[..., pos0 - first_key :]
        z = torch.einsum("bkgqs,bskd->bqkgd", own, v)  # (batch, query, kv_head, group, d_head)
        if has_past:
            assert past_v is not None
            groups = past_v.shape[0]
            past_pattern = pattern[..., :pos0].reshape(batch // groups, groups, Hkv, G, n_q, pos0)
            past_z = torch.einsum("cgkhqs,gskd->cgqkhd", past_pattern, past_v)
            z = z + past_z.reshape(z.shape)
        return z.reshape(batch, n_q, H, dh)

    def mlp(self, x: Tensor, w: LayerWeights) -> Tensor:
        """The MLP (and its post-norm, Gemma 2/3 and OLMo 2) on its normed input x."""
        if w.W_gate is not None:
            hidden = self.act(_linear(x, w.W_gate, None)) * _linear(x, w.W_in, w.b_in)
        else:
            hidden = self.act(_linear(x, w.W_in, w.b_in))
        out = _linear(hidden, w.W_out, w.b_out)
        return self.norm(out, w.ln2_post) if w.ln2_post is not None else out

    def block(
        self,
        layer: int,
        x: Tensor,
        pos0: int,
        past_k: Tensor | None,
        past_v: Tensor | None,
        hook: Hook | None,
        last_only: bool = False,
        pad: Tensor | None = None,
    ) -> Tensor:
        """Run block `layer` on positions pos0.. of `x` (batch, n, d_model); return its output.

        `past_k`/`past_v` (groups, pos0, kv_head, d_head) hold the keys (as attention consumes
        them: normed and rotated) and values of positions before pos0, shared by every row of a
        group: batch row r uses group r % groups. (A sweep patches many cells of the same base
        run, so the cells share one cache, never copied.) With `last_only`, only the final
        position's output is computed; every position's keys and values still are, since the
        final position attends to them. `pad` (groups,) counts each group's left-padding
        positions (module docstring), grouped like the past keys and values.
        """
        w = self.weights.layers[layer]
        if x.device != w.W_Q.device:  # a device map: the residual stream moves at the boundary
            x = x.to(w.W_Q.device)
            pad = pad.to(x.device) if pad is not None else None
        batch, n, _ = x.shape
        H, Hkv, dh = self.n_heads, self.n_kv_heads, self.d_head
        if hook is not None:
            x = hook("resid_pre", layer, x, pos0)
        attn_in = self.norm(x, w.ln1) if w.ln1 is not None else x
        q = _linear(attn_in, w.W_Q, w.b_Q).view(batch, n, H, dh)
        k = _linear(attn_in, w.W_K, w.b_K).view(batch, n, Hkv, dh)
        v = _linear(attn_in, w.W_V, w.b_V).view(batch, n, Hkv, dh)
        if hook is not None:
            q = hook("q", layer, q, pos0)
            k = hook("k", layer, k, pos0)
            v = hook("v", layer, v, pos0)
        q = self._rotate(layer, self._qk_norm(q, w.q_norm), pos0, pad)
        k = self._rotate(layer, self._qk_norm(k, w.k_norm), pos0, pad)
        if hook is not None:
            k = hook("rot_k", layer, k, pos0)
        q_pos0 = pos0
        if last_only:
            q, x = q[:, -1:], x[:, -1:]
            q_pos0 = pos0 + n - 1
        n_q = q.shape[1]
        z = self._attend(layer, q, k, v, past_k, past_v, pos0, q_pos0, hook, pad)
        if hook is not None:
            z = hook("z", layer, z, q_pos0)
        attn_out = _linear(z.reshape(batch, n_q, H * dh), w.W_O, w.b_O)
        if w.ln1_post is not None:
            attn_out = self.norm(attn_out, w.ln1_post)
        if hook is not None:
            attn_out = hook("attn_out", layer, attn_out, q_pos0)
        if self.spec.parallel:
            # Attention and MLP both read the block's input; no resid_mid exists.
            mlp_in = hook("mlp_in", layer, x, q_pos0) if hook is not None else x
            mlp_out = self.mlp(self.norm(mlp_in, w.ln2) if w.ln2 is not None else mlp_in, w)
            if hook is not None:
                mlp_out = hook("mlp_out", layer, mlp_out, q_pos0)
            x = mlp_out + attn_out + x  # Hugging Face's order of the sum
        else:
            x = x + attn_out
            if hook is not None:
                x = hook("resid_mid", layer, x, q_pos0)
            mlp_in = hook("mlp_in", layer, x, q_pos0) if hook is not None else x
            mlp_out = self.mlp(self.norm(mlp_in, w.ln2) if w.ln2 is not None else mlp_in, w)
            if hook is not None:
                mlp_out = hook("mlp_out", layer, mlp_out, q_pos0)
            x = x + mlp_out
        if hook is not None:
            x = hook("resid_post", layer, x, q_pos0)
        return x

    # -- whole runs --------------------------------------------------------------------------

    def run(
        self,
        x: Tensor,
        start_layer: int = 0,
        pos0: int = 0,
        past_kv: list[tuple[Tensor, Tensor]] | None = None,
        hook: Hook | None = None,
        last_only: bool = True,
        pad: Tensor | None = None,
    ) -> Tensor:
        """Run layers start_layer.. from residual `x` at positions pos0..; return the final
        position's residual stream after the last block, before the final norm. (batch, d_model)

        `past_kv[layer]` holds each layer's (keys, values) of positions before pos0; `pad`
        each row's (or group's) left-padding.
        """
        for layer in range(start_layer, self.n_layers):
            past_k, past_v = past_kv[layer] if past_kv is not None else (None, None)
            last = last_only and layer == self.n_layers - 1
            x = self.block(layer, x, pos0, past_k, past_v, hook, last_only=last, pad=pad)
        return x[:, -1]

    def run_with_cache(
        self, tokens: Tensor, names: Iterable[str], pad: Tensor | None = None
    ) -> tuple[Tensor, dict[tuple[str, int], Tensor]]:
        """Run the whole model on `tokens`; return the final residual and the named activations.

        The cache maps (hook name, layer) to the activation over every position. `pad`: each
        row's (or group's) left-padding, for prompts of different lengths in one batch.
        """
        wanted = set(names)
        cache: dict[tuple[str, int], Tensor] = {}

        def keep(name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
            if name in wanted:
                cache[(name, layer)] = act
            return act

        final = self.run(self.embed(tokens, pad), hook=keep, last_only=False, pad=pad)
        return final, cache

    def past_kv(
        self, cache: dict[tuple[str, int], Tensor], end: int
    ) -> list[tuple[Tensor, Tensor]]:
        """Each layer's keys and values of positions before `end`, from a cached run that kept
        `PAST_NAMES`: what a run starting at pos0 = end attends to. [(keys, values)] per layer"""
        return [
            (cache[("rot_k", layer)][:, :end], cache[("v", layer)][:, :end])
            for layer in range(self.n_layers)
        ]

    def ln_final(self, resid: Tensor) -> Tensor:
        """The final norm, applied to residual streams. (..., d_model)"""
        return self.norm(resid, self.weights.ln_final)

    def unembed(self, resid: Tensor, token_ids: Tensor | None = None) -> Tensor:
        """Float32 logits from final residuals (batch, d_model): all, or only `token_ids`' columns.

        `token_ids` is (batch, k); reading k columns instead of the whole vocabulary is what
        makes a logit difference cheap. The final soft-cap (Gemma 2) is elementwise, so the
        columns read are the columns of the full logits.
        """
        w = self.weights
        normed = self.ln_final(resid.to(w.W_U.device))
        if token_ids is None:
            logits = normed @ w.W_U
            if w.b_U is not None:
                logits = logits + w.b_U
        else:
            columns = w.W_U.T[token_ids.to(w.W_U.device)]  # (batch, k, d_model)
            logits = torch.einsum("bd,bkd->bk", normed, columns)
            if w.b_U is not None:
                logits = logits + w.b_U[token_ids.to(w.W_U.device)]
        # on the embedding's device, where the answers are (the two differ under a device map)
        return _softcap(logits, self.spec.final_softcap).float().to(self.device)
