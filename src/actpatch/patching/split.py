"""A block split into the parts that edge-level methods compute on their own.

A runner's `block` computes a layer as one piece: every head reads the same residual stream.
Edge-level methods need to tell the heads' inputs apart: edge patching gives one head's query a
residual stream that differs from its neighbours' (`actpatch.patching.circuit`), and edge
attribution needs the metric's gradient with respect to each head's own q, k and v input
(`actpatch.patching.edges`). The forward pass itself stays in the runner (`actpatch.arch`):
these parts are the few pieces of it that have to be computed per head, written against the
runner's own weights and norm, and checked against its forward in tests/patching/test_split.py.

    head_qkv(layer, x_q, x_k, x_v)   each head's q, k, v (at the hook points: before qk-norm
                                     and rotation) from its own residual input
                                     (batch, pos, head, d_model) -> (batch, pos, head, d_head)
    head_out(layer, z)               each head's output in the residual stream, z @ W_O[head],
                                     without the output bias (batch, pos, head, d_model)
    mlp(layer, x)                    the MLP's output from its input x (batch, pos, d_model)
    input_grads(layer, x, g_q, g_k, g_v)
                                     d metric / d (each head's q, k and v input), from the
                                     gradients at the q, k, v hooks: (batch, pos, 3, head, d_model)
    head_input_grads(...)            the same, reader by reader: (3, head, batch, pos, d_model)

Edges need each head's output to be its own additive share of the residual stream, and each
head to read its own keys and values: models whose attention output is normalized after the
heads are summed (Gemma 2 and 3, OLMo 2), whose MLP reads the block's input alongside attention
(GPT-NeoX's parallel residual) or whose heads share keys and values (grouped-query attention)
are refused with a teaching error, as TransformerLens 4.3's edge attribution refuses them.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

import torch
from torch import Tensor

from actpatch.errors import InputError


def edge_problem(runner: Any) -> str | None:
    """None if edge-level methods can run on this runner's model, else why they cannot."""
    from actpatch.arch import Transformer

    if not isinstance(runner, Transformer):
        return (
            "they run on the fast path (actpatch's own forward), and this model runs on "
            "TransformerLens's bridge"
        )
    spec = runner.spec
    if spec.parallel:
        return (
            "its attention and MLP read the same input (a parallel residual stream), so a "
            "layer's MLP does not read its own heads' outputs"
        )
    if any(w.ln1_post is not None for w in runner.weights.layers):
        return (
            "its attention output is normalized after the heads are summed, so a head's "
            "output is not its own share of the residual stream"
        )
    if runner.n_kv_heads != runner.n_heads:
        return (
            f"its {runner.n_heads} query heads share {runner.n_kv_heads} key/value heads "
            "(grouped-query attention), so a head's key and value inputs are not its own"
        )
    return None


class Parts:
    """The per-head pieces of a runner's blocks (`actpatch.arch.Transformer`)."""

    def __init__(self, runner: Any) -> None:
        problem = edge_problem(runner)
        if problem is not None:
            raise InputError(
                "Edge-level methods (path patching, edge attribution, circuit evaluation) "
                f"cannot run on this model: {problem}.",
                field="model",
            )
        self.runner = runner
        self.n_heads, self.d_head, self.d_model = runner.n_heads, runner.d_head, runner.d_model
        self._weights: dict[int, tuple[Tensor, Tensor, Tensor | None]] = {}

    def _qkv_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None]:
        """The q, k, v projections laid out per head, contiguous (made once per layer):
        W (3, head, d_model, d_head); the same read backwards through the norm's scale,
        W^T * w in float32 (3, head, d_head, d_model), centred over d_model for a LayerNorm
        (`input_grads`); b (3, head, d_head) or None."""
        if layer not in self._weights:
            self._weights[layer] = self._make_weights(layer)
        return self._weights[layer]

    @torch.inference_mode(False)  # usable in autograd even when first made in inference mode
    def _make_weights(self, layer: int) -> tuple[Tensor, Tensor, Tensor | None]:
        w = self.runner.weights.layers[layer]
        d, H, dh = self.d_model, self.n_heads, self.d_head
        W = torch.stack([m.reshape(d, H, dh).permute(1, 0, 2) for m in (w.W_Q, w.W_K, w.W_V)])
        biases = (w.b_Q, w.b_K, w.b_V)
        b = None
        if any(x is not None for x in biases):
            b = torch.stack(
                [x.reshape(H, dh) if x is not None else W.new_zeros(H, dh) for x in biases]
            )
        back = W.transpose(2, 3).float()
        norm = w.ln1
        if norm is not None:
            back = back * norm.w.float()
            if self.runner.spec.norm == "layernorm":
                back = back - back.mean(-1, keepdim=True)
        return W.contiguous(), back.contiguous(), b

    def _ln1(self, layer: int, x: Tensor) -> Tensor:
        norm = self.runner.weights.layers[layer].ln1
        return self.runner._norm(x, norm) if norm is not None else x

    def head_qkv(
        self, layer: int, x_q: Tensor, x_k: Tensor, x_v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Each head's q, k and v computed from its own input. (batch, pos, head, d_head) each"""
        W, _, b = self._qkv_weights(layer)
        out = []
        for i, x in enumerate((x_q, x_k, x_v)):
            batch, pos, heads, d = x.shape
            # one matmul per head over every (batch, pos) row: (head, batch * pos, d_model)
            normed = self._ln1(layer, x).permute(2, 0, 1, 3).reshape(heads, batch * pos, d)
            projected = (normed @ W[i]).reshape(heads, batch, pos, -1).permute(1, 2, 0, 3)
            out.append(projected + b[i] if b is not None else projected)
        return out[0], out[1], out[2]

    def head_out(self, layer: int, z: Tensor) -> Tensor:
        """Each head's output written into the residual stream. (batch, pos, head, d_model)"""
        W_O = self.runner.weights.layers[layer].W_O.reshape(self.n_heads, self.d_head, -1)
        return torch.einsum("bphe,hed->bphd", z, W_O)

    def mlp(self, layer: int, x: Tensor) -> Tensor:
        """The MLP's output from its input (the residual stream after attention)."""
        r, w = self.runner, self.runner.weights.layers[layer]
        return r._mlp(r._norm(x, w.ln2) if w.ln2 is not None else x, w)  # type: ignore[no-any-return]

    def input_grads(self, layer: int, x: Tensor, g_q: Tensor, g_k: Tensor, g_v: Tensor) -> Tensor:
        """The gradient with respect to each head's q, k and v input (the residual stream `x`
        as that head's projection reads it), from the gradients at the q, k, v hook points:
        back through the head's own slice of W_Q, W_K, W_V and the norm before attention.
        (batch, pos, 3, head, d_model)"""
        return self.head_input_grads(layer, x, g_q, g_k, g_v).permute(2, 3, 0, 1, 4)

    def head_input_grads(
        self, layer: int, x: Tensor, g_q: Tensor, g_k: Tensor, g_v: Tensor
    ) -> Tensor:
        """`input_grads` laid out reader by reader: (3, head, batch, pos, d_model).

        The norm's VJP in closed form, for every head at once: with x_hat the normalized input
        and rstd its inverse scale, a cotangent c at the norm's output (here g @ W_head^T)
        goes back as rstd * (c * w - mean(c * w) - x_hat * mean(c * w * x_hat)) for a
        LayerNorm, without the mean(c * w) term for an RMS norm. The scale w and the centring
        are folded into the weights read backwards (`_qkv_weights`), rstd into g: what is
        left is one matmul and one pass over its output."""
        _, back, _ = self._qkv_weights(layer)
        batch, pos, heads, dh = g_q.shape
        g = torch.stack((g_q, g_k, g_v)).permute(0, 3, 1, 2, 4).reshape(3, heads, -1, dh)
        norm = self.runner.weights.layers[layer].ln1
        if norm is None:
            out = g.float() @ back
        else:
            spec = self.runner.spec
            xf = x.reshape(batch * pos, -1).float()
            if spec.norm == "layernorm":
                xf = xf - xf.mean(-1, keepdim=True)
            rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.norm_eps)  # (rows, 1)
            x_hat = xf * rstd
            out = (g.float() * rstd) @ back  # rstd * (c * w - mean(c * w)): (3, head, rows, d)
            along = (out * x_hat).mean(-1, keepdim=True)  # = rstd * mean(c * w * x_hat)
            out.addcmul_(along, x_hat, value=-1.0)
        return out.reshape(3, heads, batch, pos, -1).to(g_q.dtype)


_parts: weakref.WeakKeyDictionary[Any, Parts] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def parts_of(runner: Any) -> Parts:
    """The runner's parts, made once (they keep per-head copies of its weights)."""
    with _lock:
        if runner not in _parts:
            _parts[runner] = Parts(runner)
        return _parts[runner]


__all__ = ["Parts", "edge_problem", "parts_of"]
