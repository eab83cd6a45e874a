"""The sweep engine: every cell of a patching sweep, computed exactly and without waste.

Activation patching runs the model on a *clean* prompt and a *corrupted* one, copies one
activation from one run (the source) into the other (the base), and measures the answer.
*Denoising* patches clean activations into the corrupted run (is this activation sufficient
to restore the behaviour?); *noising* patches corrupted activations into the clean run (is it
necessary?). A sweep does this for every cell: every (layer, head), or (layer, position), ...

Each cell equals what `transformer_lens.patching` computes with one full forward pass per
cell. We get the same numbers doing much less work (`actpatch.patching.cells` says how):
- cells are batched: one batched run per layer computes every head (or position) at once;
- a patched run starts at the patched layer, from the base run's cached residual stream;
- positions before the first token where the prompts differ are identical in both runs, and a
  causal model's earlier positions cannot see later ones, so those positions are never
  recomputed: their keys and values come from the base run's cache, and a patch there is a
  no-op whose answer is the base run's;
- the last layer computes only the final position, and a logit difference reads only the two
  answers' columns of the unembedding.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import torch
from torch import Tensor

from actpatch.errors import InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.budget import chunk_size, parse_memory
from actpatch.patching.cells import (
    Setup,
    all_cells,
    axis_sizes,
    metric_values_per_pair,
    prepare,
    run_cells,
)
from actpatch.patching.components import get_component
from actpatch.patching.experiment import Experiment, can_pad, check_experiment, padded
from actpatch.patching.groups import Progress
from actpatch.patching.options import BATCHINGS, check_index
from actpatch.patching.results.sweeps import PatchResult, SweepResult, TopToken
from actpatch.patching.statistics import Bootstrap, bootstrap_interval

# Called with a snapshot of the sweep after each batch of cells: unfinished cells are NaN and
# `complete` is False (streaming: a page can draw the heatmap as it fills in).
OnPartial = Callable[[SweepResult], None]
# With a partial-result callback, a sweep runs in at least this many batches (when it has that
# many cells), so that snapshots come while it computes. A cell joins the batch at its own
# layer, so smaller batches do the same work; they only batch it less.
STREAM_BATCHES = 4


def sweep(
    exp: Experiment,
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    *,
    positions: str = "auto",
    bootstrap: Bootstrap | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_partial: OnPartial | None = None,
    max_memory: int | str | None = None,
) -> SweepResult:
    """Patch every cell of `component` and return the metric after each patch.

    `component` is one of `actpatch.COMPONENTS` (e.g. "z" for heads over all positions,
    "resid_pre" by layer and position). `metric` defaults to logit_diff when the experiment
    has a wrong answer, else the target's probability. `positions` ("auto", "index", "role")
    says whether a position-resolved component's columns are token positions or the roles the
    pairs name ("auto": index for one experiment). The result keeps every pair's values
    (`per_pair`) and, over two pairs or more, a bootstrap interval per cell (`ci`, see
    `actpatch.patching.statistics`; `bootstrap` sets its level, resamples and seed).
    `progress(done, total)` is called as cells finish; `should_stop()` returning True cancels
    the sweep (CancelledError); `on_partial(snapshot)` receives the sweep so far after each
    batch of cells.
    `max_memory` (bytes, or e.g. "4GB"; default `budget.default_budget`: 1 GiB on a CPU, half
    the free memory on a GPU) bounds the activations one batched run holds: more cells than fit
    run in several batches, slower rather than out of memory.
    """
    check_experiment(exp)
    budget = parse_memory(max_memory, exp.model.device)
    t0 = time.perf_counter()
    convention = "index" if positions == "auto" else positions
    setup = prepare(exp, component, metric, direction, convention)
    comp = setup.component
    by_role = setup.convention == "role"
    with torch.inference_mode():
        clean_pairs = metric_values_per_pair(setup, exp.run("clean").final)[0].float().cpu()
        corrupt_pairs = metric_values_per_pair(setup, exp.run("corrupt").final)[0].float().cpu()
        base_pairs = corrupt_pairs if setup.direction == "denoising" else clean_pairs

        cells = all_cells(setup)
        sizes = axis_sizes(setup)
        shape = tuple(sizes[a] for a in comp.axes)
        # (pairs, *cells): every pair's metric after each cell's patch. NaN until computed.
        per_pair = torch.full((exp.n_pairs, *shape), float("nan"))
        # Every cell runs from the first position where the runs differ. (A cell patched at a
        # later position could start there, but on a CPU fewer, larger batched calls beat
        # skipping those few positions: the weights are read once per call.)
        todo: list[tuple[int, ...]] = []
        no_op: list[tuple[int, ...]] = []
        for cell in cells:
            if comp.by_pos and not by_role:
                pos = cell[1]
                if not setup.aligned(pos):
                    continue  # no counterpart in the other prompt: not patched (NaN)
                if pos < setup.start:
                    no_op.append(cell)  # identical in both runs: the base run's answer
                    continue
            todo.append(cell)
        if no_op:
            _put(per_pair, no_op, base_pairs.expand(len(no_op), -1))

        def result(complete: bool, done: int = 0) -> SweepResult:
            return _sweep_result(
                setup,
                per_pair,
                clean_pairs,
                corrupt_pairs,
                t0,
                bootstrap=bootstrap if complete else None,
                complete=complete,
                values_done=done * exp.n_pairs,
                values_total=len(todo) * exp.n_pairs,
            )

        total, done = len(todo), 0
        if progress is not None:
            progress(0, total)
        chunk = chunk_size(setup, budget)
        if on_partial is not None:
            chunk = min(chunk, max(1, -(-total // STREAM_BATCHES)))
        for i in range(0, total, chunk):
            part = todo[i : i + chunk]

            def report(fraction: float, before: int = done, size: int = len(part)) -> None:
                if progress is not None and fraction < 1:
                    progress(before + int(fraction * size), total)

            final = run_cells(setup, part, setup.start, report, should_stop)
            values = metric_values_per_pair(setup, final).float().cpu()  # (cells, pairs)
            _put(per_pair, part, values)
            done += len(part)
            if progress is not None:
                progress(done, total)
            if on_partial is not None and done < total:
                on_partial(result(False, done))
    return result(True, total)


def _put(per_pair: Tensor, cells: list[tuple[int, ...]], values: Tensor) -> None:
    """Write each cell's values (cells, pairs) into per_pair (pairs, *cells), in one indexed
    copy rather than one per cell (on a GPU a sweep waits on such small operations)."""
    index = torch.tensor(cells, dtype=torch.long).T  # (axes, cells)
    per_pair[(slice(None), *index)] = values.T.to(per_pair.dtype)


def _sweep_result(
    setup: Setup,
    per_pair: Tensor,
    clean_pairs: Tensor,
    corrupt_pairs: Tensor,
    t0: float,
    *,
    bootstrap: Bootstrap | None,
    complete: bool,
    values_done: int,
    values_total: int,
) -> SweepResult:
    """The sweep's result from its per-pair values (a snapshot while it runs: `complete` False)."""
    exp, comp = setup.exp, setup.component
    clean_value, corrupt_value = float(clean_pairs.mean()), float(corrupt_pairs.mean())
    raw = per_pair.mean(dim=0)
    normalized, note = metrics.normalized(raw, clean_value, corrupt_value, setup.metric)
    by_role = setup.convention == "role" and comp.by_pos
    n_pos = setup.n_tokens
    patched = [p for p in range(n_pos) if setup.aligned(p)]
    ci = (
        bootstrap_interval(per_pair, clean_pairs, corrupt_pairs, bootstrap or Bootstrap())
        if complete
        else None
    )
    return SweepResult(
        model=exp.model.name,
        component=comp.name,
        metric=setup.metric,
        direction=setup.direction,
        axes=comp.axes,
        raw=raw,
        normalized=normalized,
        clean=clean_value,
        corrupt=corrupt_value,
        tokens=exp.model.to_str_tokens(setup.base.tokens[0]),
        clean_tokens=exp.str_tokens("clean"),
        corrupt_tokens=exp.str_tokens("corrupt"),
        patched_positions=patched,
        unpatched_positions=[p for p in range(n_pos) if not setup.aligned(p)],
        identical_positions=list(range(min(exp.first_diff, n_pos))),
        alignment=exp.alignment.to_dict(),
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        note=note,
        warnings=guardrails.check(exp, setup.metric, clean_value, corrupt_value),
        per_pair=per_pair,
        clean_per_pair=clean_pairs,
        corrupt_per_pair=corrupt_pairs,
        ci=ci,
        position_convention="role" if by_role else "index",
        position_labels=list(exp.roles.names) if by_role and exp.roles is not None else [],
        complete=complete,
        values_done=None if complete else values_done,
        values_total=None if complete else values_total,
    )


def _top_tokens(exp: Experiment, probs: Tensor, k: int) -> list[TopToken]:
    values, ids = probs.topk(k)
    return [
        TopToken(exp.model.tokenizer.decode([int(i)]), float(v))
        for v, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]


def patch(
    exp: Experiment,
    layer: int,
    head: int | None = None,
    pos: int | None = None,
    *,
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    top_k: int = 10,
) -> PatchResult:
    """Patch one cell (by default one head's output over all positions) and report the result.

    Returns the target's probability and rank in the clean, corrupted and patched runs, the
    recovery (normalized probability, %), each run's top-k tokens, and the chosen metric.
    """
    setup = prepare(exp, component, metric, direction)
    comp, model = setup.component, exp.model
    vocab = int(exp.logits("clean").shape[-1])
    top_k = check_index(vocab + 1, "top_k", top_k, f"list 0 to {vocab} (every token) top tokens")
    for axis, value in (("head", head), ("pos", pos)):
        if value is not None and axis not in comp.axes:
            raise InputError(
                f"Component {comp.name!r} is indexed by {', '.join(comp.axes)}, not by {axis}: "
                f"leave {axis} out, or patch a component that has one (e.g. "
                f"{'z' if axis == 'head' else 'resid_pre or z_by_pos'}).",
                field=axis,
            )
    layer = check_index(model.n_layers, "layer", layer)
    index: dict[str, int] = {"layer": layer}
    cell: list[int] = [layer]
    for axis in comp.axes[1:]:
        value = head if axis == "head" else pos
        if value is None:
            raise InputError(
                f"Component {comp.name!r} is indexed by {', '.join(comp.axes)}: give {axis}.",
                field=axis,
            )
        value = check_index(axis_sizes(setup)[axis], axis, value)
        index[axis] = value
        cell.append(value)

    with torch.inference_mode():
        runner = exp.runner
        clean_final, corrupt_final = exp.run("clean").final, exp.run("corrupt").final
        base_final = corrupt_final if setup.direction == "denoising" else clean_final
        note = None
        if comp.by_pos and not setup.aligned(cell[1]):
            patched_final = base_final
            note = (
                f"Position {cell[1]} has no counterpart in the other prompt: nothing was patched."
            )
        elif comp.by_pos and cell[1] < setup.start:
            patched_final = base_final
            note = f"Position {cell[1]} is identical in both prompts: the patch changes nothing."
        else:
            start = max(setup.start, cell[1]) if comp.by_pos else setup.start
            patched_final = run_cells(setup, [tuple(cell)], start)

        target = exp.target_ids
        logits = {
            "clean": exp.logits("clean"),
            "corrupt": exp.logits("corrupt"),
            "patched": runner.unembed(patched_final),
        }
        probs = {k: v.softmax(-1) for k, v in logits.items()}
        rows = torch.arange(exp.n_pairs, device=target.device)
        prob = {k: float(v[rows, target].mean()) for k, v in probs.items()}
        rank = {
            k: float(metrics.from_logits("rank", v, target, None).mean()) for k, v in logits.items()
        }
        values = {
            k: float(metrics.from_logits(setup.metric, v, target, exp.wrong_ids).mean())
            for k, v in logits.items()
        }

    return PatchResult(
        model=model.name,
        component=comp.name,
        direction=setup.direction,
        index=index,
        clean_prob=prob["clean"],
        corrupt_prob=prob["corrupt"],
        patched_prob=prob["patched"],
        recovery_pct=100 * metrics.normalize(prob["patched"], prob["clean"], prob["corrupt"]),
        clean_rank=round(rank["clean"]),
        corrupt_rank=round(rank["corrupt"]),
        patched_rank=round(rank["patched"]),
        top_clean=_top_tokens(exp, probs["clean"].mean(0), top_k),
        top_corrupt=_top_tokens(exp, probs["corrupt"].mean(0), top_k),
        top_patched=_top_tokens(exp, probs["patched"].mean(0), top_k),
        metric=setup.metric,
        metric_clean=values["clean"],
        metric_corrupt=values["corrupt"],
        metric_patched=values["patched"],
        metric_normalized=metrics.normalize(values["patched"], values["clean"], values["corrupt"]),
        patched_positions=[p for p in range(setup.n_tokens) if setup.aligned(p)],
        tokens=model.to_str_tokens(setup.base.tokens[0]),
        backend=exp.backend,
        devices=exp.model.devices,
        note=note,
        warnings=guardrails.check(exp, setup.metric, values["clean"], values["corrupt"]),
    )


def sweep_many(
    experiments: list[Experiment],
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    *,
    positions: str = "auto",
    bootstrap: Bootstrap | None = None,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_partial: OnPartial | None = None,
    max_memory: int | str | None = None,
    batching: str = "auto",
    workers: int | None = None,
    ray_address: str | None = None,
) -> SweepResult:
    """One sweep over several experiments (e.g. a dataset's length groups), averaged per pair.

    Raw values, clean and corrupted baselines are averaged over all pairs (each group weighted
    by its number of pairs), as TransformerLens averages a metric over its batch; the normalized
    value is then computed from those averages. `per_pair` holds every pair's values in the
    dataset's order (each experiment's `pair_index`), and `ci` is computed over all pairs.
    A position-resolved component over several lengths is indexed by role (`positions` "role",
    which "auto" picks there); by token index it needs one group.

    `batching`: "padded" runs every group in one left-padded batch (the same numbers: each
    real token computes what it computes in its own group; `actpatch.arch.forward`), "grouped"
    one sweep per group, "auto" pads where `pad_faster` expects it to be faster. The result's
    `batching` says which ran and `batching_note` why.

    `workers` (a number of Ray workers, started here) or `ray_address` (a Ray cluster's
    address, or "auto") runs the batches on workers that each hold the model once, with the
    same numbers (`actpatch.patching.groups`); `on_partial` then receives a snapshot as each
    batch finishes.
    """
    experiments = groups.check_experiments(experiments, "sweep_many")
    comp = get_component(component)
    groups.check_workers(workers, ray_address)
    if batching not in BATCHINGS:
        raise InputError(
            f"Unknown batching {batching!r}: use 'auto', 'padded' (the length groups left-padded "
            "into one batch) or 'grouped' (one sweep per length group).",
            field="batching",
        )
    if positions == "auto":
        positions = "role" if comp.by_pos and len(experiments) > 1 else "index"
    if len(experiments) == 1:
        return sweep(
            experiments[0],
            component,
            metric,
            direction,
            positions=positions,
            bootstrap=bootstrap,
            progress=progress,
            should_stop=should_stop,
            on_partial=on_partial,
            max_memory=max_memory,
        )
    if comp.by_pos and positions == "index":
        lengths = sorted(
            {(e.clean_tokens.shape[1], e.corrupt_tokens.shape[1]) for e in experiments}
        )
        raise InputError(
            f"Component {comp.name!r} is resolved by position, but the prompt pairs have "
            f"{len(lengths)} different token lengths {lengths}: a position means different "
            "things in each. Index positions by role (the pairs must name their roles, as "
            "the ioi dataset does), use one template (same length), or a component over all "
            "positions (z, q, k, v, pattern).",
            field="component",
        )
    if comp.by_pos:
        names = {e.roles.names if e.roles is not None else () for e in experiments}
        if len(names) > 1:
            raise InputError(
                f"The length groups name different roles {sorted(names)}: every pair of a "
                "role-indexed sweep must name the same roles.",
                field="positions",
            )
    why = can_pad(experiments) if batching != "grouped" else "grouping was asked for"
    if why is not None and batching == "padded":
        raise InputError(
            f"These length groups cannot be padded into one batch: {why}. Use batching "
            "'grouped' or 'auto'.",
            field="batching",
        )
    batches = experiments  # what runs: the length groups, or padded batches of them
    if why is None:
        buckets = pad_buckets(experiments, one_batch=batching == "padded")
        if len(buckets) < len(experiments):
            batches = [group[0] if len(group) == 1 else padded(group) for group in buckets]
        else:
            why = (
                "no two length groups recompute the same number of positions, so padding "
                "them together would compute more positions than it saves"
            )
    sizes = sorted({int(e.clean_tokens.shape[1]) for e in experiments})
    how, note_on_batching = "grouped", why
    if batches is not experiments:
        how = "padded"
        note_on_batching = (
            f"{len(experiments)} length groups ({sizes[0]} to {sizes[-1]} tokens) ran as "
            f"{len(batches)} left-padded batch{'es' if len(batches) > 1 else ''}"
        )
    t0 = time.perf_counter()
    n_total = sum(e.n_pairs for e in experiments)
    order = [i for e in batches for i in e.pair_index]
    if sorted(order) != list(range(n_total)):
        order = list(range(n_total))  # experiments not from one dataset: keep their order
    # where each batch's pairs go in the dataset's order: rows order[starts[i]:starts[i + 1]]
    starts = [0]
    for exp in batches:
        starts.append(starts[-1] + exp.n_pairs)
    done: dict[int, SweepResult] = {}  # the batches finished so far, by index

    def combined(parts: dict[int, SweepResult], complete: bool) -> SweepResult:
        """The sweep over the pairs of `parts` (a running sweep: not-yet-computed pairs NaN)."""
        first = parts[min(parts)]
        per_pair = torch.full((n_total, *first.raw.shape), float("nan"))
        clean = torch.full((n_total,), float("nan"))
        corrupt = torch.full((n_total,), float("nan"))
        for i, part in parts.items():
            rows = torch.tensor(order[starts[i] : starts[i + 1]])
            assert part.per_pair is not None and part.clean_per_pair is not None
            assert part.corrupt_per_pair is not None
            per_pair[rows], clean[rows] = part.per_pair, part.clean_per_pair
            corrupt[rows] = part.corrupt_per_pair
        have = ~clean.isnan()  # the pairs computed so far
        raw = per_pair[have].nanmean(dim=0) if not complete else per_pair.mean(dim=0)
        clean_value = float(clean[have].mean())
        corrupt_value = float(corrupt[have].mean())
        normalized, note = metrics.normalized(raw, clean_value, corrupt_value, first.metric)
        ci = None
        if complete:
            ci = bootstrap_interval(per_pair, clean, corrupt, bootstrap or Bootstrap())
        # Warnings over the whole dataset ("3 of 16 pairs", not each group's own count), from
        # the batches that ran (a running sweep's partial result: those done so far).
        ran = [batches[i] for i in sorted(parts)]
        warnings = guardrails.check_many(ran, first.metric, clean_value, corrupt_value)
        if how == "padded":  # positions are described by the first group, never padded ones
            first = _as_first_group(first, experiments[0])
        ordered = [parts[i] for i in sorted(parts)]
        return groups.pooled(
            first,
            experiments,
            ordered,
            clean=clean_value,
            corrupt=corrupt_value,
            raw=raw,
            normalized=normalized,
            note=note,
            seconds=time.perf_counter() - t0,
            warnings=warnings,
            length_groups=groups.length_groups(experiments),
            batching=how,
            batching_note=note_on_batching,
            per_pair=per_pair,
            clean_per_pair=clean,
            corrupt_per_pair=corrupt,
            ci=ci,
            complete=complete,
            values_done=None if complete else int((~per_pair[have].isnan()).sum()),
            values_total=None if complete else per_pair.numel(),
        )

    def finished(i: int, result: SweepResult) -> None:
        done[i] = result
        if on_partial is not None and len(done) < len(batches):
            on_partial(combined(done, complete=False))

    def within(i: int) -> OnPartial:
        """Batch i's snapshots as snapshots of the whole sweep (in this process only)."""

        def partial(snapshot: SweepResult) -> None:
            if on_partial is not None:
                on_partial(combined({**done, i: snapshot}, complete=False))

        return partial

    here = workers is None and ray_address is None
    each = [{"on_partial": within(i)} for i in range(len(batches))]
    groups.run_each(
        sweep,
        batches,
        progress=progress,
        should_stop=should_stop,
        workers=workers,
        ray_address=ray_address,
        each=each if here and on_partial is not None else None,
        on_result=finished,
        component=component,
        metric=metric,
        direction=direction,
        positions=positions,
        bootstrap=Bootstrap(n_boot=1),
        max_memory=max_memory,
    )
    return combined(done, complete=True)


def recomputed(exp: Experiment) -> int:
    """How many positions a sweep of `exp` recomputes: from the first differing one to the end.
    Left-padded together, groups recompute the most any of them does."""
    n_pos = int(exp.corrupt_tokens.shape[1])
    return n_pos - min(exp.first_diff, n_pos - 1)


def pad_buckets(experiments: list[Experiment], one_batch: bool = False) -> list[list[Experiment]]:
    """The length groups that run as one left-padded batch each: groups that recompute the same
    number of positions (padding adds no recomputed position to them), or all (`one_batch`).

    Padding groups that recompute different numbers of positions makes the shorter ones
    recompute more; measured on the demo model (benchmarks/bench_datasets.py), that extra work
    costs about what the saved batches save, so "auto" pads only where it adds none.
    """
    if one_batch:
        return [list(experiments)]
    buckets: dict[int, list[Experiment]] = {}
    for exp in experiments:
        buckets.setdefault(recomputed(exp), []).append(exp)
    return list(buckets.values())


def _as_first_group(result: SweepResult, first: Experiment) -> SweepResult:
    """`result` (of a padded batch) with its positions described by the first length group's
    prompts, as a grouped sweep describes them (a padded batch's pairs align one to one)."""
    base = first.corrupt_tokens if result.direction == "denoising" else first.clean_tokens
    n_pos = int(base.shape[1])
    return dataclasses.replace(
        result,
        tokens=first.model.to_str_tokens(base[0]),
        clean_tokens=first.str_tokens("clean"),
        corrupt_tokens=first.str_tokens("corrupt"),
        patched_positions=list(range(n_pos)),
        unpatched_positions=[],
        identical_positions=list(range(min(first.first_diff, n_pos))),
        alignment=first.alignment.to_dict(),
    )
