"""The arithmetic of attribution patching: one component's AtP or AtP* estimate, every cell at once.

`actpatch.patching.attribution` defines the method (its docstring gives the equations; so does
docs/attribution.md) and runs it. From one gradient pass (`actpatch.patching.gradients`), this
module computes every cell of one component, per gradient set (the plain backward pass, then
GradDrop's, one per dropped layer) and per pair:
- plain AtP (`_linear`): (source - base) . gradient, summed over the entries the cell patches;
- AtP*'s QK fix (`_qk_fixed`, q and k cells): probe rows recompute a layer's attention pattern
  with patched queries or keys, by the runner's own block, and the pattern's change is
  linearized against the gradient at the pattern;
- GradDrop's score (`_graddrop`): the mean over pairs of 1/(L-1) sum over dropped layers of
  |AtP_l|.
`estimate(work)` returns them as an `Estimate`: the signed estimate, the score that ranks cells
and, for AtP*, plain AtP's estimate; a cell the exact sweep would not patch is NaN in each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor

from actpatch.patching.cells import Setup, aligned
from actpatch.patching.components import Component
from actpatch.patching.experiment import Experiment
from actpatch.patching.gradients import GradientRun

# Components whose cells live inside a block (GradDrop's own-layer term is zero for them).
RESIDUAL_STREAM = ("resid_pre", "resid_mid", "resid_post")
# How many activation floats one batch of QK-fix probe rows may hold (bounds memory).
PROBE_BUDGET = 1 << 24


@dataclass
class Estimate:
    """One component's estimate, before any exact patch: `estimate` (signed, in raw metric
    units), `score` (what ranks cells: |estimate|, or GradDrop's magnitude) and, for AtP*, plain
    AtP's estimate (`atp`); each with the axes of the component's exact sweep."""

    setup: Setup
    estimate: Tensor
    score: Tensor
    atp: Tensor | None


def estimate(work: Work, *, star: bool, graddrop: bool) -> Estimate:
    """The estimate of `work.setup`'s component: AtP, or AtP* (`star`: the QK fix for q and k
    cells; with `graddrop`, GradDrop's score from the gradient run's dropped-layer sets)."""
    comp = work.setup.component
    with torch.no_grad():
        per_pair = _component(work, comp, qk_fix=star)
        plain = (
            per_pair
            if not star or comp.hook not in ("q", "k")
            else _component(work, comp, qk_fix=False)
        )
    signed = _mask_cells(work, comp, per_pair[0].sum(0))
    if star and graddrop:
        score = _mask_cells(work, comp, _graddrop(per_pair, comp, work.exp.runner.n_layers))
    else:
        score = signed.abs()
    atp = _mask_cells(work, comp, plain[0].sum(0)) if star else None
    return Estimate(work.setup, signed, score, atp)


class _Probed(Exception):
    """Raised by a probe hook once it has the attention pattern: the rest of the block is not
    needed."""


class _Probe:
    """A hook that patches queries or keys, different entries per batch row, and keeps the
    attention pattern they produce. Rows are cell-major: row = cell * n_pairs + pair."""

    def __init__(self, hook: str, mask: Tensor, source: Tensor, n_pairs: int) -> None:
        self.hook, self.mask, self.source, self.n_pairs = hook, mask, source, n_pairs
        self.pattern: Tensor | None = None

    def __call__(self, name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        if name == self.hook:  # act: (rows * pairs, n, head, d_head)
            rows = act.reshape(len(self.mask), self.n_pairs, *act.shape[1:])
            mask = self.mask[:, None, :, :, None]
            return torch.where(mask, self.source.unsqueeze(0), rows).reshape(act.shape)
        if name == "pattern":
            self.pattern = act
            raise _Probed
        return act


@dataclass
class Work:
    """What every component's estimate shares: the runs, the gradients, the bookkeeping."""

    exp: Experiment
    setup: Setup  # of any component: runs, start, alignment
    grad: GradientRun

    @property
    def start(self) -> int:
        return self.grad.start

    @property
    def n_pos(self) -> int:
        return int(self.grad.tokens.shape[1])

    @cached_property
    def aligned(self) -> Tensor:
        """Which base positions start.. have a counterpart in the source run. (n,) bool; made
        once (on a GPU, a tensor from a list is a copy the CPU waits for)."""
        return torch.tensor(
            [self.setup.aligned(p) for p in range(self.start, self.n_pos)],
            device=self.exp.model.device,
        )

    def source(self, name: str, layer: int) -> Tensor:
        """The source run's activation at base positions start.. (unaligned ones: the base
        run's, which no patch sets)."""
        return aligned(self.setup, "source", name, layer)[:, self.start :]

    def delta(self, name: str, layer: int) -> Tensor:
        """source - base at positions start.., zero where unaligned. (pairs, n, ...)"""
        base = self.grad.activations[(name, layer)]
        diff = self.source(name, layer) - base
        shape = (1, diff.shape[1]) + (1,) * (diff.dim() - 2)
        return diff * self.aligned.reshape(shape)

    def grads(self, name: str, layer: int) -> Tensor:
        """The gradient sets at one hook point, stacked. (sets, pairs, n, ...)"""
        key = (name, layer)
        sets = [self.grad.gradients[key]]
        sets += [self.grad.dropped[d][key] for d in sorted(self.grad.dropped)]
        return torch.stack(sets)


def _linear(work: Work, comp: Component, layer: int) -> Tensor:
    """Plain AtP of one layer's cells, per gradient set and pair: (sets, pairs, *cell axes)."""
    hook = comp.hook
    g = work.grads(hook, layer)
    if hook == "pattern":  # (pairs, head, query, key): queries start.., keys whole
        base = work.grad.activations[("pattern", layer)]
        delta = work.setup.source.cache[("pattern", layer)][:, :, work.start :] - base
        return (delta.unsqueeze(0) * g).sum(dim=(-1, -2))  # (sets, pairs, head)
    product = work.delta(hook, layer).unsqueeze(0) * g
    if not comp.per_head:  # (sets, pairs, n, d_model) -> (sets, pairs, n)
        return _pad(work, product.sum(-1))
    per_pos = product.sum(-1)  # (sets, pairs, n, head)
    if comp.by_pos:
        return _pad(work, per_pos)
    return per_pos.sum(2)  # every aligned position


def _pad(work: Work, values: Tensor) -> Tensor:
    """Per-position values over start.. as every position: 0 before start (identical runs)."""
    shape = list(values.shape)
    shape[2] = work.start
    return torch.cat([values.new_zeros(shape), values], dim=2)


def _qk_fixed(work: Work, comp: Component, layer: int) -> Tensor:
    """AtP* with the QK fix: the attention pattern recomputed exactly with patched queries or
    keys, its change linearized. (sets, pairs, *cell axes)"""
    exp, runner = work.exp, work.exp.runner
    n_pairs, start = exp.n_pairs, work.start
    base_q = work.grad.activations[(comp.hook, layer)]  # (pairs, n, head, d_head)
    n, n_heads = base_q.shape[1], base_q.shape[2]
    patchable = work.aligned  # (n,) bool: positions with a counterpart
    source = work.source(comp.hook, layer)
    pattern = work.grad.activations[("pattern", layer)]  # (pairs, head, n, keys)
    g = work.grads("pattern", layer)  # (sets, pairs, head, n, keys)
    x = work.grad.activations[("resid_pre", layer)]
    # this layer's past keys and values only (read under no_grad: the cache's own tensors do)
    past = runner.past_kv(work.setup.base.cache, start)[layer]

    # The probe rows: one per head (every aligned position patched), or, for keys by position,
    # one per (position, head). A query's patch moves only its own row of the pattern, so one
    # row per head serves queries by position too.
    # The masks are written with one indexed write, not one per row (each a GPU launch).
    rows: list[tuple[int | None, int]]
    if comp.hook == "k" and comp.by_pos:
        aligned = patchable.tolist()  # one read of the device, not one per position
        rows = [(p, h) for p in range(n) if aligned[p] for h in range(n_heads)]
        masks = torch.zeros(len(rows), n, n_heads, dtype=torch.bool, device=x.device)
        at = torch.tensor([(p, h) for p, h in rows], dtype=torch.long).reshape(-1, 2)
        at = at.to(x.device)
        masks[torch.arange(len(rows), device=x.device), at[:, 0], at[:, 1]] = True
    else:
        rows = [(None, h) for h in range(n_heads)]
        masks = torch.zeros(len(rows), n, n_heads, dtype=torch.bool, device=x.device)
        heads = torch.arange(n_heads, device=x.device)
        masks[heads, :, heads] = patchable  # row h: head h at every aligned position
    per_row = n_pairs * pattern[0].numel() + n_pairs * n * 4 * x.shape[-1]
    chunk = max(1, PROBE_BUDGET // max(1, per_row))
    # per probe row: (sets, pairs, n), the effect on each query position's row of the pattern
    effects: list[Tensor] = []
    with torch.no_grad():
        for i in range(0, len(rows), chunk):
            mask = masks[i : i + chunk]
            probe = _Probe(comp.hook, mask, source, n_pairs)
            with contextlib.suppress(_Probed):  # the probe stops the block at the pattern
                runner.block(layer, x.repeat(len(mask), 1, 1), start, *past, hook=probe)
            assert probe.pattern is not None
            patched = probe.pattern.reshape(len(mask), n_pairs, *pattern.shape[1:])
            change = patched - pattern.unsqueeze(0)  # (rows, pairs, head, n, keys)
            # sum over every head (a norm over the whole projection couples heads) and key
            contribution = torch.einsum("rphqk,sphqk->rspq", change, g)
            effects.extend(contribution.unbind(0))
    sets = g.shape[0]
    if comp.hook == "q":
        per_pos = torch.stack(effects, dim=-1)  # (sets, pairs, n, head)
        return _pad(work, per_pos) if comp.by_pos else per_pos.sum(2)
    if not comp.by_pos:
        return torch.stack([e.sum(-1) for e in effects], dim=-1)  # (sets, pairs, head)
    out = torch.zeros(sets, n_pairs, work.n_pos, n_heads, device=x.device, dtype=g.dtype)
    if rows:
        at = torch.tensor([(start + p, h) for p, h in rows if p is not None], device=x.device)
        summed = torch.stack([e.sum(-1) for e in effects], dim=-1)  # (sets, pairs, rows)
        out[:, :, at[:, 0], at[:, 1]] = summed
    return out


def _component(work: Work, comp: Component, qk_fix: bool) -> Tensor:
    """Every layer's cells: (sets, pairs, layer, *other axes)."""
    fixed = qk_fix and comp.hook in ("q", "k")
    return torch.stack(
        [
            (_qk_fixed if fixed else _linear)(work, comp, layer)
            for layer in range(work.exp.runner.n_layers)
        ],
        dim=2,
    )


def _graddrop(per_pair: Tensor, comp: Component, n_layers: int) -> Tensor:
    """GradDrop's score from the dropped-layer sets (sets 1..): mean over pairs of
    1/(L-1) sum_l |AtP_l|, or 1/L for residual-stream cells. (*cell axes)"""
    dropped = per_pair[1:].abs().sum(0)  # (pairs, cells...); pairs already carry 1/pairs
    terms = n_layers if comp.hook in RESIDUAL_STREAM else n_layers - 1
    return dropped.sum(0) / max(1, terms)


def _mask_cells(work: Work, comp: Component, values: Tensor) -> Tensor:
    """NaN where the exact sweep leaves a cell unpatched (a position with no counterpart)."""
    values = values.detach().float().cpu()
    if comp.by_pos:
        for p in range(work.n_pos):
            if not work.setup.aligned(p):
                values[:, p] = float("nan")
    return values


__all__ = ["PROBE_BUDGET", "RESIDUAL_STREAM", "Estimate", "Work", "estimate"]
