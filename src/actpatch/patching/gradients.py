"""The gradient pass: one run of a model with gradients, the project's only one.

Attribution patching (`actpatch.patching.attribution`) and edge attribution
(`actpatch.patching.edges`) both estimate patches from the gradient of the metric with respect
to activations. `gradient_run(exp, which, metric, names)` runs the clean or corrupted run with
gradients and returns a `GradientRun`: for each hooked activation `(name, layer)` its value and
the gradient of the metric (mean over pairs) with respect to it, over positions `start..` (the
query axis, for patterns; the key axis is whole). `drop_layers` adds GradDrop's gradients (the
backward pass repeated with one layer's residual contribution cut); `inputs` replaces the
layer-0 residual stream (EAP-IG's interpolated embeddings); `keep` names what the cached runs
must hold afterwards.

Cost. On a cold experiment (its runs not yet cached) and a small batch, the experiment's cached
forward of both runs *is* the gradient pass: autograd records it, its activations are kept as
the experiment's cached runs (shared with every later sweep), and the backward runs from the
metric of the base rows. On a warm experiment, or a batch large enough that a backward over both
runs' every row costs more than a second pass over the weights (`SHARED_ROWS`), the base run is
run once more with gradients from the first position where the prompts differ (earlier positions
are identical in both runs, so no patch there changes anything), its past keys and values from
the cache. All prompt pairs are one batch. Only activations take gradients: the fast path's
weights are detached views that autograd never differentiates. Only the fast path (actpatch's
own forward) computes gradients; the bridge backend is refused with a message. On a model with
`cuda_graphs` on, the pass from the cached runs (`_Pass.from_cache`, forward and backward
passes together) is recorded once per shape and replayed (`actpatch.patching.graphs`), and a
cold experiment's runs are not shared with it: they are a recording of their own.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from actpatch.arch.forward import per_query_head
from actpatch.errors import InputError
from actpatch.patching.experiment import Experiment
from actpatch.patching.metrics import from_final
from actpatch.patching.options import GRADIENT_METRICS, check_metric

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Float

# The hook points whose gradient GradDrop zeroes: a layer's contribution to the residual stream.
RESIDUAL_WRITES = ("attn_out", "mlp_out")
# The gradient pass on a cold experiment can also be its cached forward of both runs (one pass
# over the weights instead of two), but its backward then runs over every row of both runs:
# pairs * (positions + start) more rows than the backward from `start` of the base run alone,
# in each backward pass (GradDrop adds one per layer). It pays while those rows cost less than
# reading the weights once: on CPU (GPT-2 small, 1 or 2 threads; benchmarks/README.md) about 32
# rows -- one pair of an IOI prompt, not two, and not with GradDrop's passes.
SHARED_ROWS = 32


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
    inputs: Float[Tensor, "rows positions d_model"] | None = None,
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
    if intervene is not None and inputs is None:
        raise ValueError("gradient_run: intervene needs inputs (the rows it acts on)")
    runner = exp.runner
    _differentiable(runner)
    tokens = exp.clean_tokens if which == "clean" else exp.corrupt_tokens
    n_pos = int(tokens.shape[1])
    if start is None:
        start = min(exp.first_diff, n_pos - 1)
    wanted = tuple(dict.fromkeys(names if names is not None else hook_names(exp)))
    spec = _Pass(
        runner, metric, wanted, start, tuple(drop_layers), last_only, kv_per_query_head, intervene
    )
    # With CUDA graphs, the pass from the cached runs is recorded (`actpatch.patching.graphs`);
    # the runs themselves are then a recording too, so the shared forward is not used.
    graphed = exp.model.cuda_graphs and intervene is None
    with torch.enable_grad():
        final = None
        state, captured = _DropState(), dict[tuple[str, int], Tensor]()
        if inputs is None and not graphed:
            hook = spec.capture_hook(captured, state)
            final = _shared_forward(exp, (*wanted, *keep), hook, start, 1 + len(spec.drop_layers))
        if final is not None:
            n = exp.n_pairs
            rows = slice(0, n) if which == "clean" else slice(n, 2 * n)
            ids = {"target_ids": exp.target_ids, "wrong_ids": exp.wrong_ids}
            values, activations, grads = spec.backward(final[rows], captured, state, ids, rows)
        else:
            tensors = spec.tensors(exp, exp.run(which, keep).cache, inputs)
            if graphed:
                from actpatch.patching.graphs import replay

                values, activations, grads = replay(runner, spec.key(), tensors, spec.from_cache)
            else:
                values, activations, grads = spec.from_cache(tensors)
    return GradientRun(
        which=which,
        metric=metric,
        start=start,
        tokens=tokens,
        values=values,
        activations=activations,
        gradients=grads[0],
        dropped=dict(zip(spec.drop_layers, grads[1:], strict=True)),
    )


Grads = list[dict[tuple[str, int], Tensor]]


@dataclass(frozen=True)
class _Pass:
    """One gradient pass's settings: everything it computes besides its tensors (what a CUDA
    graph of it records once and replays)."""

    runner: Any
    metric: str
    wanted: tuple[str, ...]
    start: int
    drop_layers: tuple[int, ...]
    last_only: bool
    kv_per_query_head: bool
    intervene: Any

    def key(self) -> tuple[Any, ...]:
        """What a recording of the pass depends on besides its tensors' shapes."""
        return ("gradient", self.metric, self.wanted, self.start, self.drop_layers,
                self.last_only, self.kv_per_query_head)  # fmt: skip

    def capture_hook(self, captured: dict[tuple[str, int], Tensor], state: _DropState) -> Any:
        """The hook that keeps each wanted activation (in `captured`) as a node of the graph."""
        runner, wanted = self.runner, self.wanted

        def capture(name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
            if self.intervene is not None:
                act = self.intervene(name, layer, act, pos0)
            if self.kv_per_query_head and name in ("k", "v"):
                act = per_query_head(act, runner.n_heads)
            if name == "mlp_in" and name in wanted:
                act = act.view_as(act)  # a node of its own: only the MLP reads it
            if name in wanted:
                captured[(name, layer)] = act
            if self.drop_layers and name in RESIDUAL_WRITES:
                return _GradGate.apply(act, state, layer)
            return act

        return capture

    def tensors(
        self, exp: Experiment, cache: dict[tuple[str, int], Tensor], inputs: Tensor | None
    ) -> dict[str, Tensor]:
        """What a pass from the cached run reads: layer 0's residual stream from `start` (or
        `inputs`), each layer's past keys and values, the padding and the answers."""
        x = cache[("resid_pre", 0)][:, self.start :] if inputs is None else inputs
        tensors = {"x": x, **exp.padding, "target_ids": exp.target_ids}
        if exp.wrong_ids is not None:
            tensors["wrong_ids"] = exp.wrong_ids
        for layer, (k, v) in enumerate(self.runner.past_kv(cache, self.start)):
            tensors[f"past_k.{layer}"], tensors[f"past_v.{layer}"] = k, v
        return tensors

    def from_cache(self, tensors: dict[str, Tensor]) -> tuple[Tensor, dict[Any, Tensor], Grads]:
        """The pass from `start`, reading only `tensors` (`tensors`): the metric per row, the
        wanted activations and their gradients (and GradDrop's)."""
        runner = self.runner
        state, captured = _DropState(), dict[tuple[str, int], Tensor]()
        # plain copies: autograd may save them (the cache holds inference tensors)
        past = [
            (tensors[f"past_k.{layer}"].clone(), tensors[f"past_v.{layer}"].clone())
            for layer in range(runner.n_layers)
        ]
        x = tensors["x"].clone().requires_grad_(True)
        padding = {"pad": tensors["pad"]} if "pad" in tensors else {}
        final = runner.run(
            x,
            0,
            self.start,
            past,
            hook=self.capture_hook(captured, state),
            last_only=self.last_only,
            **padding,
        )
        return self.backward(final, captured, state, tensors, slice(None), first=0)

    def backward(
        self,
        final: Tensor,
        captured: dict[tuple[str, int], Tensor],
        state: _DropState,
        ids: dict[str, Any],
        rows: slice,
        first: int | None = None,
    ) -> tuple[Tensor, dict[Any, Tensor], Grads]:
        """The metric of each final residual (row r is pair r % pairs), the captured activations
        (rows `rows`, positions from `first`; default `start`) and the metric's gradient with
        respect to each, once per backward pass (the plain one, then GradDrop's)."""
        first = self.start if first is None else first
        values = from_final(
            self.metric, self.runner.unembed, final, ids["target_ids"], ids.get("wrong_ids")
        )
        total = values.mean()
        keys = list(captured)
        inputs = [captured[k] for k in keys]
        passes: list[int | None] = [None, *self.drop_layers]
        grads: Grads = []
        for i, layer in enumerate(passes):
            state.layer = layer
            got = torch.autograd.grad(
                total, inputs, retain_graph=i < len(passes) - 1, allow_unused=True
            )
            grads.append(
                {
                    k: _cut(k[0], g if g is not None else torch.zeros_like(a), rows, first).detach()
                    for k, a, g in zip(keys, inputs, got, strict=True)
                }
            )
        activations = {k: _cut(k[0], a, rows, first).detach() for k, a in captured.items()}
        return values.detach(), activations, grads


__all__ = [
    "RESIDUAL_WRITES",
    "SHARED_ROWS",
    "GradientRun",
    "check_backend",
    "check_gradient_metric",
    "gradient_run",
    "hook_names",
]
