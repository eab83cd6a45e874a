"""Circuits: run a model with only some edges, measure faithfulness, verify single edges.

A *circuit* is a set of edges of the graph (`actpatch.patching.graph`), or of nodes (heads and
MLPs), standing for the edges among them. To evaluate one, run the clean prompt with every edge
*outside* the circuit ablated: each reader's input is rebuilt with those writers' outputs
replaced by their corrupted-run value (`ablation="corrupt"`, "patch from the other run") or by
their mean over every prompt of the experiment, clean and corrupted, position by position
(`ablation="mean"`). Because the residual stream is a sum, rebuilding a reader's input is exact:

    input(reader) = residual stream - sum over ablated writers w of (output_w - replacement_w)

with each writer's output taken live, in this ablated run. Heads read their q, k and v inputs
separately (`actpatch.patching.split`). Then

    faithfulness = (circuit's metric - corrupted) / (clean - corrupted)

is 1 for the whole graph (nothing ablated: the clean run) and, with corrupted-run ablation, 0 for
the empty graph (every reader sees the corrupted run's writers: the corrupted run). A node set
keeps the edges whose writer and reader are both in it (the input and the logits always are),
which is ablating every other node's output.

*Exact edge patching* (`verify_edges`) checks edge attribution's estimates: in the base run, one
reader sees one writer's source-run output (its input gains source - base of that writer), and
everything else runs on: the metric's change is that edge's exact effect.

Positions before the first token where the prompts differ are identical in both runs, so no
ablation or patch changes them (with mean ablation they are recomputed from position 0).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from actpatch.errors import CancelledError, InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.cells import Setup, aligned, metric_values, prepare
from actpatch.patching.experiment import Experiment
from actpatch.patching.graph import Node, edge_name, names_of
from actpatch.patching.graph_tables import Graph, graph_for
from actpatch.patching.options import CIRCUIT_ABLATIONS
from actpatch.patching.results.circuits import (
    CircuitPoint,
    CircuitResult,
    EdgeCheck,
    VerifyResult,
)
from actpatch.patching.split import Parts, parts_of

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Bool


class _EdgeRun:
    """The hook of a run whose readers see some writers replaced: per batch row, `excluded`
    (rows, readers, writers) says which writers each reader sees replaced; each replaced writer
    contributes output - replacement to a correction subtracted from the reader's input.

    Where a layer's attention output is normed after its heads are summed (Gemma, OLMo 2), its
    heads are not additive: a reader that sees the heads A of that layer replaced sees the
    layer write post(S - sum over h in A of (o_h - o'_h)) instead of post(S), S being the live
    pre-norm sum; its correction for that layer is post(S) - post(S - that sum)."""

    def __init__(
        self,
        parts: Parts,
        graph: Graph,
        excluded: Tensor,
        replacement: Callable[[str, int], Tensor],
        n_pairs: int,
        start: int,
    ) -> None:
        self.parts, self.graph, self.n_pairs, self.start = parts, graph, n_pairs, start
        # (rows, readers, writers), 0 or 1 in the model's dtype (exact in any): corrections are
        # sums of the model's own activations, in its dtype
        dtype = parts.runner.dtype
        self.excluded = excluded.to(dtype)
        self.replacement = replacement  # (kind, layer) -> the writer's replacement output
        self.deltas: list[Tensor] = []  # per writer, in order: (rows, pairs, pos, d_model)
        # per post-normed layer: (its first head's writer column, the layer, live pre-norm sum S)
        self.post: list[tuple[int, int, Tensor]] = []
        additive = torch.ones(excluded.shape[-1])
        for layer, normed in enumerate(parts.post_normed):
            if normed:
                first = graph.writer_index[Node("head", layer, 0)]
                additive[first : first + parts.n_heads] = 0
        self.additive = additive.to(excluded.device, dtype)
        self._kv: tuple[Tensor, Tensor] | None = None
        self.resid: Tensor | None = None
        self.n_rows = excluded.shape[0]

    def _rows(self, act: Tensor) -> Tensor:
        return act.reshape(self.n_rows, self.n_pairs, *act.shape[1:])

    def correction(self, reader_rows: slice | list[int], n_pos: int) -> Tensor | None:
        """Σ over replaced writers of (output - replacement), for the readers `reader_rows`, at
        the last `n_pos` positions: (rows, pairs, pos, readers, d_model); None if none."""
        n_w = len(self.deltas)
        excluded = self.excluded[:, reader_rows, :n_w]  # (rows, readers, writers so far)
        if not bool(excluded.any()):
            return None
        deltas = torch.stack([d[:, :, -n_pos:] for d in self.deltas], dim=3)
        out = torch.einsum("ikw,ipnwd->ipnkd", excluded * self.additive[:n_w], deltas)
        parts = self.parts
        for first, layer, pre in self.post:
            heads = excluded[:, :, first : first + parts.n_heads]  # (rows, readers, head)
            if not bool(heads.any()):
                continue
            swapped = torch.einsum(
                "ikh,ipnhd->ipnkd", heads, deltas[:, :, :, first : first + parts.n_heads]
            )
            live = pre[:, :, -n_pos:, None, :]  # (rows, pairs, pos, 1, d_model)
            out += parts.post_norm(layer, live) - parts.post_norm(layer, live - swapped)
        return out

    def __call__(self, name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        parts, graph = self.parts, self.graph
        first = graph.layer_start[layer]
        n_heads, n_kv = graph.n_heads, graph.shape.n_kv_readers
        if name == "resid_pre":
            self.resid = act
            if layer == 0:  # the input writer: the embeddings
                self.deltas.append(self._rows(act - self.replacement("input", 0)))
            return act
        if name == "q":
            assert self.resid is not None
            n = act.shape[1]
            corr = self.correction(slice(first, first + n_heads + 2 * n_kv), n)
            if corr is None:
                self._kv = None
                return act
            x = self._rows(self.resid)[:, :, :, None, :] - corr  # (rows, pairs, n, inputs, d)
            x = x.reshape(-1, n, n_heads + 2 * n_kv, x.shape[-1])
            q, k, v = parts.head_qkv(
                layer,
                x[:, :, :n_heads],
                x[:, :, n_heads : n_heads + n_kv],
                x[:, :, n_heads + n_kv :],
            )
            self._kv = (k, v)  # per query head (ungrouped) or per key/value head
            return q
        if name in ("k", "v"):
            if self._kv is None:
                return act
            return self._kv[0] if name == "k" else self._kv[1]
        if name == "z":
            heads = parts.head_out(layer, act)  # (batch, n, head, d_model), before any post-norm
            if parts.post_normed[layer]:
                column = graph.writer_index[Node("head", layer, 0)]
                self.post.append((column, layer, self._rows(parts.attn_pre(layer, heads))))
            heads = heads - self.replacement("head", layer)[:, -act.shape[1] :]
            for h in range(n_heads):
                self.deltas.append(self._rows(heads[:, :, h]))
            return act
        if name == "mlp_in":
            reader = graph.reader_index[Node("mlp", layer)]
            corr = self.correction([reader], act.shape[1])
            if corr is None:
                return act
            return (self._rows(act) - corr[:, :, :, 0]).reshape(act.shape)
        if name == "mlp_out":
            replaced = self.replacement("mlp", layer)[:, -act.shape[1] :]
            self.deltas.append(self._rows(act - replaced))
            return act
        return act

    def logits_input(self, final: Tensor) -> Tensor:
        """The final residual stream (batch, d_model) as the unembedding reads it."""
        corr = self.correction([len(self.graph.readers) - 1], 1)
        if corr is None:
            return final
        return (self._rows(final) - corr[:, :, 0, 0]).reshape(final.shape)


def _run(
    setup: Setup,
    graph: Graph,
    excluded: Tensor,
    replacement: Callable[[str, int], Tensor],
    start: int,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """Final residual streams (rows * pairs, d_model) of the base run with each row's readers
    seeing its excluded writers replaced."""
    exp, runner = setup.exp, setup.exp.runner
    parts = parts_of(runner)
    rows, n_pairs, cache = excluded.shape[0], exp.n_pairs, setup.base.cache
    device = exp.model.device
    hook = _EdgeRun(parts, graph, excluded.to(device), replacement, n_pairs, start)
    x = cache[("resid_pre", 0)][:, start:].repeat(rows, 1, 1)
    past = runner.past_kv(cache, start)  # keys as attention consumed them, and values
    for layer in range(runner.n_layers):
        if should_stop is not None and should_stop():
            raise CancelledError("The circuit evaluation was cancelled.")
        last = layer == runner.n_layers - 1
        x = runner.block(layer, x, start, *past[layer], hook=hook, last_only=last)
    return hook.logits_input(x[:, -1])


def _replacements(setup: Setup, ablation: str, start: int) -> Callable[[str, int], Tensor]:
    """Each writer's replacement output (pairs, pos from `start`, ...), by kind and layer:
    the source run's (`ablation="corrupt"` with the clean run as base: the corrupted run's),
    or the mean over every prompt of both runs."""
    parts = parts_of(setup.exp.runner)
    exp = setup.exp
    memo: dict[tuple[str, int], Tensor] = {}

    def other(kind: str, layer: int) -> Tensor:
        if kind == "input":
            return aligned(setup, "source", "resid_pre", 0)
        if kind == "mlp":
            return aligned(setup, "source", "mlp_out", layer)
        return parts.head_out(layer, aligned(setup, "source", "z", layer))

    def mean(kind: str, layer: int) -> Tensor:
        runs = (exp.run("clean"), exp.run("corrupt"))
        if kind == "input":
            every = torch.cat([r.cache[("resid_pre", 0)] for r in runs])
        elif kind == "mlp":
            every = torch.cat([r.cache[("mlp_out", layer)] for r in runs])
        else:
            every = parts.head_out(layer, torch.cat([r.cache[("z", layer)] for r in runs]))
        return every.mean(dim=0, keepdim=True).expand(exp.n_pairs, *every.shape[1:])

    source = other if ablation == "corrupt" else mean

    def replacement(kind: str, layer: int) -> Tensor:
        if (kind, layer) not in memo:
            memo[(kind, layer)] = source(kind, layer)[:, start:]
        return memo[(kind, layer)]

    return replacement


class _Tiled:
    """A replacement function whose values are tiled over the batch's rows, per hook call."""

    def __init__(self, inner: Callable[[str, int], Tensor], rows: int) -> None:
        self.inner, self.rows = inner, rows

    def __call__(self, kind: str, layer: int) -> Tensor:
        value = self.inner(kind, layer)
        return value.repeat(self.rows, *([1] * (value.dim() - 1)))


def _check_ablation(ablation: str, exp: Experiment) -> None:
    if ablation not in CIRCUIT_ABLATIONS:
        raise InputError(
            f"Unknown ablation {ablation!r}. Choose "
            + " or ".join(f"{k!r} ({v})" for k, v in CIRCUIT_ABLATIONS.items())
            + ".",
            field="ablation",
        )
    if ablation == "mean" and not exp.alignment.identity:
        raise InputError(
            "Mean ablation averages writers position by position, so the clean and corrupted "
            "prompts must have the same token length.",
            field="ablation",
        )


def _prepare(exp: Experiment, metric: str | None, direction: str) -> Setup:
    for name in ("clean", "corrupt"):
        exp.run(name, ["z", "mlp_out"])
    return prepare(exp, "z", metric, direction)


def circuit_metrics(
    exp: Experiment,
    kept: Sequence[Bool[Tensor, "readers writers"]],
    *,
    metric: str | None = None,
    ablation: str = "corrupt",
    kv: str = "ungrouped",
    should_stop: Callable[[], bool] | None = None,
) -> tuple[list[float], float, float, Setup]:
    """The metric of the clean run with each circuit's outside ablated, and the clean and
    corrupted metrics. `kept`: (readers, writers) masks of the edges each circuit keeps, in the
    graph of key/value convention `kv`."""
    _check_ablation(ablation, exp)
    parts_of(exp.runner)  # refuses a model edges cannot run on, before any run
    # the base run is the clean one; writers are replaced from the corrupted one
    setup = _prepare(exp, metric, "noising")
    graph = graph_for(exp, kv)
    with torch.inference_mode():
        clean = float(metric_values(setup, exp.run("clean").final)[0])
        corrupt = float(metric_values(setup, exp.run("corrupt").final)[0])
        start = setup.start if ablation == "corrupt" else 0
        replacement = _replacements(setup, ablation, start)
        values: list[float] = []
        chunk = max(1, 16 // exp.n_pairs)
        for i in range(0, len(kept), chunk):
            part = kept[i : i + chunk]
            excluded = torch.stack([graph.valid & ~k for k in part])
            final = _run(setup, graph, excluded, _Tiled(replacement, len(part)), start, should_stop)
            values += metric_values(setup, final).tolist()
    return values, clean, corrupt, setup


def circuit_from(
    exp: Experiment,
    *,
    edges: Iterable[str] | None = None,
    nodes: Iterable[str] | None = None,
    kv: str = "ungrouped",
) -> Tensor:
    """A (readers, writers) mask of kept edges from edge names or node names."""
    graph = graph_for(exp, kv)
    if nodes is not None:
        return graph.induced([graph.parse_node(n) for n in names_of(nodes, "nodes")])
    return graph.mask(graph.parse(edges or []))


def evaluate(
    exp: Experiment,
    *,
    edges: Iterable[str] | None = None,
    nodes: Iterable[str] | None = None,
    ranked: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    circuits: Sequence[Sequence[str]] | None = None,
    metric: str | None = None,
    ablation: str = "corrupt",
    kv: str = "ungrouped",
    should_stop: Callable[[], bool] | None = None,
) -> CircuitResult:
    """Faithfulness of a circuit, or a curve of the top-n edges of a ranking.

    Give `edges` (names like 'a0.h1->a2.h3<v>') or `nodes` (heads and MLPs like 'a9.h9', 'm0')
    for one circuit; or `ranked` edge names, best first, and `sizes` (n = 10, 20, ...) for the
    faithfulness of the top n of each size; or `circuits`, several edge sets, one point each.
    """
    t0 = time.perf_counter()
    graph = graph_for(exp, kv)
    nodes = None if nodes is None else names_of(nodes, "nodes")
    if circuits is not None:
        kept = [graph.mask(graph.parse(c)) for c in circuits]
        counts = [len(c) for c in circuits]
    elif ranked is not None:
        ranked_edges = graph.parse(ranked)
        sizes = list(sizes or default_sizes(len(ranked_edges)))
        bad = [n for n in sizes if not 0 <= n <= len(ranked_edges)]
        if bad:
            raise InputError(
                f"Curve sizes {bad} are out of range: there are {len(ranked_edges)} ranked edges.",
                field="curve",
            )
        kept = [graph.mask(ranked_edges[:n]) for n in sizes]
        counts = list(sizes)
    else:
        if edges is None and nodes is None:
            raise InputError("Give the circuit's edges or nodes.", field="circuit")
        mask = circuit_from(exp, edges=edges, nodes=nodes, kv=kv)
        kept = [mask]
        counts = [int((mask & graph.valid).sum())]
    values, clean, corrupt, setup = circuit_metrics(
        exp, kept, metric=metric, ablation=ablation, kv=kv, should_stop=should_stop
    )
    points = [
        CircuitPoint(n, v, metrics.normalize(v, clean, corrupt))
        for n, v in zip(counts, values, strict=True)
    ]
    return CircuitResult(
        model=exp.model.name,
        metric=setup.metric,
        ablation=ablation,
        clean=clean,
        corrupt=corrupt,
        points=points,
        total_edges=graph.n_edges,
        nodes=sorted(set(nodes)) if nodes is not None else None,
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        warnings=guardrails.check(exp, setup.metric, clean, corrupt),
        graph=graph.cfg,
    )


def evaluate_many(
    experiments: list[Experiment],
    *,
    workers: int | None = None,
    ray_address: str | None = None,
    **options: Any,
) -> CircuitResult:
    """`evaluate` over several experiments (a dataset's length groups): each circuit's metric
    and the clean and corrupted baselines averaged over all pairs (each group weighted by its
    pairs; `actpatch.patching.groups`), faithfulness computed from those averages. `options`
    are `evaluate`'s; `workers` or `ray_address` runs the groups on Ray workers."""
    experiments = groups.check_experiments(experiments, "evaluate_many")
    should_stop = options.pop("should_stop", None)
    results = groups.run_each(
        evaluate,
        experiments,
        should_stop=should_stop,
        workers=workers,
        ray_address=ray_address,
        **options,
    )
    if len(results) == 1:
        return results[0]
    weights = groups.pair_weights(experiments)
    clean = groups.pool([r.clean for r in results], weights)
    corrupt = groups.pool([r.corrupt for r in results], weights)
    points = []
    for i, point in enumerate(results[0].points):
        value = groups.pool([r.points[i].metric for r in results], weights)
        points.append(CircuitPoint(point.n_edges, value, metrics.normalize(value, clean, corrupt)))
    return groups.pooled(
        results[0], experiments, results, clean=clean, corrupt=corrupt, points=points
    )


def evaluate_mib(
    experiments: list[Experiment],
    names: Sequence[str],
    scores: Sequence[float] | None,
    *,
    metric: str | None = None,
    ablation: str = "corrupt",
    kv: str = "ungrouped",
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> CircuitResult:
    """MIB's evaluation of an edge scoring (`actpatch.patching.mib`): the faithfulness of the
    pruned top-n circuits at MIB's ten fractions of the graph's edges, ranked by |score| and by
    the signed score, with CPR (area under faithfulness) and CMD (area under |1 - faithfulness|)
    of each ranking. Faithfulness is MIB's: (circuit - empty circuit) / (clean - empty circuit),
    the empty circuit ablated as the others are (with `ablation="corrupt"`, the corrupted run;
    with mean ablation, not: the points then differ from `evaluate`'s). MIB's leaderboard
    reports CPR of the signed ranking and CMD of the absolute one; `mib` holds all four. The
    points are the absolute ranking's, sized by the pruned circuits' edge counts. `names` must
    be every edge of the (ungrouped) graph. `workers` or `ray_address` runs the length groups
    on Ray workers (`actpatch.patching.groups`)."""
    experiments = groups.check_experiments(experiments, "evaluate_mib")
    from actpatch.patching import mib

    if kv != "ungrouped":
        raise InputError(
            "MIB's graph is ungrouped (every query head has its own <k> and <v> readers): "
            "leave kv at ungrouped for MIB's evaluation.",
            field="kv",
        )
    if scores is None:
        raise InputError("MIB ranks edges by score: give a score for each edge.", field="scores")
    if len(scores) != len(names):
        raise InputError(
            f"{len(names)} ranked edges but {len(scores)} scores: give one score per edge.",
            field="scores",
        )
    graph = graph_for(experiments[0])
    if len(set(names)) != graph.n_edges:
        raise InputError(
            f"MIB's fractions are of the whole graph: give a score for each of its "
            f"{graph.n_edges:,} edges ({len(set(names)):,} given).",
            field="circuit",
        )
    curves: dict[str, CircuitResult] = {}
    sizes: dict[str, list[int]] = {}
    for ranking, absolute in (("absolute", True), ("signed", False)):
        circuits = mib.mib_circuits(names, scores, absolute=absolute)
        sizes[ranking] = [len(c) for c in circuits]
        # the empty circuit first: MIB normalizes by it, ablated as every other circuit is
        curves[ranking] = evaluate_many(
            experiments, circuits=[[], *circuits], metric=metric, ablation=ablation,
            should_stop=should_stop, workers=workers, ray_address=ray_address,
        )  # fmt: skip
    empty = curves["absolute"].points[0].metric
    clean = curves["absolute"].clean
    faith = {
        k: [metrics.normalize(p.metric, clean, empty) for p in r.points[1:]]
        for k, r in curves.items()
    }
    summary = {
        "fractions": list(mib.MIB_FRACTIONS),
        "n_edges": sizes,
        "faithfulness": faith,
        "empty_metric": empty,
        "clean_metric": clean,
        "cpr": mib.cpr(faith["signed"]),
        "cmd": mib.cmd(faith["absolute"]),
        "cpr_absolute": mib.cpr(faith["absolute"]),
        "cmd_signed": mib.cmd(faith["signed"]),
    }
    result = curves["absolute"]
    points = [
        CircuitPoint(p.n_edges, p.metric, f)
        for p, f in zip(result.points[1:], faith["absolute"], strict=True)
    ]
    return dataclasses.replace(
        result,
        points=points,
        seconds=sum(r.seconds for r in curves.values()),
        mib=summary,
    )


def default_sizes(n_ranked: int) -> list[int]:
    """0, 10, 20, 50, 100, 200, 500, ... up to every ranked edge."""
    sizes, step = [0], 10
    while step < n_ranked:
        for k in (1, 2, 5):
            if k * step < n_ranked:
                sizes.append(k * step)
        step *= 10
    return [*sizes, n_ranked]


def verify_edges(
    exp: Experiment,
    edges: Sequence[str],
    *,
    metric: str | None = None,
    direction: str = "denoising",
    kv: str = "ungrouped",
    should_stop: Callable[[], bool] | None = None,
) -> VerifyResult:
    """The exact effect of patching each edge alone: in the base run, the edge's reader sees its
    writer's source-run output; the metric's change from the base run, raw and normalized."""
    t0 = time.perf_counter()
    graph = graph_for(exp, kv)
    parts_of(exp.runner)
    parsed = graph.parse(edges, field="edges")
    setup = _prepare(exp, metric, direction)
    checks: list[EdgeCheck] = []
    with torch.inference_mode():
        clean = float(metric_values(setup, exp.run("clean").final)[0])
        corrupt = float(metric_values(setup, exp.run("corrupt").final)[0])
        base = corrupt if setup.direction == "denoising" else clean
        replacement = _replacements(setup, "corrupt", setup.start)  # the source run's outputs
        chunk = max(1, 16 // exp.n_pairs)
        for i in range(0, len(parsed), chunk):
            part = parsed[i : i + chunk]
            excluded = torch.stack([graph.mask([e]) for e in part])
            final = _run(
                setup, graph, excluded, _Tiled(replacement, len(part)), setup.start, should_stop
            )
            for (w, r), value in zip(part, metric_values(setup, final).tolist(), strict=True):
                effect = value - base
                normalized = metrics.normalized_effect(effect, clean, corrupt)
                checks.append(EdgeCheck(edge_name(w, r), value, effect, normalized))
    return VerifyResult(
        model=exp.model.name,
        metric=setup.metric,
        direction=setup.direction,
        clean=clean,
        corrupt=corrupt,
        edges=checks,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        warnings=guardrails.check(exp, setup.metric, clean, corrupt),
    )


__all__ = [
    "circuit_from",
    "circuit_metrics",
    "default_sizes",
    "evaluate",
    "evaluate_many",
    "evaluate_mib",
    "verify_edges",
]
