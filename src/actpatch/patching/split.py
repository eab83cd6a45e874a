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

Every fast-path family has edges:
- *Grouped-query attention*: the key and value projections have n_kv_heads heads. A head's
  `<k>`/`<v>` input is either its own (the *ungrouped* convention: query head h reads through
  key/value head h // group's projection, as the multi-head model with repeated projections
  would) or the key/value head's (*grouped*). Either way the projection is the model's own
  slice, never copied: `head_qkv` and `head_input_grads` take as many key/value inputs as the
  convention has and group them onto the shared slices inside the matmul.
- *Parallel residual*: the MLP reads the block's input (the `mlp_in` hook point), not the heads.
- *Norms after the heads* (Gemma 2/3, OLMo 2): the attention output is `post(S)`, a norm of the
  sum S of the heads' outputs (`attn_pre`). A head's output is not additive there: `post_norm`
  and `post_norm_jvp` give what edge methods need (`actpatch.patching.circuit` and
  `actpatch.patching.edges` say how each uses them).
Only models on TransformerLens's bridge are refused: the parts are the fast path's own.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
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
            "TransformerLens's bridge (its family is not one the fast path covers)"
        )
    return None


def _per_slice(x: Tensor, W: Tensor) -> Tensor:
    """Each of x's head inputs through its own slice of W: x (inputs, rows, a), W (slices, a, b)
    with inputs a multiple of slices (input i uses slice i // (inputs / slices), as query heads
    use their key/value head). (inputs, rows, b), the slices never copied."""
    n_in, rows, _ = x.shape
    n_w = W.shape[0]
    if n_in == n_w:
        return x @ W
    out = x.reshape(n_w, (n_in // n_w) * rows, -1) @ W
    return out.reshape(n_in, rows, -1)


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
        self.n_kv_heads = runner.n_kv_heads
        self.parallel = bool(runner.spec.parallel)
        # layers whose attention output is normed after the heads are summed (Gemma, OLMo 2)
        self.post_normed = [w.ln1_post is not None for w in runner.weights.layers]
        self._weights: dict[int, list[tuple[Tensor, Tensor, Tensor | None]]] = {}

    def _qkv_weights(self, layer: int) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        """The q, k, v projections laid out per head, contiguous (made once per layer), one
        (W, back, b) each: W (heads, d_model, d_head), with n_heads heads for q and n_kv_heads
        for k and v; the same read backwards through the norm's scale, W^T * w in float32
        (heads, d_head, d_model), centred over d_model for a LayerNorm (`input_grads`);
        b (heads, d_head) or None."""
        if layer not in self._weights:
            self._weights[layer] = self._make_weights(layer)
        return self._weights[layer]

    @torch.inference_mode(False)  # usable in autograd even when first made in inference mode
    def _make_weights(self, layer: int) -> list[tuple[Tensor, Tensor, Tensor | None]]:
        w = self.runner.weights.layers[layer]
        d, dh = self.d_model, self.d_head
        out = []
        for m, bias in ((w.W_Q, w.b_Q), (w.W_K, w.b_K), (w.W_V, w.b_V)):
            W = m.reshape(d, -1, dh).permute(1, 0, 2)  # (heads, d_model, d_head)
            b = bias.reshape(-1, dh) if bias is not None else None
            back = W.transpose(1, 2).float()
            norm = w.ln1
            if norm is not None:
                back = back * norm.w.float()
                if self.runner.spec.norm == "layernorm":
                    back = back - back.mean(-1, keepdim=True)
            out.append((W.contiguous(), back.contiguous(), b))
        return out

    def _ln1(self, layer: int, x: Tensor) -> Tensor:
        norm = self.runner.weights.layers[layer].ln1
        return self.runner.norm(x, norm) if norm is not None else x

    def head_qkv(
        self, layer: int, x_q: Tensor, x_k: Tensor, x_v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Each head's q, k and v computed from its own input (batch, pos, inputs, d_model):
        n_heads query inputs; n_heads (ungrouped: query head h through key/value head
        h // group's slice) or n_kv_heads (grouped) key and value inputs.
        (batch, pos, inputs, d_head) each"""
        out = []
        for (W, _, b), x in zip(self._qkv_weights(layer), (x_q, x_k, x_v), strict=True):
            batch, pos, heads, d = x.shape
            # one matmul per slice over every (batch, pos) row: (inputs, batch * pos, d_model)
            normed = self._ln1(layer, x).permute(2, 0, 1, 3).reshape(heads, batch * pos, d)
            projected = _per_slice(normed, W).reshape(heads, batch, pos, -1).permute(1, 2, 0, 3)
            if b is not None:
                projected = projected + b.repeat_interleave(heads // b.shape[0], dim=0)
            out.append(projected)
        return out[0], out[1], out[2]

    def head_out(self, layer: int, z: Tensor) -> Tensor:
        """Each head's output written into the residual stream. (batch, pos, head, d_model)"""
        W_O = self.runner.weights.layers[layer].W_O.reshape(self.n_heads, self.d_head, -1)
        return torch.einsum("bphe,hed->bphd", z, W_O)

    def mlp(self, layer: int, x: Tensor) -> Tensor:
        """The MLP's output from its input (the residual stream after attention, or the
        block's input on a parallel-residual model)."""
        r, w = self.runner, self.runner.weights.layers[layer]
        return r.mlp(r.norm(x, w.ln2) if w.ln2 is not None else x, w)  # type: ignore[no-any-return]

    # -- norms after the heads (Gemma 2/3, OLMo 2) ------------------------------------------

    def attn_pre(self, layer: int, heads: Tensor) -> Tensor:
        """The attention output before its post-norm, from each head's output
        (..., head, d_model): their sum plus the output bias. (..., d_model)"""
        b_O = self.runner.weights.layers[layer].b_O
        total = heads.sum(-2)
        return total + b_O if b_O is not None else total

    def post_norm(self, layer: int, pre: Tensor) -> Tensor:
        """The attention output the residual stream receives from its pre-norm sum `pre`."""
        norm = self.runner.weights.layers[layer].ln1_post
        return self.runner.norm(pre, norm) if norm is not None else pre

    def post_norm_jvp(self, layer: int, pre: Tensor, delta: Tensor) -> Tensor:
        """The post-norm's Jacobian at `pre` (..., d_model) applied to `delta` (..., k, d_model)
        (k changes of the sum at once): what a small change of one head's output becomes in
        the residual stream. With x the input, r = 1 / sqrt(mean(x^2) + eps) and w the scale,
        d norm = w * r * (dx - x * r^2 * mean(x * dx)) for an RMS norm (x and dx centred
        first for a LayerNorm). In float32; (..., k, d_model) in delta's dtype."""
        norm = self.runner.weights.layers[layer].ln1_post
        if norm is None:
            return delta
        spec = self.runner.spec
        x, dx = pre.float()[..., None, :], delta.float()
        if spec.norm == "layernorm":
            x, dx = x - x.mean(-1, keepdim=True), dx - dx.mean(-1, keepdim=True)
        r = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + spec.norm_eps)
        out = norm.w.float() * r * (dx - x * r.pow(2) * (x * dx).mean(-1, keepdim=True))
        return out.to(delta.dtype)

    # -- gradients with respect to each reader's input --------------------------------------

    def input_grads(self, layer: int, x: Tensor, g_q: Tensor, g_k: Tensor, g_v: Tensor) -> Tensor:
        """The gradient with respect to each head's q, k and v input (the residual stream `x`
        as that head's projection reads it), from the gradients at the q, k, v hook points
        (per query head for k and v: the ungrouped convention): back through the head's own
        slice of W_Q, W_K, W_V and the norm before attention. (batch, pos, 3, head, d_model)"""
        q, k, v = self.head_input_grads(layer, x, g_q, g_k, g_v)
        return torch.stack((q, k, v)).permute(2, 3, 0, 1, 4)

    def head_input_grads(
        self, layer: int, x: Tensor, g_q: Tensor, g_k: Tensor, g_v: Tensor
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The gradient with respect to each reader's input, reader by reader: q
        (head, batch, pos, d_model); k and v (inputs, batch, pos, d_model), with as many inputs
        as g_k and g_v have heads (n_heads ungrouped, n_kv_heads grouped).

        The norm's VJP in closed form, for every head at once: with x_hat the normalized input
        and rstd its inverse scale, a cotangent c at the norm's output (here g @ W_head^T)
        goes back as rstd * (c * w - mean(c * w) - x_hat * mean(c * w * x_hat)) for a
        LayerNorm, without the mean(c * w) term for an RMS norm. The scale w and the centring
        are folded into the weights read backwards (`_qkv_weights`), rstd into g: what is
        left is a matmul per projection and one pass over its output."""
        weights = self._qkv_weights(layer)
        batch, pos = g_q.shape[:2]
        norm = self.runner.weights.layers[layer].ln1
        rstd = x_hat = None
        if norm is not None:
            spec = self.runner.spec
            xf = x.reshape(batch * pos, -1).float()
            if spec.norm == "layernorm":
                xf = xf - xf.mean(-1, keepdim=True)
            rstd = torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + spec.norm_eps)  # (rows, 1)
            x_hat = xf * rstd
        if g_q.shape[2] == g_k.shape[2] == weights[1][1].shape[0]:
            # every input has its own slice (multi-head attention): one matmul for all three
            g = (
                torch.stack((g_q, g_k, g_v))
                .permute(0, 3, 1, 2, 4)
                .reshape(3, g_q.shape[2], -1, g_q.shape[3])
            )
            back = torch.stack([w[1] for w in weights])
            out = self._back(g, back, rstd, x_hat).reshape(3, -1, batch, pos, x.shape[-1])
            return out[0].to(g_q.dtype), out[1].to(g_q.dtype), out[2].to(g_q.dtype)
        got = []
        for (_, back, _), g in zip(weights, (g_q, g_k, g_v), strict=True):
            flat = g.permute(2, 0, 1, 3).reshape(g.shape[2], batch * pos, -1)
            out = self._back(flat, back, rstd, x_hat, through=_per_slice)
            got.append(out.reshape(g.shape[2], batch, pos, -1).to(g_q.dtype))
        return got[0], got[1], got[2]

    @staticmethod
    def _back(
        g: Tensor,
        back: Tensor,
        rstd: Tensor | None,
        x_hat: Tensor | None,
        through: Callable[[Tensor, Tensor], Tensor] = torch.matmul,
    ) -> Tensor:
        """g (..., inputs, rows, d_head) back through the slices `back` (by `through`: a
        matmul, or `_per_slice` where inputs share slices) and the norm."""
        if rstd is None:
            return through(g.float(), back)
        assert x_hat is not None
        out = through(g.float() * rstd, back)  # rstd * (c * w - mean(c * w)): (..., rows, d)
        along = (out * x_hat).mean(-1, keepdim=True)  # = rstd * mean(c * w * x_hat)
        out.addcmul_(along, x_hat, value=-1.0)
        return out


_parts: weakref.WeakKeyDictionary[Any, Parts] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def parts_of(runner: Any) -> Parts:
    """The runner's parts, made once (they keep per-head copies of its weights)."""
    with _lock:
        if runner not in _parts:
            _parts[runner] = Parts(runner)
        return _parts[runner]


__all__ = ["Parts", "edge_problem", "parts_of"]
