"""Length groups: one method over a dataset whose prompt pairs have several token lengths.

One batch holds prompts of one token length, so a dataset of several templates runs as several
experiments, one per *length group* (`experiment.group_by_length`, `dataset_experiments`). Each
`*_many` function (`sweep_many`, `ablate_many`, `path_patch_many`, `edge_attribution_many`,
`evaluate_many`) runs its method on every group and pools the results as if every pair had
been one batch. With one group it is the method itself. Over several:

- progress: group i of n reports its (done, total) as (i * total + done, n * total), one bar
  over the whole dataset (`each_group`); cancelling stops whichever group is running;
- pooling: each per-pair average (raw values, the clean and corrupted baselines, a circuit's
  metric, an edge's score or effect) becomes the average over every pair, each group weighted
  by its number of pairs (`pair_weights`, `pool`); a normalized value is then computed from the
  pooled numbers, never averaged (a ratio of means, as for one batch);
- the result: the first group's, with the pooled baselines, the dataset's number of pairs, the
  groups' seconds summed and the warnings of the whole dataset ("3 of 16 pairs", not each
  group's "1 of 2"; `guardrails.check_many`), plus what the method pooled itself (`pooled`).

A sweep pools further: it keeps every pair's values in the dataset's order and computes its
confidence interval over every pair (`engine.sweep_many`).

Where the groups run (`run_each`): one after another in this process, or, given `workers`
(a number of Ray workers on a local Ray instance) or `ray_address` (an existing Ray cluster),
as tasks on workers that each hold the model once (`actpatch.patching.workers`). Each group's
result comes back whole, every pair's values included, and is pooled here by the code above,
so a run over workers gives exactly the numbers, interval and warnings of one process. A
dataset of one length group runs here either way: there is nothing to spread.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, cast

from actpatch.errors import InputError
from actpatch.patching import guardrails
from actpatch.patching.experiment import Experiment

# `progress(done, total)`: how every method reports its work.
Progress = Callable[[int, int], None]
R = TypeVar("R")
Pooled = TypeVar("Pooled")


def each_group(
    experiments: Sequence[Experiment], progress: Progress | None = None
) -> Iterator[tuple[int, Experiment, Progress]]:
    """Each length group in turn: its index, its experiment, and the progress callback to give
    its method (which reports that group's (done, total) as a share of every group's work)."""
    n = len(experiments)
    for i, exp in enumerate(experiments):

        def report(done: int, total: int, offset: int = i) -> None:
            if progress is not None:
                progress(offset * total + done, n * total)

        yield i, exp, report


def check_experiments(experiments: Any, method: str) -> list[Experiment]:
    """The experiments a `*_many` function was given, as a list; a teaching error for one
    Experiment given alone, none at all, an item that is not an Experiment, or experiments on
    models of different shapes (each group's numbers would not line up)."""
    if isinstance(experiments, Experiment):
        single = method.removesuffix("_many")
        instead = f"call {single}(exp, ...) instead, or " if single != method else ""
        raise InputError(
            f"{method} takes a list of experiments (a dataset's length groups) and was given "
            f"one Experiment: {instead}pass [exp].",
            field="experiments",
        )
    if isinstance(experiments, str | bytes) or not isinstance(experiments, Iterable):
        raise InputError(
            f"{method} takes a list of experiments, not a {type(experiments).__name__}: build "
            "them with actpatch.group_by_length(model, clean, corrupt, target, wrong) or "
            "dataset_experiments(model, data).",
            field="experiments",
        )
    out = list(experiments)
    if not out:
        raise InputError(
            f"{method} was given no experiments: give at least one.", field="experiments"
        )
    for i, exp in enumerate(out):
        if not isinstance(exp, Experiment):
            raise InputError(
                f"Item {i} of {method}'s experiments is a {type(exp).__name__}, not an "
                "Experiment: build each with actpatch.Experiment(model, clean, corrupt, target, "
                "wrong).",
                field="experiments",
            )
    first = out[0].model
    for i, exp in enumerate(out[1:], start=1):
        model = exp.model
        if model is not first and (model.name, model.n_layers, model.n_heads) != (
            first.name,
            first.n_layers,
            first.n_heads,
        ):
            raise InputError(
                f"Experiment {i} runs on {model.name} ({model.n_layers} layers x "
                f"{model.n_heads} heads) but experiment 0 on {first.name} ({first.n_layers} x "
                f"{first.n_heads}): one {method} pools one model's results. Run each model's "
                "experiments in their own call.",
                field="experiments",
            )
    return out


def check_workers(workers: int | None, ray_address: str | None) -> bool:
    """Whether the groups are to run on Ray workers; a teaching error, at once, for a number of
    workers below 1, Ray not installed, or a cluster address where nothing answers."""
    if workers is None and ray_address is None:
        return False
    if workers is not None and workers < 1:
        raise InputError(
            f"{workers} workers asked for: give 1 or more, or none to run in this process.",
            field="workers",
        )
    from actpatch.patching import workers as ray_workers

    ray_workers.import_ray()
    if ray_address is not None and ray_address != "auto":
        ray_workers.check_reachable(ray_address)
    return True


def run_each(
    method: Callable[..., R],
    experiments: Sequence[Experiment],
    /,
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    each: Sequence[Mapping[str, Any]] | None = None,
    on_result: Callable[[int, R], None] | None = None,
    **options: Any,
) -> list[R]:
    """`method(experiment, **options)` on each length group, the results in the groups' order:
    one group after another here, or on Ray workers (`workers`, `ray_address`; see above).

    `method` is given `progress` (one bar over every group, `each_group`) and `should_stop`
    when it takes them; `each[i]` adds group i's own keyword arguments (e.g. a seed);
    `on_result(i, result)` is called as each group finishes (in any order on workers). On
    workers, `method`, `options` and `each` travel to other processes: a function of a module
    and plain values, never a closure.
    """
    extras = list(each) if each is not None else [{} for _ in experiments]
    if check_workers(workers, ray_address) and len(experiments) > 1:
        from actpatch.patching import workers as ray_workers

        if any(e.model is not experiments[0].model for e in experiments):
            raise InputError(
                "The length groups use different models; Ray workers hold one: run each "
                "model's groups on their own.",
                field="workers",
            )

        pool = ray_workers.pool_for(experiments[0].model, workers, ray_address)
        return pool.run(
            method,
            experiments,
            extras,
            options,
            progress=progress,
            should_stop=should_stop,
            on_result=on_result,
        )
    takes = inspect.signature(method).parameters
    results: list[R] = []
    for i, exp, report in each_group(experiments, progress):
        call = {**options, **extras[i]}
        if "progress" in takes:
            call["progress"] = report
        if "should_stop" in takes:
            call["should_stop"] = should_stop
        results.append(method(exp, **call))
        if on_result is not None:
            on_result(i, results[-1])
    return results


def pair_weights(experiments: Sequence[Experiment]) -> list[float]:
    """Each group's share of the dataset's pairs: what its averages weigh in the pooled ones."""
    total = sum(e.n_pairs for e in experiments)
    return [e.n_pairs / total for e in experiments]


def pool(values: Sequence[Pooled], weights: Sequence[float]) -> Pooled:
    """The average over every pair of a per-pair average (a number or a tensor of cells), from
    each group's value and weight (`pair_weights`)."""
    each: Sequence[Any] = values  # a float or a Tensor: either multiplies and adds
    return cast(Pooled, sum(w * v for w, v in zip(weights, each, strict=True)))


def length_groups(experiments: Sequence[Experiment]) -> list[dict[str, int]]:
    """The groups a result was pooled over: each one's token lengths and number of pairs."""
    return [
        {
            "clean_len": int(e.clean_tokens.shape[1]),
            "corrupt_len": int(e.corrupt_tokens.shape[1]),
            "n_pairs": e.n_pairs,
        }
        for e in experiments
    ]


def pooled(
    first: R,
    experiments: Sequence[Experiment],
    results: Sequence[Any],
    *,
    clean: float,
    corrupt: float,
    **fields: Any,
) -> R:
    """`first` (the first group's result, or one built like it) as the result over every pair:
    the pooled clean and corrupted metrics, the dataset's number of pairs, the `results`'
    seconds summed, the dataset's warnings, and `fields`, what the method pooled itself (which
    may also replace any of those)."""
    changes: dict[str, Any] = {
        "clean": clean,
        "corrupt": corrupt,
        "n_pairs": sum(e.n_pairs for e in experiments),
        "seconds": sum(r.seconds for r in results),
    }
    if "warnings" not in fields:
        metric = results[0].metric
        changes["warnings"] = guardrails.check_many(list(experiments), metric, clean, corrupt)
    return dataclasses.replace(first, **{**changes, **fields})  # type: ignore[type-var]


__all__ = [
    "Progress",
    "check_workers",
    "each_group",
    "length_groups",
    "pair_weights",
    "pool",
    "pooled",
    "run_each",
]
