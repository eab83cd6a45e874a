"""Attribution patching: every cell of a sweep estimated from one backward pass.

An exact sweep patches each cell (one batch row per cell). *Attribution patching* (AtP; Nanda
2023, "Attribution Patching: Activation Patching At Industrial Scale") estimates all of them at
once with a first-order Taylor expansion around the base run:

    estimate(n) = (a_source(n) - a_base(n)) . dM/da(n) |base run

where `n` is a cell (a layer and head, or a layer and position, ...), `a(n)` the activation
entries the cell's patch would set, and `M` the metric (averaged over prompt pairs, as in a
sweep). *Denoising* takes the gradient on the corrupted run and the clean activation as the
source; *noising* the reverse: the same runs as the exact sweep of the same direction. The
estimate is in raw metric units: the predicted change of the metric when the cell is patched,
so `estimate` is comparable with `sweep(...).raw - base value`.

AtP* (Kramar, Lieberum, Shah and Nanda 2024, "AtP*: An efficient and scalable method for
localizing LLM behaviour to components", arXiv 2403.00745) fixes AtP's two sources of false
negatives (docs/attribution.md gives the equations):
- *the QK fix*: a query or key enters the metric through a softmax, whose gradient vanishes
  where attention saturates. For q and k cells the attention pattern is recomputed exactly with
  the patched query or key (by the runner itself, so every architecture's scores, norms and
  rotations are respected), and only the pattern's effect is linearized:
  `sum over queries t and keys s of dM/dA[t, s] * (A_patched[t, s] - A[t, s])`;
- *GradDrop*: a cell's direct and indirect effects can cancel in the gradient. L more backward
  passes each zero the gradient flowing through one layer's residual contribution (its
  attention and MLP outputs); the cell's score is the mean over pairs of
  `1/(L-1) * sum over layers l of |AtP_l(n)|`. For cells inside a block the term of their own
  layer is zero, hence L - 1; for residual-stream cells no term vanishes, and we divide by L.
  GradDrop gives a magnitude (`score`), used to rank cells; `estimate` stays the signed
  (QK-fixed) AtP.

Then *screen, then verify*: `verify=K` patches exactly (the engine's cells, one batch row each)
the K cells AtP ranks first; `compare=True` runs the exact sweep of every cell and measures
how far the estimate is from it (`agreement`).

Cost: one forward and one backward pass serve every component at once. On a cold experiment
(its runs not yet cached) and a small batch, the experiment's cached forward of both runs *is*
the gradient pass: autograd records it, its activations are kept as the experiment's cached runs
(shared with every later sweep), and the backward runs from the metric of the base rows. On a
warm experiment, or a batch large enough that a backward over both runs' every row costs more
than a second pass over the weights (`SHARED_ROWS`), the base run is run once more with
gradients from the first position where the prompts differ (earlier positions are identical in
both runs, so no patch there changes anything), its past keys and values from the cache. All
prompt pairs are one batch. Prompts of unequal length use the exact sweep's alignment:
unaligned positions are not patched. Only activations take gradients: the fast path's weights
are detached views that autograd never differentiates.

Gradient machinery, the project's one gradient pass, for other methods (edge attribution) to
reuse: `gradient_run(exp, which, metric, names)` runs the clean or corrupted run with gradients
and returns a `GradientRun`: for each hooked activation `(name, layer)` its value and the
gradient of the metric (mean over pairs) with respect to it, over positions `start..` (the query
axis, for patterns; the key axis is whole). `drop_layers` adds GradDrop's gradients; `inputs`
replaces the layer-0 residual stream (EAP-IG's interpolated embeddings); `keep` names what the
cached runs must hold afterwards. Only the fast path (actpatch's own forward) computes
gradients; the bridge backend is refused with a message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from actpatch.arch.forward import per_query_head
from actpatch.errors import CancelledError, InputError
from actpatch.patching import guardrails
from actpatch.patching.cells import (
    Setup,
    all_cells,
    check_component,
    chunk_size,
    metric_values,
    parse_memory,
    prepare,
    run_cells,
)
from actpatch.patching.components import Component, get_component
from actpatch.patching.experiment import Experiment
from actpatch.patching.metrics import from_logits, is_normalizable
from actpatch.patching.options import (
    ATTRIBUTION_METHODS,
    GRADIENT_METRICS,
    check_direction,
    check_metric,
)
from actpatch.patching.results import AttributionResult

# The hook points whose gradient GradDrop zeroes: a layer's contribution to the residual stream.
RESIDUAL_WRITES = ("attn_out", "mlp_out")
# Components whose cells live inside a block (GradDrop's own-layer term is zero for them).
RESIDUAL_STREAM = ("resid_pre", "resid_mid", "resid_post")

Progress = Callable[[int, int], None]
# How many activation floats one batch of QK-fix probe rows may hold (bounds memory).
PROBE_BUDGET = 1 << 24
# The gradient pass on a cold experiment can also be its cached forward of both runs (one pass
# over the weights instead of two), but its backward then runs over every row of both runs:
# pairs * (positions + start) more rows than the backward from `start` of the base run alone,
# in each backward pass (GradDrop adds one per layer). It pays while those rows cost less than
# reading the weights once: on CPU (GPT-2 small, 1 or 2 threads; benchmarks/README.md) about 32
# rows -- one pair of an IOI prompt, not two, and not with GradDrop's passes.
SHARED_ROWS = 32


# -- options -----------------------------------------------------------------------------------


def check_method(method: str) -> str:
    """The attribution method, checked: "atp" or "atp*"."""
    key = method.lower().replace("atpstar", "atp*").replace("atp_star", "atp*")
    if key not in ATTRIBUTION_METHODS:
        raise InputError(
            f"Unknown attribution method {method!r}. Choose "
            + " or ".join(f"{name!r} ({what})" for name, what in ATTRIBUTION_METHODS.items())
            + ".",
            field="method",
        )
    return key


def check_gradient_metric(metric: str | None, has_wrong: bool) -> str:
    """The metric, checked, and refused if it has no gradient (rank)."""
    metric = check_metric(metric, has_wrong)
    if metric not in GRADIENT_METRICS:
        raise InputError(
            f"The {metric} metric has no gradient (a rank changes in steps), so attribution "
            "patching cannot estimate it. Use logit_diff (with a wrong answer) or logprob, "
            "which rank cells alike; or run an exact sweep with the rank metric.",
            field="metric",
        )
    return metric


def check_backend(exp: Experiment) -> None:
    """Refuse an experiment on the bridge backend, whose forward actpatch does not differentiate."""
    if exp.backend != "fast":
        raise InputError(
            f"Attribution patching needs gradients through actpatch's own forward pass, and "
            f"{exp.model.name} runs on TransformerLens's bridge backend, which actpatch does not "
            "differentiate. Run an exact sweep instead (it covers every model the bridge "
            "wraps).",
            field="backend",
        )


# -- gradients ---------------------------------------------------------------------------------


class _DropState:
    """Which layer's residual contribution the current backward pass drops (None: none)."""

    def __init__(self) -> None:
        self.layer: int | None = None


class _GradGate(torch.autograd.Function):
    """The identity forward; backward passes the gradient on, or zero for the dropped layer."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, state: _DropState, layer: int) -> Tensor:
        ctx.state, ctx.layer = state, layer
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, *grads: Tensor) -> tuple[Tensor | None, None, None]:
        (grad,) = grads
        if ctx.state.layer == ctx.layer:
            return torch.zeros_like(grad), None, None
        return grad, None, None


@dataclass
class GradientRun:
    """One base run's activations and the metric's gradient with respect to each of them.

    `activations[(name, layer)]` and `gradients[(name, layer)]` cover positions `start..` of the
    run (for `pattern`, the query axis; its key axis is whole): earlier positions are identical
    in the clean and corrupted runs, so no patch there can change anything. The gradient is of
    the metric averaged over pairs, so `sum over pairs of delta . gradient` is the mean effect.
    `dropped[l]` holds GradDrop's gradients with layer l's residual contribution (attn_out and
    mlp_out) cut from the backward pass; empty unless asked for. `values` is the metric of each
    pair on this run.
    """

    which: str
    metric: str
    start: int
    tokens: Tensor
    values: Tensor
    activations: dict[tuple[str, int], Tensor]
    gradients: dict[tuple[str, int], Tensor]
    dropped: dict[int, dict[tuple[str, int], Tensor]] = field(default_factory=dict)


def _pair_metric(exp: Experiment, final: Tensor, metric: str) -> Tensor:
    """The metric of each row from final residuals (rows, d_model), differentiably; row r is
    pair r % pairs (a run may hold several copies of the pairs). (rows,)"""
    runner = exp.runner
    reps = final.shape[0] // exp.n_pairs
    target = exp.target_ids.repeat(reps)
    if metric == "logit_diff":
        assert exp.wrong_ids is not None
        logits = runner.unembed(final, torch.stack([target, exp.wrong_ids.repeat(reps)], dim=1))
        return logits[:, 0] - logits[:, 1]
    return from_logits(metric, runner.unembed(final), target, None)


def _past(
    runner: Any, cache: dict[tuple[str, int], Tensor], start: int
) -> list[tuple[Tensor, Tensor]]:
    """Each layer's keys and values of positions before `start`, as plain (non-inference)
    tensors that autograd may save."""
    if hasattr(runner, "past_kv"):
        past = runner.past_kv(cache, start)
    else:
        past = [
            (cache[("k", i)][:, :start], cache[("v", i)][:, :start]) for i in range(runner.n_layers)
        ]
    return [(k.clone(), v.clone()) for k, v in past]


def _normal(value: Any, depth: int = 0) -> Any:
    """`value` with every inference tensor in it (however nested in dataclasses, dicts, lists
    and tuples) replaced by a normal copy; the same object, changed in place, where it can be."""
    if isinstance(value, Tensor):
        return value.clone() if value.is_inference() else value
    if depth > 4:
        return value
    if isinstance(value, dict):
        for key, item in list(value.items()):
            new = _normal(item, depth + 1)
            if new is not item:
                value[key] = new
    elif isinstance(value, list):
        for i, item in enumerate(value):
            new = _normal(item, depth + 1)
            if new is not item:
                value[i] = new
    elif isinstance(value, tuple):
        items = tuple(_normal(item, depth + 1) for item in value)
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            old = getattr(value, f.name)
            new = _normal(old, depth + 1)
            if new is not old:
                object.__setattr__(value, f.name, new)  # (frozen dataclasses too)
    return value


def _differentiable(runner: Any) -> None:
    """Make the runner usable under autograd: tensors it computed inside inference mode (the
    engine's cached runs are) -- rotary tables, norm scales -- cannot be saved for backward,
    so each is replaced once by a normal copy (they are small; weights are views, untouched)."""
    for name, value in list(vars(runner).items()):
        new = _normal(value)
        if new is not value:
            setattr(runner, name, new)


def hook_names(exp: Experiment) -> tuple[str, ...]:
    """The hook points this experiment's runner has (a parallel-residual model has no
    resid_mid)."""
    return tuple(exp.runner.hook_names)


def _cut(name: str, act: Tensor, rows: slice, start: int) -> Tensor:
    """Rows `rows` of an activation from position `start` on (for a pattern, its query axis)."""
    return act[rows, :, start:] if name == "pattern" else act[rows, start:]


def _shared_forward(
    exp: Experiment, names: Iterable[str], hook: Any, start: int, passes: int
) -> Tensor | None:
    """When the experiment has not yet cached its runs: both runs in one batched forward with
    gradients, kept (detached) as the experiment's cached runs; return the final residuals
    (2 * pairs, d_model), clean rows first, still in the graph. None when the runs are cached
    already, when the prompts differ in length (the experiment runs them apart), or when the
    batch is too large for sharing to pay over `passes` backward passes (`SHARED_ROWS`).

    This is the very forward `Experiment.run` computes, with autograd recording it: one pass
    over the weights gives the cached runs every later sweep reuses and the base run's graph.
    """
    runner = exp.runner
    if passes * exp.n_pairs * (int(exp.clean_tokens.shape[1]) + start) > SHARED_ROWS:
        return None

    def forward(
        both: Tensor, wanted: set[str], **padding: Any
    ) -> tuple[Tensor, dict[tuple[str, int], Tensor]]:
        cache: dict[tuple[str, int], Tensor] = {}

        def keep(name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
            if name in wanted:
                kept = act
                if name == "rot_k" and act.shape[2] != runner.n_kv_heads:
                    # keys the gradient run made per query head: the cache keeps the model's
                    # own key/value heads (the copies of a group are equal)
                    kept = act[:, :, :: act.shape[2] // runner.n_kv_heads]
                cache[(name, layer)] = kept.detach()
            return hook(name, layer, act, pos0)

        x = runner.embed(both, **padding).requires_grad_(True)
        return runner.run(x, hook=keep, last_only=False, **padding), cache

    return exp.run_both_with(names, forward)


def gradient_run(
    exp: Experiment,
    which: str,
    metric: str | None = None,
    names: Iterable[str] | None = None,
    *,
    start: int | None = None,
    drop_layers: Iterable[int] = (),
    inputs: Tensor | None = None,
    keep: Iterable[str] = (),
    last_only: bool = False,
    kv_per_query_head: bool = False,
    intervene: Any = None,
) -> GradientRun:
    """Run the clean or corrupted run with gradients; return every hooked activation in `names`
    (default: all) and the gradient of the metric (mean over pairs) with respect to it.

    The run covers positions from `start` (default: the first position where the prompts
    differ). If the experiment has not cached its runs yet, both are computed in one batched
    forward that autograd records, and kept as the experiment's cached runs: the base run's
    graph and every later sweep's cache from one pass over the weights. Otherwise the run
    starts at `start` from the cached run's residual stream, keys and values. `inputs`
    (rows, positions start.., d_model) replaces layer 0's residual stream there, e.g. EAP-IG's
    interpolated embeddings; rows are any number of copies of the pairs (row r is pair
    r % pairs), and the gradient is of the metric's mean over every row. `drop_layers` adds
    GradDrop's backward passes, one per layer, on the same forward graph. `keep` names the
    hook points the experiment's cached runs must hold afterwards (for the caller's own use of
    them; a shared pass also keeps `names`). With
    `last_only`, a run from the cache computes the last layer at the final position alone (the
    one the metric reads): that layer's activations from the attention pattern on (its query
    axis), z, attn_out, resid_mid, mlp_out and resid_post, then cover only that position.
    With `kv_per_query_head` (grouped-query attention), k and v are repeated for each query
    head of their group before attention reads them (`actpatch.arch.forward`), so their
    gradients are per query head: the ungrouped convention of edge methods. `mlp_in` gets its
    own gradient (the MLP's input alone), not the residual stream's it aliases. `intervene`, a
    hook (`actpatch.arch.Hook`) run on every hook point before anything is captured there,
    changes the run itself (EAP-IG over activations sets writers' outputs with it); it needs
    `inputs`.
    """
    check_backend(exp)
    metric = check_gradient_metric(metric, exp.wrong_ids is not None)
    if which not in ("clean", "corrupt"):
        raise InputError(f"Unknown run {which!r}: choose 'clean' or 'corrupt'.", field="run")
    wanted = tuple(dict.fromkeys(names if names is not None else hook_names(exp)))
    drop_layers = tuple(drop_layers)
    runner = exp.runner
    _differentiable(runner)
    tokens = exp.clean_tokens if which == "clean" else exp.corrupt_tokens
    n_pos = int(tokens.shape[1])
    if start is None:
        start = min(exp.first_diff, n_pos - 1)
    state = _DropState()
    captured: dict[tuple[str, int], Tensor] = {}

    def capture(name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        if intervene is not None:
            act = intervene(name, layer, act, pos0)
        if kv_per_query_head and name in ("k", "v"):
            act = per_query_head(act, runner.n_heads)
        if name == "mlp_in" and name in wanted:
            act = act.view_as(act)  # a node of its own: only the MLP reads it
        if name in wanted:
            captured[(name, layer)] = act
        if drop_layers and name in RESIDUAL_WRITES:
            return _GradGate.apply(act, state, layer)
        return act

    with torch.enable_grad():
        # rows of `which` in the captured activations, and the position they start at
        rows, first = slice(None), 0
        final = None
        if intervene is not None and inputs is None:
            raise ValueError("gradient_run: intervene needs inputs (the rows it acts on)")
        if inputs is None:
            final = _shared_forward(exp, (*wanted, *keep), capture, start, 1 + len(drop_layers))
        if final is not None:
            n = exp.n_pairs
            rows = slice(0, n) if which == "clean" else slice(n, 2 * n)
            final, first = final[rows], start
        else:
            cached = exp.run(which, keep)
            past = _past(runner, cached.cache, start)
            x = cached.cache[("resid_pre", 0)][:, start:] if inputs is None else inputs
            x = x.clone().requires_grad_(True)
            final = runner.run(x, 0, start, past, hook=capture, last_only=last_only, **exp.padding)
        values = _pair_metric(exp, final, metric)
        total = values.mean()
        keys = list(captured)
        inputs_ = [captured[k] for k in keys]
        passes: list[int | None] = [None, *drop_layers]
        grads: list[dict[tuple[str, int], Tensor]] = []
        for i, layer in enumerate(passes):
            state.layer = layer
            got = torch.autograd.grad(
                total, inputs_, retain_graph=i < len(passes) - 1, allow_unused=True
            )
            grads.append(
                {
                    k: _cut(k[0], g if g is not None else torch.zeros_like(a), rows, first).detach()
                    for k, a, g in zip(keys, inputs_, got, strict=True)
                }
            )
    return GradientRun(
        which=which,
        metric=metric,
        start=start,
        tokens=tokens,
        values=values.detach(),
        activations={k: _cut(k[0], a, rows, first).detach() for k, a in captured.items()},
        gradients=grads[0],
        dropped=dict(zip(drop_layers, grads[1:], strict=True)),
    )


# -- the estimate of one component ---------------------------------------------------------------


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
class _Work:
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

    def aligned(self) -> Tensor:
        """Which base positions start.. have a counterpart in the source run. (n,) bool"""
        return torch.tensor(
            [self.setup.aligned(p) for p in range(self.start, self.n_pos)],
            device=self.exp.model.device,
        )

    def source(self, name: str, layer: int) -> Tensor:
        """The source run's activation at base positions start.. (zero where unaligned)."""
        src = self.setup.source.cache[(name, layer)]
        if self.exp.alignment.identity:
            return src[:, self.start :]
        out = torch.zeros_like(self.grad.activations[(name, layer)])
        for b, s in self.setup.base_to_source.items():
            if b >= self.start:
                out[:, b - self.start] = src[:, s]
        return out

    def delta(self, name: str, layer: int) -> Tensor:
        """source - base at positions start.., zero where unaligned. (pairs, n, ...)"""
        base = self.grad.activations[(name, layer)]
        diff = self.source(name, layer) - base
        shape = (1, diff.shape[1]) + (1,) * (diff.dim() - 2)
        return diff * self.aligned().reshape(shape)

    def grads(self, name: str, layer: int) -> Tensor:
        """The gradient sets at one hook point, stacked. (sets, pairs, n, ...)"""
        key = (name, layer)
        sets = [self.grad.gradients[key]]
        sets += [self.grad.dropped[d][key] for d in sorted(self.grad.dropped)]
        return torch.stack(sets)


def _linear(work: _Work, comp: Component, layer: int) -> Tensor:
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


def _pad(work: _Work, values: Tensor) -> Tensor:
    """Per-position values over start.. as every position: 0 before start (identical runs)."""
    shape = list(values.shape)
    shape[2] = work.start
    return torch.cat([values.new_zeros(shape), values], dim=2)


def _qk_fixed(work: _Work, comp: Component, layer: int) -> Tensor:
    """AtP* with the QK fix: the attention pattern recomputed exactly with patched queries or
    keys, its change linearized. (sets, pairs, *cell axes)"""
    exp, runner = work.exp, work.exp.runner
    n_pairs, start = exp.n_pairs, work.start
    base_q = work.grad.activations[(comp.hook, layer)]  # (pairs, n, head, d_head)
    n, n_heads = base_q.shape[1], base_q.shape[2]
    aligned = work.aligned()
    source = work.source(comp.hook, layer)
    pattern = work.grad.activations[("pattern", layer)]  # (pairs, head, n, keys)
    g = work.grads("pattern", layer)  # (sets, pairs, head, n, keys)
    x = work.grad.activations[("resid_pre", layer)]
    past = _past(runner, work.setup.base.cache, start)[layer]

    # The probe rows: one per head (every aligned position patched), or, for keys by position,
    # one per (position, head). A query's patch moves only its own row of the pattern, so one
    # row per head serves queries by position too.
    rows: list[tuple[int | None, int]]
    if comp.hook == "k" and comp.by_pos:
        rows = [(p, h) for p in range(n) if bool(aligned[p]) for h in range(n_heads)]
    else:
        rows = [(None, h) for h in range(n_heads)]
    masks = torch.zeros(len(rows), n, n_heads, dtype=torch.bool, device=x.device)
    for i, (p, h) in enumerate(rows):
        if p is None:
            masks[i, :, h] = aligned
        else:
            masks[i, p, h] = True
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
    for (p, h), e in zip(rows, effects, strict=True):
        assert p is not None
        out[:, :, start + p, h] = e.sum(-1)
    return out


def _component(work: _Work, comp: Component, qk_fix: bool) -> Tensor:
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


# -- comparing with the exact answer ---------------------------------------------------------------


def _ranks(values: Tensor) -> Tensor:
    """Ranks (0-based, ties averaged) of a 1-D tensor, for Spearman's correlation."""
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype)
    for v in values.unique():
        same = values == v
        if int(same.sum()) > 1:
            ranks[same] = ranks[same].mean()
    return ranks


def _pearson(a: Tensor, b: Tensor) -> float | None:
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else None


def _cells(t: Tensor) -> list[tuple[int, ...]]:
    return [
        tuple(int(i) for i in idx) for idx in torch.nonzero(torch.ones_like(t, dtype=torch.bool))
    ]


def agreement(
    estimate: Tensor, exact: Tensor, score: Tensor | None = None, top_k: int = 10
) -> dict[str, Any]:
    """How far an estimate is from the exact effects, cell by cell.

    Over the cells both define (not NaN): Pearson and Spearman correlation; sign agreement
    over the cells whose exact effect is at least 1% of the largest; the overlap of the top
    `top_k` cells by |exact| and by the estimate's ranking score (|estimate| unless `score` is
    given); and the cells the estimate misses most (largest |exact - estimate|).
    """
    score = estimate.abs() if score is None else score
    valid = ~(estimate.isnan() | exact.isnan())
    cells = [c for c in _cells(estimate) if bool(valid[c])]
    est = torch.tensor([float(estimate[c]) for c in cells], dtype=torch.float64)
    ex = torch.tensor([float(exact[c]) for c in cells], dtype=torch.float64)
    sc = torch.tensor([float(score[c]) for c in cells], dtype=torch.float64)
    out: dict[str, Any] = {"cells": len(cells)}
    if not cells:
        return {**out, "pearson": None, "spearman": None, "sign_agreement": None}
    out["pearson"] = _pearson(est, ex)
    out["spearman"] = _pearson(_ranks(est), _ranks(ex))
    big = ex.abs() >= 0.01 * float(ex.abs().max()) if float(ex.abs().max()) > 0 else ex != ex
    n_big = int(big.sum())
    out["sign_cells"] = n_big
    out["sign_agreement"] = (
        float((torch.sign(est[big]) == torch.sign(ex[big])).double().mean()) if n_big else None
    )
    k = min(top_k, len(cells))
    top_exact = set(ex.abs().argsort(descending=True)[:k].tolist())
    top_est = set(sc.argsort(descending=True)[:k].tolist())
    out["top_k"] = k
    out["top_k_overlap"] = len(top_exact & top_est) / k if k else None
    out["top_exact"] = [list(cells[i]) for i in ex.abs().argsort(descending=True)[:k].tolist()]
    out["top_estimate"] = [list(cells[i]) for i in sc.argsort(descending=True)[:k].tolist()]
    error = (ex - est).abs()
    out["misses"] = [
        {"cell": list(cells[i]), "estimate": float(est[i]), "exact": float(ex[i])}
        for i in error.argsort(descending=True)[:k].tolist()
        if float(error[i]) > 0
    ]
    return out


# -- the public entry points -----------------------------------------------------------------------


def attribute(
    exp: Experiment,
    component: str = "z",
    method: str = "atp",
    direction: str = "denoising",
    metric: str | None = None,
    *,
    compare: bool = False,
    verify: int = 0,
    graddrop: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> AttributionResult:
    """Estimate every cell of `component` by attribution patching (AtP or AtP*).

    `estimate` has the axes of the exact sweep of the same component, in raw metric units (the
    predicted metric change); `normalized` divides it by clean - corrupt. With `compare`, the
    exact sweep runs too and `agreement` measures the estimate against it; `verify=K` patches
    the K cells ranked first exactly. `graddrop=False` keeps AtP*'s QK fix only. `max_memory`
    bounds the activations of one batch of those exact patches (as in `sweep`).
    """
    return attribute_many(
        exp,
        [component],
        method,
        direction,
        metric,
        compare=compare,
        verify=verify,
        graddrop=graddrop,
        progress=progress,
        should_stop=should_stop,
        max_memory=max_memory,
    )[0]


def attribute_many(
    exp: Experiment,
    components: Sequence[str],
    method: str = "atp",
    direction: str = "denoising",
    metric: str | None = None,
    *,
    compare: bool = False,
    verify: int = 0,
    graddrop: bool = True,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> list[AttributionResult]:
    """`attribute` for several components, sharing one forward and backward pass."""
    t0 = time.perf_counter()
    method = check_method(method)
    check_backend(exp)
    metric = check_gradient_metric(metric, exp.wrong_ids is not None)
    if verify < 0:
        raise InputError("verify must be 0 or a positive number of cells.", field="verify")
    budget = parse_memory(max_memory)
    comps = [get_component(c) for c in components]
    if not comps:
        raise InputError("Give at least one component to attribute.", field="component")
    direction = check_direction(direction)
    for comp in comps:
        check_component(exp, comp)
    star = method == "atp*"
    names = {c.hook for c in comps}
    if star and names & {"q", "k"}:
        names |= {"pattern", "resid_pre"}
    n_layers = exp.runner.n_layers
    drop = tuple(range(n_layers)) if star and graddrop and n_layers > 1 else ()

    # The base run with gradients; if the experiment has not cached its runs yet, the same
    # forward caches both (every later sweep reuses them).
    base_which = "corrupt" if direction == "denoising" else "clean"
    grad = gradient_run(exp, base_which, metric, names, drop_layers=drop, keep=names)
    setups = [prepare(exp, c.name, metric, direction) for c in comps]
    setup = setups[0]

    # progress in steps: the backward passes, one per component, then the exact cells
    steps = {"done": 0, "total": 1 + len(drop) + len(comps)}
    exact_total = 0
    if compare:
        exact_total = sum(_todo_count(s) for s in setups)
    steps["total"] += exact_total + verify * len(comps)

    def step(n: int = 1) -> None:
        if should_stop is not None and should_stop():
            raise CancelledError("The attribution was cancelled.")
        steps["done"] += n
        if progress is not None:
            progress(min(steps["done"], steps["total"]), steps["total"])

    if progress is not None:
        progress(0, steps["total"])
    step(1 + len(drop))
    work = _Work(exp, setup, grad)

    clean_value = float(metric_values(setup, exp.run("clean").final)[0])
    corrupt_value = float(metric_values(setup, exp.run("corrupt").final)[0])
    warnings = guardrails.check(exp, metric, clean_value, corrupt_value)
    results = []
    for comp, comp_setup in zip(comps, setups, strict=True):
        work.setup = comp_setup
        with torch.no_grad():
            per_pair = _component(work, comp, qk_fix=star)
            plain = (
                per_pair
                if not star or comp.hook not in ("q", "k")
                else _component(work, comp, qk_fix=False)
            )
        estimate = _mask_cells(work, comp, per_pair[0].sum(0))
        atp = _mask_cells(work, comp, plain[0].sum(0))
        if star and drop:
            score = _mask_cells(work, comp, _graddrop(per_pair, comp, n_layers))
        else:
            score = estimate.abs()
        step()
        results.append(
            _result(
                exp,
                comp_setup,
                method,
                estimate,
                score,
                atp if star else None,
                clean_value,
                corrupt_value,
                warnings,
                graddrop=bool(drop),
            )
        )

    for i, (res, comp_setup) in enumerate(zip(results, setups, strict=True)):
        exact = None
        if compare:
            exact = _exact(comp_setup, _sub(step), should_stop, max_memory)
        verified = _verify(comp_setup, res, verify, exact, should_stop, budget) if verify else []
        if verify:
            step(verify)
        results[i] = _finish(res, exact, verified, t0)
    return results


def _todo_count(setup: Setup) -> int:
    comp = setup.component
    return sum(
        1
        for c in all_cells(setup)
        if not comp.by_pos or (setup.aligned(c[1]) and c[1] >= setup.start)
    )


def _sub(step: Callable[[int], None]) -> Progress:
    """A sweep's progress (done, total cells) as steps of ours."""
    seen = {"done": 0}

    def report(done: int, total: int) -> None:
        if done > seen["done"]:
            step(done - seen["done"])
            seen["done"] = done

    return report


def _mask_cells(work: _Work, comp: Component, values: Tensor) -> Tensor:
    """NaN where the exact sweep leaves a cell unpatched (a position with no counterpart)."""
    values = values.detach().float().cpu()
    if comp.by_pos:
        for p in range(work.n_pos):
            if not work.setup.aligned(p):
                values[:, p] = float("nan")
    return values


def _result(
    exp: Experiment,
    setup: Setup,
    method: str,
    estimate: Tensor,
    score: Tensor,
    atp: Tensor | None,
    clean: float,
    corrupt: float,
    warnings: list[Any],
    *,
    graddrop: bool,
) -> AttributionResult:
    comp = setup.component
    n_pos = setup.n_positions
    gap = clean - corrupt
    normalized = (
        estimate / gap
        if is_normalizable(clean, corrupt)
        else torch.full_like(estimate, float("nan"))
    )
    note = None
    if not is_normalizable(clean, corrupt):
        note = (
            f"The clean and corrupted runs give the same {setup.metric} ({clean:.6g}), so the "
            "normalized estimate (a fraction of clean - corrupt) is undefined; only raw values "
            "are shown."
        )
    corrections: list[dict[str, Any]] = []
    if atp is not None:
        change = (score - atp.abs()).abs().nan_to_num(0.0)
        tol = 1e-6 * max(1.0, float(score.nan_to_num(0.0).abs().max()))
        for idx in change.flatten().argsort(descending=True)[:10].tolist():
            cell = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), change.shape))
            if float(change[cell]) <= tol:
                break
            corrections.append(
                {
                    "cell": list(cell),
                    "atp": float(atp[cell]),
                    "atp_star": float(estimate[cell]),
                    "score": float(score[cell]),
                }
            )
    return AttributionResult(
        model=exp.model.name,
        component=comp.name,
        method=method,
        metric=setup.metric,
        direction=setup.direction,
        axes=comp.axes,
        clean=clean,
        corrupt=corrupt,
        estimate=estimate,
        normalized=normalized,
        score=score,
        score_kind=(
            "GradDrop: mean over pairs of 1/(L-1) sum_l |AtP*_l| (1/L for the residual stream)"
            if graddrop
            else "|estimate|"
        ),
        tokens=exp.model.to_str_tokens(setup.base.tokens[0]),
        clean_tokens=exp.str_tokens("clean"),
        corrupt_tokens=exp.str_tokens("corrupt"),
        patched_positions=[p for p in range(n_pos) if setup.aligned(p)],
        unpatched_positions=[p for p in range(n_pos) if not setup.aligned(p)],
        identical_positions=list(range(min(exp.first_diff, n_pos))),
        alignment=exp.alignment.to_dict(),
        n_pairs=exp.n_pairs,
        seconds=0.0,
        backend=exp.backend,
        note=note,
        warnings=list(warnings),
        atp=atp,
        corrections=corrections,
    )


def _exact(
    setup: Setup,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> Tensor:
    """The exact metric change of every cell's patch (the sweep's raw - unpatched)."""
    from actpatch.patching.engine import sweep

    result = sweep(
        setup.exp,
        setup.component.name,
        setup.metric,
        setup.direction,
        progress=progress,
        should_stop=should_stop,
        max_memory=max_memory,
    )
    base = result.corrupt if setup.direction == "denoising" else result.clean
    return result.raw - base


def _verify(
    setup: Setup,
    result: AttributionResult,
    k: int,
    exact: Tensor | None,
    should_stop: Callable[[], bool] | None,
    budget: int,
) -> list[dict[str, Any]]:
    """Patch exactly the k cells the estimate ranks first (by `score`); each cell costs one
    batch row. Cells before the first differing position, or without a counterpart, are
    skipped (their exact effect is known: none)."""
    comp = setup.component
    score = result.score.nan_to_num(-1.0)
    order = score.flatten().argsort(descending=True).tolist()
    cells: list[tuple[int, ...]] = []
    for idx in order:
        cell = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), score.shape))
        if comp.by_pos and (not setup.aligned(cell[1]) or cell[1] < setup.start):
            continue
        if math.isnan(float(result.estimate[cell])):
            continue
        cells.append(cell)
        if len(cells) == k:
            break
    values: dict[tuple[int, ...], float] = {}
    if exact is not None:
        values = {c: float(exact[c]) for c in cells}
    elif cells:
        base = setup.base.final
        with torch.inference_mode():
            unpatched = float(metric_values(setup, base)[0])
            chunk = chunk_size(setup, budget)
            for i in range(0, len(cells), chunk):
                part = cells[i : i + chunk]
                final = run_cells(setup, part, setup.start, should_stop=should_stop)
                for cell, v in zip(part, metric_values(setup, final).tolist(), strict=True):
                    values[cell] = v - unpatched
    return [
        {
            "cell": list(c),
            "estimate": float(result.estimate[c]),
            "score": float(result.score[c]),
            "exact": values[c],
        }
        for c in cells
    ]


def _finish(
    result: AttributionResult,
    exact: Tensor | None,
    verified: list[dict[str, Any]],
    t0: float,
) -> AttributionResult:
    extra: dict[str, Any] = {"verified": verified, "seconds": time.perf_counter() - t0}
    if exact is not None:
        gap = result.clean - result.corrupt
        extra["exact"] = exact
        extra["exact_normalized"] = (
            exact / gap if is_normalizable(result.clean, result.corrupt) else exact * float("nan")
        )
        extra["agreement"] = agreement(result.estimate, exact, result.score)
        if result.atp is not None:
            extra["agreement_atp"] = agreement(result.atp, exact)
            extra["corrections"] = [
                {**c, "exact": float(exact[tuple(c["cell"])])} for c in result.corrections
            ]
    return dataclasses.replace(result, **extra)


__all__ = [
    "ATTRIBUTION_METHODS",
    "GRADIENT_METRICS",
    "GradientRun",
    "agreement",
    "attribute",
    "attribute_many",
    "check_backend",
    "check_gradient_metric",
    "check_method",
    "gradient_run",
    "hook_names",
]
