"""Edge attribution: EAP and EAP-IG, a score for every edge of the graph from a few passes.

Exact edge patching (`actpatch.patching.circuit.verify_edges`) costs a run per edge, and GPT-2
small has 32,491 edges. Edge attribution patching (EAP; Syed, Rager and Conmy 2023) estimates
all of them at once with a first-order Taylor expansion. For the edge writer -> reader:

    score = (a_source - a_base)[writer] . d metric / d (reader's input), on the base run,

summed over positions (and averaged over prompt pairs). Denoising (the default) takes the
clean run as source and the corrupted run as base, as TransformerLens's `attribution_patch`
does: a positive score says patching that edge from the corrupted run toward the clean one
moves the metric up. The writer's difference is its output in the residual stream (a head's
z @ W_O; an MLP's output; the embeddings for `input`); the reader's input gradient is taken
per head for q, k and v (`actpatch.patching.split`), before the layer norm, as EAP-IG's graph
defines it. Cost: one forward and one backward pass (`gradients.gradient_run`, the project's
one gradient pass: on a cold experiment and one pair, the same forward also computes the two
cached runs the writers' differences come from).

A gradient at one point can mislead when the metric is far from linear between the runs (a
saturated softmax, an attention pattern that switches). EAP-IG (Hanna, Pezzelle and Belinkov
2024, "Have Faith in Faithfulness") integrates the gradient along the straight path between
the runs' input embeddings: the mean over `steps` points base + k/steps * (source - base),
k = 0 .. steps-1 (hannamw/EAP-IG's discretization), in one batched forward and backward (a
`gradient_run` whose layer-0 residual stream is the interpolated embeddings). With one step it
is EAP.

MIB's second variant, EAP-IG over *activations* (`method="eap-ig-act"`; hannamw/EAP-IG's
`get_scores_ig_activations`), moves one group of writers at a time instead of the embeddings:
the input, one layer's attention (all its heads: their z), or one layer's MLP. For each group
and each of the `steps` points, the base run is run with that group's output set to
base + k/steps * (source - base) (k = 0 .. steps-1; a constant, so no gradient passes through
it) and everything downstream recomputed; every reader's input gradient is averaged over all
(2 * n_layers + 1) * steps runs, and each edge scored with it as in EAP. It costs that many
forward and backward passes (batched), against `steps` for the embedding variant.

Only positions from the first token where the prompts differ are run: before it the runs are
identical, every writer's difference is zero, and the base run's cached keys and values stand
in for them.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from actpatch.errors import CancelledError, InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.budget import parse_memory
from actpatch.patching.cells import Setup, aligned, metric_values, prepare
from actpatch.patching.circuit import verify_edges
from actpatch.patching.experiment import Experiment, check_experiment
from actpatch.patching.gradients import GradientRun, gradient_run
from actpatch.patching.graph_tables import Graph, graph_for
from actpatch.patching.groups import Progress
from actpatch.patching.options import EDGE_METHODS, check_direction
from actpatch.patching.results.circuits import EdgeCheck, EdgeResult
from actpatch.patching.split import Parts, parts_of

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Float


def writer_deltas(setup: Setup, parts: Parts) -> Float[Tensor, "writers pairs pos d_model"]:
    """Every writer's output difference, source - base, in forward order, from the first
    differing position on. (writers, pairs, pos, d_model)

    Where the attention output is normed after the heads are summed (Gemma 2/3, OLMo 2), a
    head's difference is taken through the norm's Jacobian at the base run:
    J_post(S_base) (o_source - o_base), with S the sum of the heads' outputs before the norm:
    the first-order change the head alone makes to the residual stream."""
    start, n_layers = setup.start, setup.exp.runner.n_layers

    def diff(name: str, layer: int) -> Tensor:
        return (aligned(setup, "source", name, layer) - aligned(setup, "base", name, layer))[
            :, start:
        ]

    out = [diff("resid_pre", 0)]
    for layer in range(n_layers):
        heads = parts.head_out(layer, diff("z", layer))  # (pairs, pos, head, d_model)
        if parts.post_normed[layer]:
            base = parts.head_out(layer, aligned(setup, "base", "z", layer)[:, start:])
            heads = parts.post_norm_jvp(layer, parts.attn_pre(layer, base), heads)
        out += list(heads.unbind(dim=2))
        out.append(diff("mlp_out", layer))
    return torch.stack(out)


# The hook points whose gradients give every reader's input gradient.
READ_AT = ("resid_pre", "q", "k", "v", "mlp_in", "resid_post")


def _readers(
    parts: Parts, graph: Graph, grad: GradientRun, n_pairs: int, scale: float = 1.0
) -> Tensor:
    """Every reader's input gradient from a gradient run over `READ_AT`, summed over the copies
    of the pairs its rows hold (EAP-IG's interpolation points) and times `scale`. In forward
    order (`graph.readers`): (readers, pairs, pos, d_model)"""
    acts, grads = grad.activations, grad.gradients
    n_layers, H, K = parts.runner.n_layers, parts.n_heads, graph.shape.n_kv_readers
    n_pos, d_model = acts[("resid_pre", 0)].shape[1:]
    x = acts[("resid_pre", 0)]
    total = x.new_empty(len(graph.readers), n_pairs, n_pos, d_model, dtype=torch.float32)
    reader = 0
    for layer in range(n_layers):
        q, k, v = parts.head_input_grads(
            layer,
            acts[("resid_pre", layer)],
            grads[("q", layer)],
            grads[("k", layer)],
            grads[("v", layer)],
        )  # (inputs, rows, pos, d_model) each
        for g, n in ((q, H), (k, K), (v, K)):
            total[reader : reader + n] = g.reshape(n, -1, n_pairs, n_pos, d_model).sum(1)
            reader += n
        mlp = grads[("mlp_in", layer)]  # the MLP's input alone (gradient_run's own node)
        total[reader] = _over_steps(_pad(mlp, n_pos), n_pairs)
        reader += 1
    total[reader] = _over_steps(_pad(grads[("resid_post", n_layers - 1)], n_pos), n_pairs)
    return total if scale == 1.0 else total.mul_(scale)


def _ungrouped_gqa(graph: Graph) -> bool:
    """Whether the gradient run must repeat keys and values per query head (ungrouped readers
    of a model whose heads share them)."""
    shape = graph.shape
    return shape.n_kv_heads != shape.n_heads and not shape.grouped


def reader_grads(
    setup: Setup,
    parts: Parts,
    graph: Graph,
    alphas: list[float],
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> Tensor:
    """d metric / d (each reader's input), summed over the interpolation points `alphas` (the
    input embeddings at base + alpha * (source - base)), averaged over them and over pairs.
    Readers in forward order (`graph.readers`): (readers, pairs, pos, d_model).

    Each batch of points is one `gradient_run` of the base run with its layer-0 residual
    stream replaced by the interpolated embeddings."""
    items = [(("input", 0), alpha) for alpha in alphas]
    return _points_grads(setup, parts, graph, items, progress, should_stop, max_memory)


def activation_grads(
    setup: Setup,
    parts: Parts,
    graph: Graph,
    steps: int,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> Tensor:
    """d metric / d (each reader's input), averaged over EAP-IG-activations' runs: for every
    writer group (the input; each layer's attention; each layer's MLP) and every point
    k/steps, k = 0 .. steps-1, the base run with that group's output set to
    base + k/steps * (source - base). Readers in forward order: (readers, pairs, pos, d_model)."""
    groups = [("input", 0)]
    for layer in range(setup.exp.runner.n_layers):
        groups += [("z", layer), ("mlp_out", layer)]
    items = [(g, k / steps) for g in groups for k in range(steps)]
    return _points_grads(setup, parts, graph, items, progress, should_stop, max_memory)


Item = tuple[tuple[str, int], float]  # (writer group: hook name and layer, point on the path)


def _points_grads(
    setup: Setup,
    parts: Parts,
    graph: Graph,
    items: list[Item],
    progress: Callable[[float], None] | None,
    should_stop: Callable[[], bool] | None,
    max_memory: int | str | None,
) -> Tensor:
    """Reader gradients averaged over runs of the base run, one per item: the item's writer
    group (`("input", 0)`: the embeddings; `("z", L)`: layer L's attention; `("mlp_out", L)`)
    set to base + point * (source - base). Batched: as many items a run as `max_memory` holds."""
    exp, runner = setup.exp, setup.exp.runner
    n_pairs, start = exp.n_pairs, setup.start
    n_pos = setup.n_positions - start
    base0 = aligned(setup, "base", "resid_pre", 0)[:, start:]
    delta0 = aligned(setup, "source", "resid_pre", 0)[:, start:] - base0
    # bytes one item holds: what the backward keeps, per layer and position
    size = torch.finfo(runner.dtype).bits // 8
    per_item = size * n_pairs * n_pos * runner.n_layers * runner.d_model * (16 + 3 * runner.n_heads)
    chunk = max(1, parse_memory(max_memory, exp.model.device) // max(1, per_item))
    base_which = "corrupt" if setup.direction == "denoising" else "clean"
    diffs: dict[tuple[str, int], tuple[Tensor, Tensor]] = {}

    def diff(name: str, layer: int) -> tuple[Tensor, Tensor]:
        if (name, layer) not in diffs:
            base = aligned(setup, "base", name, layer)[:, start:]
            diffs[(name, layer)] = (base, aligned(setup, "source", name, layer)[:, start:] - base)
        return diffs[(name, layer)]

    total: Tensor | None = None
    for first in range(0, len(items), chunk):
        part = items[first : first + chunk]
        if should_stop is not None and should_stop():
            raise CancelledError("Edge attribution was cancelled.")
        with torch.no_grad():
            alpha = torch.tensor(
                [point if group[0] == "input" else 0.0 for group, point in part],
                dtype=base0.dtype,
            ).to(base0.device)
            x0 = (base0[None] + alpha[:, None, None, None] * delta0[None]).reshape(
                len(part) * n_pairs, n_pos, -1
            )
        moved = any(group[0] != "input" for group, _ in part)
        grad = gradient_run(
            exp,
            base_which,
            setup.metric,
            READ_AT,
            start=start,
            inputs=x0,
            last_only=True,
            kv_per_query_head=_ungrouped_gqa(graph),
            intervene=_Interpolate(part, n_pairs, diff) if moved else None,
        )
        # gradient_run's gradient is of the mean over its rows (items x pairs); the mean over
        # every item is this batch's share of it
        got = _readers(parts, graph, grad, n_pairs, len(part) / len(items))
        # in place, and nothing of this batch kept into the next: one (readers, pairs, pos,
        # d_model) tensor between batches, two at most, where `total + got` held three
        del grad
        if total is None:
            total = got
        else:
            total += got
        del got
        if progress is not None:
            progress((first + len(part)) / len(items))
    assert total is not None
    return total


class _Interpolate:
    """The hook that sets, in each row of a batch of (group, point) items times pairs, that
    item's writer group's output to base + point * (source - base)."""

    def __init__(
        self,
        items: list[Item],
        n_pairs: int,
        diff: Callable[[str, int], tuple[Tensor, Tensor]],
    ) -> None:
        self.items, self.n_pairs, self.diff = items, n_pairs, diff

    def __call__(self, name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        if name not in ("z", "mlp_out"):
            return act
        mine = [i for i, (g, _) in enumerate(self.items) if g == (name, layer)]
        if not mine:
            return act
        base, delta = self.diff(name, layer)
        n = act.shape[1]  # the last layer runs the final position alone
        base, delta = base[:, -n:], delta[:, -n:]
        rows = act.reshape(len(self.items), self.n_pairs, *act.shape[1:])
        out = []
        for i in range(len(self.items)):
            if i in mine:
                out.append((base + self.items[i][1] * delta).detach())
            else:
                out.append(rows[i])
        return torch.stack(out).reshape(act.shape)


def _pad(grad: Tensor, n_pos: int) -> Tensor:
    """A gradient over the last positions only (the last layer runs the final position alone),
    padded with zeros in front to every position."""
    missing = n_pos - grad.shape[1]
    if missing == 0:
        return grad
    return torch.cat([grad.new_zeros(grad.shape[0], missing, *grad.shape[2:]), grad], dim=1)


def _over_steps(grad: Tensor, n_pairs: int) -> Tensor:
    """Summed over the interpolation points: (steps * pairs, ...) -> (pairs, ...)."""
    return grad.reshape(-1, n_pairs, *grad.shape[1:]).sum(dim=0)


def edge_attribution(
    exp: Experiment,
    method: str = "eap-ig",
    *,
    steps: int = 5,
    metric: str | None = None,
    direction: str = "denoising",
    by_pos: bool = False,
    verify: int = 0,
    kv: str = "ungrouped",
    max_memory: int | str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EdgeResult:
    """Score every edge with EAP or EAP-IG; with `verify` = K, also patch the top K exactly.

    `steps` is EAP-IG's number of interpolation points (EAP uses one: the base run). Scores sum
    over positions; `by_pos` also keeps them per position of the base prompt. `kv` is the
    key/value convention of a grouped-query model's graph (`options.KV_CONVENTIONS`).
    `max_memory` bounds what one batched gradient run of EAP-IG's points may hold, as in
    `sweep`: more points run in more batches.
    """
    t0 = time.perf_counter()
    if method not in EDGE_METHODS:
        raise InputError(
            f"Unknown method {method!r}. Choose "
            + " or ".join(f"{k!r} ({v})" for k, v in EDGE_METHODS.items())
            + ".",
            field="method",
        )
    if method != "eap" and not 1 <= steps <= 1000:
        raise InputError(f"steps must be 1 to 1000, not {steps}.", field="steps")
    n_steps = steps if method != "eap" else 1
    if not isinstance(verify, numbers.Integral) or verify < 0:  # -1 would patch all but one
        raise InputError(
            f"verify is how many top edges to patch exactly: 0 (none) or more, not {verify!r}.",
            field="verify",
        )
    verify = int(verify)
    if metric == "rank":
        raise InputError(
            "The rank metric is a step function with no gradient; edge attribution needs a "
            "differentiable metric: logit_diff, prob or logprob.",
            field="metric",
        )
    parts = parts_of(check_experiment(exp).runner)
    graph = graph_for(exp, kv)

    def report(fraction: float) -> None:
        if progress is not None:
            progress(int(100 * fraction), 100)

    report(0.0)
    grads: Tensor | None = None
    if n_steps == 1 and method != "eap-ig-act":
        # EAP: the gradient at the base run itself; on a cold experiment the same forward also
        # caches both runs, which give the writers' differences
        base_which = "corrupt" if check_direction(direction) == "denoising" else "clean"
        grad = gradient_run(
            exp,
            base_which,
            metric,
            READ_AT,
            keep=("z", "mlp_out"),
            last_only=True,
            kv_per_query_head=_ungrouped_gqa(graph),
        )
        grads = _readers(parts, graph, grad, exp.n_pairs)
        report(1.0)
    for name in ("clean", "corrupt"):
        exp.run(name, ["z", "mlp_out"])
    setup = prepare(exp, "z", metric, direction)
    with torch.inference_mode():
        clean = float(metric_values(setup, exp.run("clean").final)[0])
        corrupt = float(metric_values(setup, exp.run("corrupt").final)[0])
        deltas = writer_deltas(setup, parts).float()  # scored in float32, as the gradients are
    if grads is None and method == "eap-ig-act":
        grads = activation_grads(setup, parts, graph, n_steps, report, should_stop, max_memory)
    if grads is None:
        alphas = [k / n_steps for k in range(n_steps)]
        grads = reader_grads(setup, parts, graph, alphas, report, should_stop, max_memory)
    with torch.no_grad():
        n_w, n_r = len(graph.writers), len(graph.readers)
        if by_pos:  # (writers, readers, pos)
            per_pos = torch.einsum("wpnd,rpnd->wrn", deltas, grads)
            scores = per_pos.sum(-1)
        else:
            scores = deltas.reshape(n_w, -1) @ grads.reshape(n_r, -1).T  # (writers, readers)
    valid = graph.valid.T.to(scores.device)  # (writers, readers)
    values = scores[valid]
    order = values.abs().argsort(descending=True, stable=True)
    names = [graph.edge_names[i] for i in order.tolist()]
    pos_scores = None
    if by_pos:
        kept = per_pos[valid][order]  # (edges, positions from the first change)
        pos_scores = torch.cat([kept.new_zeros(len(kept), setup.start), kept], dim=1).tolist()
    checks = (
        verify_edges(
            exp, names[:verify], metric=setup.metric, direction=setup.direction, kv=kv
        ).edges
        if verify
        else []
    )
    report(1.0)
    return EdgeResult(
        model=exp.model.name,
        method=method,
        steps=n_steps,
        metric=setup.metric,
        direction=setup.direction,
        clean=clean,
        corrupt=corrupt,
        names=names,
        scores=values[order].tolist(),
        by_pos=pos_scores,
        tokens=exp.model.to_str_tokens(setup.base.tokens[0]),
        first_diff=setup.start,
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        verified=checks,
        warnings=guardrails.check(exp, setup.metric, clean, corrupt),
        graph=graph.cfg,
    )


def edge_attribution_many(
    experiments: list[Experiment],
    method: str = "eap-ig",
    *,
    steps: int = 5,
    metric: str | None = None,
    direction: str = "denoising",
    verify: int = 0,
    kv: str = "ungrouped",
    max_memory: int | str | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> EdgeResult:
    """Edge attribution over several experiments (a dataset's length groups): each edge's score
    and each verified effect averaged over all pairs (each group weighted by its pairs;
    `actpatch.patching.groups`). Scores by position need one group (a position means different
    things in each). `workers` or `ray_address` runs the groups on Ray workers."""
    experiments = groups.check_experiments(experiments, "edge_attribution_many")
    groups.check_workers(workers, ray_address)
    if len(experiments) == 1:
        return edge_attribution(
            experiments[0],
            method,
            steps=steps,
            metric=metric,
            direction=direction,
            verify=verify,
            kv=kv,
            max_memory=max_memory,
            progress=progress,
            should_stop=should_stop,
        )
    spread: dict[str, Any] = {
        "workers": workers,
        "ray_address": ray_address,
        "should_stop": should_stop,
    }
    results = groups.run_each(
        edge_attribution,
        experiments,
        progress=progress,
        **spread,
        method=method,
        steps=steps,
        metric=metric,
        direction=direction,
        kv=kv,
        max_memory=max_memory,
    )
    weights = groups.pair_weights(experiments)
    scores: dict[str, float] = {}
    for w, r in zip(weights, results, strict=True):
        for name, score in zip(r.names, r.scores, strict=True):
            scores[name] = scores.get(name, 0.0) + w * score
    ranked = sorted(scores.items(), key=lambda item: -abs(item[1]))
    clean = groups.pool([r.clean for r in results], weights)
    corrupt = groups.pool([r.corrupt for r in results], weights)
    checks = []
    if verify:
        names = [name for name, _ in ranked[:verify]]
        verified = groups.run_each(
            verify_edges,
            experiments,
            **spread,
            edges=names,
            metric=results[0].metric,
            direction=direction,
            kv=kv,
        )
        per_group = [v.edges for v in verified]
        for i, name in enumerate(names):
            value = groups.pool([g[i].metric for g in per_group], weights)
            effect = groups.pool([g[i].effect for g in per_group], weights)
            normalized = metrics.normalized_effect(effect, clean, corrupt)
            checks.append(EdgeCheck(name, value, effect, normalized))
    return groups.pooled(
        results[0],
        experiments,
        results,
        clean=clean,
        corrupt=corrupt,
        names=[name for name, _ in ranked],
        scores=[score for _, score in ranked],
        verified=checks,
    )


__all__ = [
    "activation_grads",
    "edge_attribution",
    "edge_attribution_many",
    "reader_grads",
    "writer_deltas",
]
