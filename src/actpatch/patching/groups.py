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
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar, cast

from actpatch.patching import guardrails
from actpatch.patching.experiment import Experiment
from actpatch.patching.results.warning import ResultWarning

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


def pair_weights(experiments: Sequence[Experiment]) -> list[float]:
    """Each group's share of the dataset's pairs: what its averages weigh in the pooled ones."""
    total = sum(e.n_pairs for e in experiments)
    return [e.n_pairs / total for e in experiments]


def pool(values: Sequence[Pooled], weights: Sequence[float]) -> Pooled:
    """The average over every pair of a per-pair average (a number or a tensor of cells), from
    each group's value and weight (`pair_weights`)."""
    each: Sequence[Any] = values  # a float or a Tensor: either multiplies and adds
    return cast(Pooled, sum(w * v for w, v in zip(weights, each, strict=True)))


def merged_warnings(results: Sequence[Any]) -> list[ResultWarning]:
    """Every group's warnings, each once, in order (for what `guardrails.check_many` cannot
    recount over the dataset)."""
    return list(dict.fromkeys(w for r in results for w in r.warnings))


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
    "each_group",
    "length_groups",
    "merged_warnings",
    "pair_weights",
    "pool",
    "pooled",
]
