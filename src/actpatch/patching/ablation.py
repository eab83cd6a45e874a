"""Ablation sweeps: knock out each cell of a component in the clean run and measure the answer.

An ablation replaces an activation with a value that carries no information about this prompt,
and asks whether the behaviour survives (is the component necessary?). It is a sweep like
activation patching, with the same cells, batching and normalization; only the value patched
in differs. Definitions (what each cell's entries are set to):

- `zero`: 0.
- `mean`: the activation's mean over the experiment's prompts, position by position: every
  clean prompt and, when they have the clean prompts' token length, every corrupted prompt
  (with a dataset such as ioi:50, that is all its prompts of the clean prompts' length).
  Positions are not averaged together: position p takes the mean of position p.
- `resample`: the activation of another pair's clean prompt at the same position: pair i takes
  pair `resample_from[i]`'s, a seeded random permutation with no fixed point (so no pair keeps
  its own). It needs at least two pairs of one token length.

The base run is always the clean run (the one that shows the behaviour); the result's
`direction` says "noising", the direction whose base is the clean run, and it is normalized as
every sweep is: 1 = the clean run's metric (the ablation changed nothing), 0 = the corrupted
run's. Every position is ablated, BOS and the prompt's shared prefix included, since an
ablation value differs from the clean run everywhere; a by-position sweep therefore shows every
position, and an over-all-positions cell (a head) ablates every position at once.

Over several length groups (a dataset of several templates), each group is ablated with its own
mean or resampling and the raw values are averaged over pairs, as `sweep_many` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from actpatch.errors import InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.budget import chunk_size, parse_memory
from actpatch.patching.cells import (
    Setup,
    all_cells,
    axis_sizes,
    metric_values,
    run_cells,
)
from actpatch.patching.components import get_component
from actpatch.patching.experiment import Experiment, Run, check_experiment
from actpatch.patching.groups import Progress
from actpatch.patching.options import ABLATIONS, check_metric
from actpatch.patching.results.sweeps import AblationResult
from actpatch.patching.results.warning import ResultWarning

SMALL_REFERENCE = 10  # fewer prompts than this make a mean close to each prompt's own value


def check_ablation(method: str) -> str:
    """The ablation, checked: zero, mean or resample."""
    if method not in ABLATIONS:
        raise InputError(
            f"Unknown ablation {method!r}. Choose "
            + ", ".join(f"{name!r} ({what})" for name, what in ABLATIONS.items())
            + ".",
            field="ablate",
        )
    return method


def derangement(n: int, seed: int) -> list[int]:
    """A seeded random permutation of range(n) with no fixed point (n >= 2)."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(n, generator=generator).tolist()
        if all(i != j for i, j in enumerate(order)):
            return [int(j) for j in order]


def _values(exp: Experiment, hook: str, method: str, seed: int) -> tuple[dict, str, list[int]]:
    """Each layer's ablation value at `hook`, shaped like the clean run's activation; what the
    value was computed from; and, for resampling, which pair each pair took its value from."""
    clean = exp.run("clean", [hook])
    n_layers = exp.runner.n_layers
    keys = [(hook, layer) for layer in range(n_layers)]
    if method == "zero":
        return {k: torch.zeros_like(clean.cache[k]) for k in keys}, "zeros", []
    if method == "mean":
        same_length = exp.corrupt_tokens.shape == exp.clean_tokens.shape
        corrupt = exp.run("corrupt", [hook]) if same_length else None
        out = {}
        for k in keys:
            reference = clean.cache[k]
            if corrupt is not None:
                reference = torch.cat([reference, corrupt.cache[k]])
            out[k] = reference.mean(0, keepdim=True).expand_as(clean.cache[k])
        n = exp.n_pairs * (2 if same_length else 1)
        which = "clean and corrupted" if same_length else "clean"
        noun = "prompt" if n == 1 else "prompts"
        return out, f"mean over the experiment's {n} {which} {noun}, position by position", []
    if exp.n_pairs < 2:
        raise InputError(
            "Resample ablation takes each pair's activation from another pair's prompt, and this "
            "experiment has one pair. Give several pairs of one token length (a dataset such as "
            "ioi:20), or use zero or mean ablation.",
            field="ablate",
        )
    order = derangement(exp.n_pairs, seed)
    index = torch.tensor(order, device=exp.model.device)
    return (
        {k: clean.cache[k][index] for k in keys},
        f"another pair's clean prompt (seed {seed})",
        order,
    )


def ablate(
    exp: Experiment,
    component: str = "z",
    method: str = "zero",
    metric: str | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
) -> AblationResult:
    """Ablate every cell of `component` in the clean run (zero, mean or resample ablation) and
    return the metric after each ablation, raw and normalized (clean = 1, corrupt = 0).
    `max_memory` bounds the activations one batched run may hold, as in `sweep`."""
    t0 = time.perf_counter()
    check_experiment(exp)
    method = check_ablation(method)
    budget = parse_memory(max_memory, exp.model.device)
    comp = get_component(component)
    metric = check_metric(metric, exp.wrong_ids is not None)
    if comp.hook not in exp.runner.hook_names:
        raise InputError(
            f"{exp.model.name} has no {comp.hook} to ablate"
            + (
                " (its attention and MLP both read the block's input): ablate attn_out or "
                "mlp_out instead."
                if comp.hook == "resid_mid"
                else "."
            ),
            field="component",
        )
    values, reference, order = _values(exp, comp.hook, method, seed)
    clean = exp.run("clean", [comp.hook])
    n_pos = int(clean.tokens.shape[1])
    setup = Setup(
        exp=exp,
        component=comp,
        metric=metric,
        direction="noising",
        base=clean,
        # the run the patched values come from: the ablation values, at every position
        source=Run(clean.tokens, clean.final, values),
        start=0,
        base_to_source={p: p for p in range(n_pos)},
    )
    with torch.inference_mode():
        clean_value = float(metric_values(setup, exp.run("clean").final)[0])
        corrupt_value = float(metric_values(setup, exp.run("corrupt").final)[0])
        sizes = axis_sizes(setup)
        shape = tuple(sizes[a] for a in comp.axes)
        raw = torch.full(shape, float("nan"))
        cells = all_cells(setup)
        total, done = len(cells), 0
        if progress is not None:
            progress(0, total)
        chunk = chunk_size(setup, budget)
        for i in range(0, total, chunk):
            part = cells[i : i + chunk]
            final = run_cells(setup, part, 0, should_stop=should_stop)
            for cell, value in zip(part, metric_values(setup, final).tolist(), strict=True):
                raw[cell] = value
            done += len(part)
            if progress is not None:
                progress(done, total)
    normalized, note = metrics.normalized(raw, clean_value, corrupt_value, metric)
    warnings = guardrails.check(exp, metric, clean_value, corrupt_value)
    n_reference = _n_reference(exp)
    if method == "mean" and n_reference < SMALL_REFERENCE:
        warnings.append(
            ResultWarning(
                "small_reference",
                f"The mean is taken over only {n_reference} prompts: with so few it is close to "
                "this prompt's own activation and ablates little. Average over a dataset (one "
                "such as ioi:50).",
                "ablate",
            )
        )
    return AblationResult(
        model=exp.model.name,
        component=comp.name,
        metric=metric,
        direction="noising",
        axes=comp.axes,
        raw=raw,
        normalized=normalized,
        clean=clean_value,
        corrupt=corrupt_value,
        tokens=exp.str_tokens("clean"),
        clean_tokens=exp.str_tokens("clean"),
        corrupt_tokens=exp.str_tokens("corrupt"),
        patched_positions=list(range(n_pos)),
        unpatched_positions=[],
        identical_positions=[],
        alignment=exp.alignment.to_dict(),
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        devices=exp.model.devices,
        note=note,
        warnings=warnings,
        ablation=method,
        reference=reference,
        seed=seed if method == "resample" else None,
        resample_from=order,
    )


def _n_reference(exp: Experiment) -> int:
    """How many prompts mean ablation averages over: the clean ones, and the corrupted ones
    when they have the same length."""
    return exp.n_pairs * (2 if exp.corrupt_tokens.shape == exp.clean_tokens.shape else 1)


def ablate_many(
    experiments: list[Experiment],
    component: str = "z",
    method: str = "zero",
    metric: str | None = None,
    *,
    seed: int = 0,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_memory: int | str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
) -> AblationResult:
    """`ablate` over several experiments (a dataset's length groups), averaged per pair; each
    group takes its own mean or resampling. Position-resolved components need one group.
    `workers` or `ray_address` runs the groups on Ray workers (`actpatch.patching.groups`)."""
    experiments = groups.check_experiments(experiments, "ablate_many")
    groups.check_workers(workers, ray_address)
    if len(experiments) == 1:
        return ablate(
            experiments[0],
            component,
            method,
            metric,
            seed=seed,
            progress=progress,
            should_stop=should_stop,
            max_memory=max_memory,
        )
    comp = get_component(component)
    if comp.by_pos:
        raise InputError(
            f"Component {comp.name!r} is resolved by position, but the prompt pairs have "
            f"{len(experiments)} different token lengths: a position means different things in "
            "each. Use one template (same length) or a component over all positions.",
            field="component",
        )
    t0 = time.perf_counter()
    results = groups.run_each(
        ablate,
        experiments,
        progress=progress,
        should_stop=should_stop,
        workers=workers,
        ray_address=ray_address,
        each=[{"seed": seed + i} for i in range(len(experiments))],
        component=component,
        method=method,
        metric=metric,
        max_memory=max_memory,
    )
    first = results[0]
    weights = groups.pair_weights(experiments)
    raw = groups.pool([r.raw for r in results], weights)
    # the baselines pooled in float32, as the raw values are (as ablate_many always has)
    clean = float(groups.pool([torch.tensor(r.clean) for r in results], weights))
    corrupt = float(groups.pool([torch.tensor(r.corrupt) for r in results], weights))
    normalized, note = metrics.normalized(raw, clean, corrupt, first.metric)
    warnings = guardrails.check_many(experiments, first.metric, clean, corrupt)
    sizes = [_n_reference(e) for e in experiments]
    small = sorted(n for n in sizes if n < SMALL_REFERENCE)
    if method == "mean" and small:
        warnings.append(
            ResultWarning(
                "small_reference",
                f"In {len(small)} of {len(experiments)} length groups the mean is taken over "
                f"fewer than {SMALL_REFERENCE} prompts ({', '.join(map(str, small))}): there it is "
                "close to each prompt's own activation and ablates little. Use a dataset of one "
                "template, or more pairs.",
                "ablate",
            )
        )
    if method == "mean":
        reference = (
            f"mean over each of {len(experiments)} length groups' prompts ({min(sizes)} to "
            f"{max(sizes)} prompts), position by position"
        )
    elif method == "resample":
        reference = f"another pair's clean prompt of the same length group (seeds {seed}..)"
    else:
        reference = first.reference
    return groups.pooled(
        first,
        experiments,
        results,
        clean=clean,
        corrupt=corrupt,
        raw=raw,
        normalized=normalized,
        note=note,
        seconds=time.perf_counter() - t0,
        warnings=warnings,
        reference=reference,
        resample_from=[],
        length_groups=groups.length_groups(experiments),
    )


__all__ = ["ABLATIONS", "ablate", "ablate_many", "check_ablation", "derangement"]
