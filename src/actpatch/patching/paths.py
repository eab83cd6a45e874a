"""Path patching (Wang et al. 2022, "Interpretability in the Wild"): which heads feed which.

Activation patching a head measures everything its output causes downstream. Path patching
measures one *path*: the sender's effect on chosen receivers only.

1. *Frozen run.* Run the base prompt with every head frozen at its base-run output (and every
   MLP too, with `freeze_mlps`), except the sender, which takes its output from the source run.
   Layer norms and, without `freeze_mlps`, MLPs are recomputed, so the sender's change reaches
   the receivers directly or through MLPs, never through another head.
2. With *receivers* `logits`: the frozen run's final residual stream is read; the metric says how
   much of the behaviour the sender's direct path carries.
   With receivers that are heads' q, k or v inputs (or MLPs): record the receivers' new q, k, v
   (or MLP outputs) in the frozen run, patch them into a fresh base run, and read the metric
   there: the sender's effect *through* those receivers.

Denoising (the default) patches the clean run's sender into the corrupted run; noising the
reverse, as Wang et al. did (their source run was the ABC distribution). Results are normalized
like a sweep: clean = 1, corrupted = 0.

Architectures. A parallel-residual model's MLP reads the layer's input, so in the frozen run it
sees the residual stream before the layer's heads wrote. Where the attention output is normed
after its heads are summed (Gemma 2/3, OLMo 2), a sender head of that layer changes the layer's
write to post(S_base - o_base + o_source): through the norm, with the other heads held at the
base run, exactly what the frozen run computes. On a grouped-query model a receiver 'a9.h9<k>' is
the key input as query head 9 uses it (its own copy of its key/value head's key: the fresh run
repeats keys per query head and patches that copy), and 'a9.kv2<k>' is key/value head 2's
input, which every query head of its group reads.

Every sender is one row of a batch. In the frozen run no head runs at all: a frozen head's
output is known, and with every head frozen nothing moves between positions, so each position
is its own residual stream of sums and MLPs (`_FrozenRun`); with the logits as receiver, only the
final position is computed. A sender joins the batch at its own layer, from the base run's
cached residual stream. The receivers' fresh base run is the engine's batched run
(`actpatch.patching.cells`): from the first receiver's layer, with the base run's cached keys
and values before the first differing token. A sender that cannot reach any receiver (it comes
after them) gets the base run's value without a run.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch import Tensor

from actpatch.arch.forward import per_query_head
from actpatch.errors import CancelledError, InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.budget import chunk_size
from actpatch.patching.cells import Setup, aligned, metric_values, prepare
from actpatch.patching.experiment import Experiment, check_experiment
from actpatch.patching.graph import Node, feeds, parse_receivers, parse_senders
from actpatch.patching.groups import Progress
from actpatch.patching.results.circuits import PathPatchResult
from actpatch.patching.split import parts_of


class _FrozenRun:
    """The frozen run, written out: with every head frozen, no information moves between
    positions, so each position is its own small computation and attention need not run.

    Per layer, the residual stream gains the base run's attention output (plus, in a row whose
    sender is a head of this layer, that head's source - base output) and then the MLP's output:
    recomputed from that stream, or the base run's with `freeze_mlps` (a sender MLP takes the
    source run's). Receivers record what they would compute from this stream: heads their q,
    k, v (through their layer norm and projection), MLPs their output. Rows are senders (times
    pairs), sorted by layer; a row joins at its sender's layer from the base run's residual.
    """

    def __init__(
        self,
        setup: Setup,
        senders: list[Node],
        receivers: list[Node],
        freeze_mlps: bool,
        positions: slice,
    ) -> None:
        self.setup, self.senders, self.freeze_mlps = setup, senders, freeze_mlps
        self.receivers, self.positions = receivers, positions
        self.parts = parts_of(setup.exp.runner)
        self.n_pairs = setup.exp.n_pairs
        self.recorded: dict[Node, Tensor] = {}

    def _rows(self, t: Tensor, n_rows: int) -> Tensor:
        """(pairs, ...) repeated for n_rows rows, row-major: (n_rows * pairs, ...)."""
        return t.repeat(n_rows, *([1] * (t.dim() - 1)))

    def _sender_delta(self, layer: int, n_rows: int, kind: str) -> Tensor | None:
        """Each row's source - base output of its sender, if the sender is a `kind` of this
        layer, else zero: (n_rows * pairs, pos, d_model); None if no row's sender is."""
        mine = [
            (i, s)
            for i, s in enumerate(self.senders[:n_rows])
            if s.kind == kind and s.layer == layer
        ]
        if not mine:
            return None
        pos, setup = self.positions, self.setup
        if kind == "head":
            diff = aligned(setup, "source", "z", layer) - aligned(setup, "base", "z", layer)
            outs = self.parts.head_out(layer, diff[:, pos])  # (pairs, pos, head, d_model)
            if self.parts.post_normed[layer]:  # through the norm, other heads at the base run
                base_heads = self.parts.head_out(layer, aligned(setup, "base", "z", layer)[:, pos])
                pre = self.parts.attn_pre(layer, base_heads)[:, :, None]  # (pairs, pos, 1, d)
                attn_out = setup.base.cache[("attn_out", layer)][:, pos, None]
                outs = self.parts.post_norm(layer, pre + outs) - attn_out
        else:
            diff = aligned(setup, "source", "mlp_out", layer) - aligned(
                setup, "base", "mlp_out", layer
            )
            outs = diff[:, pos]
        delta = outs.new_zeros(n_rows, self.n_pairs, *outs.shape[1:2], outs.shape[-1])
        for i, s in mine:
            delta[i] = outs[:, :, s.head] if kind == "head" else outs
        return delta.reshape(n_rows * self.n_pairs, *delta.shape[2:])

    def run(self, last_layer: int) -> Tensor:
        """Residual streams after `last_layer` at the chosen positions, recording receivers."""
        cache, pos = self.setup.base.cache, self.positions
        x: Tensor | None = None
        for layer in range(self.senders[0].layer, last_layer + 1):
            joining = sum(1 for s in self.senders if s.layer == layer)
            if joining:
                fresh = self._rows(cache[("resid_pre", layer)][:, pos], joining)
                x = fresh if x is None else torch.cat([x, fresh])
            assert x is not None
            n_rows = x.shape[0] // self.n_pairs
            heads = [r for r in self.receivers if r.kind in ("head", "kv") and r.layer == layer]
            if heads:  # what the receivers compute from this stream
                parts = self.parts
                xq = x[:, :, None, :].expand(-1, -1, parts.n_heads, -1)
                xkv = x[:, :, None, :].expand(-1, -1, parts.n_kv_heads, -1)
                q, k, v = parts.head_qkv(layer, xq, xkv, xkv)
                group = parts.n_heads // parts.n_kv_heads
                for r in heads:
                    # a query head's own k/v input reads its key/value head's projection
                    at = r.head if r.qkv == "q" or r.kind == "kv" else r.head // group
                    self.recorded[r] = {"q": q, "k": k, "v": v}[r.qkv][:, :, at]
            x_in = x  # what a parallel-residual MLP reads
            x = x + self._rows(cache[("attn_out", layer)][:, pos], n_rows)
            head_delta = self._sender_delta(layer, n_rows, "head")
            if head_delta is not None:
                x = x + head_delta
            receiver = Node("mlp", layer) in self.receivers
            if self.freeze_mlps and not receiver:
                mlp = self._rows(cache[("mlp_out", layer)][:, pos], n_rows)
            else:
                mlp = self.parts.mlp(layer, x_in if self.parts.parallel else x)
                if receiver:  # its input sees the change; its output stays frozen if asked
                    self.recorded[Node("mlp", layer)] = mlp
                    if self.freeze_mlps:
                        mlp = self._rows(cache[("mlp_out", layer)][:, pos], n_rows)
            mlp_delta = self._sender_delta(layer, n_rows, "mlp")
            if mlp_delta is not None:  # a sender MLP takes the source run's output
                is_sender = torch.tensor(
                    [s.kind == "mlp" and s.layer == layer for s in self.senders[:n_rows]],
                    device=x.device,
                ).repeat_interleave(self.n_pairs)[:, None, None]
                base_out = self._rows(cache[("mlp_out", layer)][:, pos], n_rows)
                mlp = torch.where(is_sender, base_out + mlp_delta, mlp)
            x = x + mlp
        assert x is not None
        return x


class _ReceiverPatch:
    """The fresh base run's hook: each receiver takes the value its row recorded (positions
    from `start` on). A query head's own key or value input on a grouped-query model patches
    that head's copy: the keys or values are repeated per query head first."""

    def __init__(self, values: dict[Node, Tensor], start: int, n_heads: int, n_kv: int) -> None:
        self.values, self.start = values, start
        self.n_heads, self.group = n_heads, n_heads // n_kv

    def __call__(self, name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        if name == "mlp_out" and Node("mlp", layer) in self.values:
            first = pos0 - self.start  # the last layer computes only the final position
            return self.values[Node("mlp", layer)][:, first : first + act.shape[1]]
        if name in ("q", "k", "v"):
            mine = [r for r in self.values if r.layer == layer and r.qkv == name]
            if not mine:
                return act
            per_query = name != "q" and any(r.kind == "head" for r in mine) and self.group > 1
            # per query head: a repeated copy (a new tensor); else a clone to write into
            act = per_query_head(act, self.n_heads) if per_query else act.clone()
            for r in mine:
                if r.kind == "kv" and per_query:  # every query head of the group reads it
                    for h in range(r.head * self.group, (r.head + 1) * self.group):
                        act[:, :, h] = self.values[r]
                else:
                    act[:, :, r.head] = self.values[r]
        return act


def _base_value(setup: Setup, name: str, layer: int, start: int, reps: int) -> Tensor:
    """The base run's activation from `start` on, repeated for `reps` rows."""
    value = setup.base.cache[(name, layer)][:, start:]
    return value.repeat(reps, *([1] * (value.dim() - 1)))


def _run_rows(
    setup: Setup,
    senders: list[Node],
    receivers: list[Node],
    freeze_mlps: bool,
    should_stop: Callable[[], bool] | None,
) -> Tensor:
    """The metric for each sender (all of which reach a receiver), averaged over pairs."""
    runner = setup.exp.runner
    start, cache = setup.start, setup.base.cache
    rows = sorted(senders, key=lambda s: s.layer)
    order = [senders.index(s) for s in rows]
    past = runner.past_kv(cache, start)  # keys as attention consumed them, and values
    to_logits = receivers[0].kind == "logits"
    last_layer = runner.n_layers - 1 if to_logits else max(r.layer for r in receivers)

    def stop() -> None:
        if should_stop is not None and should_stop():
            raise CancelledError("Path patching was cancelled.")

    # 1. The frozen run: every row's sender takes the source run's output. With the logits as
    # receiver only the final position is needed; else every position from the first change.
    positions = slice(-1, None) if to_logits else slice(start, None)
    frozen = _FrozenRun(setup, rows, receivers, freeze_mlps, positions)
    stop()
    x = frozen.run(last_layer)
    if to_logits:
        final = x[:, -1]
    else:
        # 2. A fresh base run in which the receivers take their recorded values. Rows that had
        # not joined when a receiver was recorded (their sender comes later) keep its base value.
        n_rows = len(rows)
        values = {}
        for r, recorded in frozen.recorded.items():
            name = "mlp_out" if r.kind == "mlp" else r.qkv
            full = _base_value(setup, name, r.layer, start, n_rows)
            if r.kind in ("head", "kv"):
                group = runner.n_heads // runner.n_kv_heads
                at = r.head if r.qkv == "q" or r.kind == "kv" else r.head // group
                full = full[:, :, at].clone()
            full[: recorded.shape[0]] = recorded
            values[r] = full
        first = min(r.layer for r in receivers)
        x = cache[("resid_pre", first)][:, start:].repeat(n_rows, 1, 1)
        patch = _ReceiverPatch(values, start, runner.n_heads, runner.n_kv_heads)
        for layer in range(first, runner.n_layers):
            stop()
            last = layer == runner.n_layers - 1
            x = runner.block(layer, x, start, *past[layer], hook=patch, last_only=last)
        final = x[:, -1]
    per_row = metric_values(setup, final)
    out = torch.empty_like(per_row)
    out[torch.tensor(order, device=per_row.device)] = per_row
    return out


def path_patch(
    exp: Experiment,
    senders: str | list[str] = "all",
    receivers: str | list[str] = "logits",
    *,
    freeze_mlps: bool = False,
    metric: str | None = None,
    direction: str = "denoising",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> PathPatchResult:
    """Path-patch each sender into the receivers and return the metric for each sender.

    `senders`: "all" (every head: the result is [layer][head]) or a list of heads and MLPs
    ("9.9", "a9.h9", "m0"). `receivers`: "logits", or heads' q/k/v inputs and MLPs
    ("9.9.q", "a9.h9<k>", "m3"). `freeze_mlps` freezes every MLP too, so the path runs through
    the residual stream alone.
    """
    t0 = time.perf_counter()
    model = check_experiment(exp).model
    if exp.backend != "fast":
        raise InputError(
            f"Path patching runs on the fast path; {model.name} runs on TransformerLens's bridge "
            "here (its family is not one the fast path covers).",
            field="backend",
        )
    parts_of(exp.runner)  # refuses a model edges cannot run on
    sender_nodes = parse_senders(senders, model.n_layers, model.n_heads)
    receiver_nodes = parse_receivers(
        receivers, model.n_layers, model.n_heads, exp.runner.n_kv_heads
    )
    all_heads = isinstance(senders, str) and senders.strip() == "all"
    for name in ("clean", "corrupt"):
        exp.run(name, ["z", "mlp_out", "attn_out", "q", "k", "v"])
    setup = prepare(exp, "z", metric, direction)
    with torch.inference_mode():
        clean = float(metric_values(setup, exp.run("clean").final)[0])
        corrupt = float(metric_values(setup, exp.run("corrupt").final)[0])
        base = corrupt if setup.direction == "denoising" else clean
        raw = torch.full((len(sender_nodes),), base)
        # a sender that comes after every receiver cannot reach one: the base run's value
        parallel = bool(exp.runner.spec.parallel)
        todo = [
            i
            for i, s in enumerate(sender_nodes)
            if any(feeds(s, r, parallel) for r in receiver_nodes)
        ]
        total, done = len(todo), 0
        if progress is not None:
            progress(0, total)
        chunk = chunk_size(setup)
        for i in range(0, total, chunk):
            part = todo[i : i + chunk]
            values = _run_rows(
                setup, [sender_nodes[j] for j in part], receiver_nodes, freeze_mlps, should_stop
            )
            raw[torch.tensor(part)] = values.float().cpu()
            done += len(part)
            if progress is not None:
                progress(done, total)
    if all_heads:
        raw = raw.reshape(model.n_layers, model.n_heads)
    normalized, note = metrics.normalized(raw, clean, corrupt, setup.metric)
    return PathPatchResult(
        model=model.name,
        senders=[s.name for s in sender_nodes],
        receivers=[r.name for r in receiver_nodes],
        freeze_mlps=freeze_mlps,
        metric=setup.metric,
        direction=setup.direction,
        raw=raw,
        normalized=normalized,
        clean=clean,
        corrupt=corrupt,
        tokens=model.to_str_tokens(setup.base.tokens[0]),
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        note=note,
        warnings=guardrails.check(exp, setup.metric, clean, corrupt),
    )


def path_patch_many(
    experiments: list[Experiment],
    senders: str | list[str] = "all",
    receivers: str | list[str] = "logits",
    *,
    freeze_mlps: bool = False,
    metric: str | None = None,
    direction: str = "denoising",
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> PathPatchResult:
    """Path patching over several experiments (a dataset's length groups), averaged per pair:
    raw values and the clean and corrupted baselines weighted by each group's pairs, the
    normalized value computed from those averages (as `sweep_many` does; `patching.groups`).
    `workers` or `ray_address` runs the groups on Ray workers."""
    experiments = groups.check_experiments(experiments, "path_patch_many")
    results = groups.run_each(
        path_patch,
        experiments,
        progress=progress,
        should_stop=should_stop,
        workers=workers,
        ray_address=ray_address,
        senders=senders,
        receivers=receivers,
        freeze_mlps=freeze_mlps,
        metric=metric,
        direction=direction,
    )
    if len(results) == 1:
        return results[0]
    weights = groups.pair_weights(experiments)
    raw = groups.pool([r.raw for r in results], weights)
    clean = groups.pool([r.clean for r in results], weights)
    corrupt = groups.pool([r.corrupt for r in results], weights)
    normalized, note = metrics.normalized(raw, clean, corrupt, results[0].metric)
    return groups.pooled(
        results[0],
        experiments,
        results,
        clean=clean,
        corrupt=corrupt,
        raw=raw,
        normalized=normalized,
        note=note,
    )


__all__ = ["path_patch", "path_patch_many"]
