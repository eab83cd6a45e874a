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

Cost: one forward and one backward pass serve every component at once (`attribute_components`):
the gradient pass (`actpatch.patching.gradients`; on a cold experiment it is also the cached
forward of both runs) gives every hooked activation and its gradient, and each component's
estimate is a product of the two. All prompt pairs are one batch. Prompts of unequal length use
the exact sweep's alignment: unaligned positions are not patched.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, overload

import torch
from torch import Tensor

from actpatch.errors import CancelledError, InputError
from actpatch.patching import groups, guardrails, metrics
from actpatch.patching.atp import Estimate, Work, estimate
from actpatch.patching.budget import chunk_size, parse_memory
from actpatch.patching.cells import (
    Setup,
    all_cells,
    check_component,
    metric_values,
    prepare,
    run_cells,
)
from actpatch.patching.components import Component, get_component
from actpatch.patching.experiment import Experiment, can_pad, check_experiment, padded
from actpatch.patching.gradients import (
    check_backend,
    check_gradient_metric,
    gradient_run,
)
from actpatch.patching.groups import Progress
from actpatch.patching.options import ATTRIBUTION_METHODS, check_direction
from actpatch.patching.results.attributions import AttributionResult
from actpatch.patching.statistics import agreement

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
    return attribute_components(
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


def check_groups(experiments: Sequence[Experiment], component: str) -> Component:
    """The component attributed over several length groups; a teaching error where one
    left-padded batch cannot hold them, or the component is by position (a position is
    another token in each template)."""
    comp = get_component(component)
    if comp.by_pos:
        raise InputError(
            f"{comp.name} is by position, and the dataset's {len(experiments)} length groups "
            "put other tokens at each position: attribute one length group at a time, or a "
            "component without positions over the whole dataset (z: every head).",
            field="component",
        )
    why = can_pad(experiments)
    if why is not None:
        raise InputError(
            f"Attribution over {len(experiments)} length groups runs them as one left-padded "
            f"batch, which cannot be made here: {why}. Attribute each group on its own.",
            field="dataset",
        )
    return comp


@overload
def attribute_many(
    experiments: Sequence[Experiment],
    component: str = ...,
    method: str = ...,
    direction: str = ...,
    metric: str | None = ...,
    **options: Any,
) -> AttributionResult: ...


@overload
def attribute_many(
    experiments: Experiment,
    component: Sequence[str],
    method: str = ...,
    direction: str = ...,
    metric: str | None = ...,
    **options: Any,
) -> list[AttributionResult]: ...


def attribute_many(
    experiments: Sequence[Experiment] | Experiment,
    component: str | Sequence[str] = "z",
    method: str = "atp",
    direction: str = "denoising",
    metric: str | None = None,
    **options: Any,
) -> AttributionResult | list[AttributionResult]:
    """`attribute` over a dataset's length groups: every pair joined into one left-padded batch
    (`experiment.padded`), so one gradient estimates the whole dataset, as `attribute` does for
    one length. For AtP this equals each group's estimate averaged with its pairs' weight (the
    metric is a mean over pairs). A component by position needs one group: a position is
    another token in each template. `options` are `attribute`'s."""
    if isinstance(experiments, Experiment) and not isinstance(component, str):
        # The old `attribute_many(exp, components)`, now `attribute_components`: still answered.
        warnings.warn(
            "attribute_many(exp, components) is now attribute_components(exp, components); "
            "attribute_many takes a dataset's length groups, as every *_many function does.",
            FutureWarning,
            stacklevel=2,
        )
        return attribute_components(experiments, component, method, direction, metric, **options)
    experiments = groups.check_experiments(experiments, "attribute_many")
    if not isinstance(component, str):
        raise InputError(
            "attribute_many attributes one component over a dataset: give its name ('z').",
            field="component",
        )
    if len(experiments) == 1:
        return attribute(experiments[0], component, method, direction, metric, **options)
    comp = check_groups(experiments, component)
    result = attribute(padded(experiments), comp.name, method, direction, metric, **options)
    joined = f"{len(experiments)} length groups ran as one left-padded batch (one gradient)"
    note = joined if result.note is None else f"{result.note}; {joined}"
    return dataclasses.replace(result, note=note)


def attribute_components(
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
    """`attribute` for several components of one experiment, sharing one forward and backward
    pass: one result per component, in the order given."""
    t0 = time.perf_counter()
    check_experiment(exp)
    method = check_method(method)
    check_backend(exp)
    metric = check_gradient_metric(metric, exp.wrong_ids is not None)
    if verify < 0:
        raise InputError("verify must be 0 or a positive number of cells.", field="verify")
    budget = parse_memory(max_memory, exp.model.device)
    if isinstance(components, str):  # "z" or "z,resid_pre": not a list of its letters
        components = [c.strip() for c in components.split(",") if c.strip()]
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
    work = Work(exp, setups[0], grad)

    clean_value = float(metric_values(setups[0], exp.run("clean").final)[0])
    corrupt_value = float(metric_values(setups[0], exp.run("corrupt").final)[0])
    warnings = guardrails.check(exp, metric, clean_value, corrupt_value)
    # every component's estimate first (the gradients serve them all), then the exact patches
    estimates: list[Estimate] = []
    for comp_setup in setups:
        work.setup = comp_setup
        estimates.append(estimate(work, star=star, graddrop=bool(drop)))
        step()

    results = []
    for est in estimates:
        exact = None
        if compare:
            exact = _exact(est.setup, _sub(step), should_stop, max_memory)
        verified = _verify(est, verify, exact, should_stop, budget) if verify else []
        if verify:
            step(verify)
        results.append(
            _result(
                est,
                method,
                exact,
                verified,
                clean_value,
                corrupt_value,
                warnings,
                graddrop=bool(drop),
                seconds=time.perf_counter() - t0,
            )
        )
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


def _result(
    est: Estimate,
    method: str,
    exact: Tensor | None,
    verified: list[dict[str, Any]],
    clean: float,
    corrupt: float,
    warnings: list[Any],
    *,
    graddrop: bool,
    seconds: float,
) -> AttributionResult:
    """The component's result, whole: its estimate and, when computed, the exact effects."""
    setup = est.setup
    exp, comp, n_pos = setup.exp, setup.component, setup.n_positions
    note = None
    if not metrics.is_normalizable(clean, corrupt):
        note = (
            f"The clean and corrupted runs give the same {setup.metric} ({clean:.6g}), so the "
            "normalized estimate (a fraction of clean - corrupt) is undefined; only raw values "
            "are shown."
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
        estimate=est.estimate,
        normalized=metrics.normalized_effect(est.estimate, clean, corrupt),
        score=est.score,
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
        seconds=seconds,
        backend=exp.backend,
        devices=exp.model.devices,
        note=note,
        warnings=list(warnings),
        atp=est.atp,
        corrections=_corrections(est, exact),
        exact=exact,
        exact_normalized=(
            None if exact is None else metrics.normalized_effect(exact, clean, corrupt)
        ),
        agreement=None if exact is None else agreement(est.estimate, exact, est.score),
        agreement_atp=(None if exact is None or est.atp is None else agreement(est.atp, exact)),
        verified=verified,
    )


def _corrections(est: Estimate, exact: Tensor | None) -> list[dict[str, Any]]:
    """AtP*: the (up to 10) cells whose magnitude it changed most from plain AtP's, with the
    exact effect when it was computed."""
    atp, score = est.atp, est.score
    if atp is None:
        return []
    corrections: list[dict[str, Any]] = []
    change = (score - atp.abs()).abs().nan_to_num(0.0)
    tol = 1e-6 * max(1.0, float(score.nan_to_num(0.0).abs().max()))
    for idx in change.flatten().argsort(descending=True)[:10].tolist():
        cell = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), change.shape))
        if float(change[cell]) <= tol:
            break
        correction = {
            "cell": list(cell),
            "atp": float(atp[cell]),
            "atp_star": float(est.estimate[cell]),
            "score": float(score[cell]),
        }
        if exact is not None:
            correction["exact"] = float(exact[cell])
        corrections.append(correction)
    return corrections


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
    est: Estimate,
    k: int,
    exact: Tensor | None,
    should_stop: Callable[[], bool] | None,
    budget: int,
) -> list[dict[str, Any]]:
    """Patch exactly the k cells the estimate ranks first (by `score`); each cell costs one
    batch row. Cells before the first differing position, or without a counterpart, are
    skipped (their exact effect is known: none)."""
    setup = est.setup
    comp = setup.component
    score = est.score.nan_to_num(-1.0)
    order = score.flatten().argsort(descending=True).tolist()
    cells: list[tuple[int, ...]] = []
    for idx in order:
        cell = tuple(int(i) for i in torch.unravel_index(torch.tensor(idx), score.shape))
        if comp.by_pos and (not setup.aligned(cell[1]) or cell[1] < setup.start):
            continue
        if math.isnan(float(est.estimate[cell])):
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
            "estimate": float(est.estimate[c]),
            "score": float(est.score[c]),
            "exact": values[c],
        }
        for c in cells
    ]


__all__ = [
    "ATTRIBUTION_METHODS",
    "attribute",
    "attribute_components",
    "attribute_many",
    "check_groups",
    "check_method",
]
