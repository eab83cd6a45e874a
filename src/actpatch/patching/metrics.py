"""Metrics read from the final position's logits, and their normalization.

- `logit_diff`: logit of the target minus logit of the wrong answer.
- `prob`: probability of the target token. `logprob`: its log-probability.
- `rank`: its rank among all tokens, 1 = top.

A sweep reports each patched run's raw metric (averaged over prompt pairs, as TransformerLens
averages over its batch) and the normalized one, `(raw - corrupt) / (clean - corrupt)`: 1 is the
clean run's value, 0 the corrupted run's, whichever run was patched. Shown as a percentage it
is the recovery. An *effect* (a patch's change of the metric, as attribution estimates it and
exact edge patching measures it) is normalized by the same gap: `effect / (clean - corrupt)`.
When the clean and corrupted values are (nearly) equal, normalization is undefined
(`is_normalizable`), every normalized value is NaN, and we say so.

This module is the one definition of both: every method normalizes with these functions, and
reads a metric from final residual streams with `from_final`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import Tensor

from actpatch.errors import InputError
from actpatch.patching.options import METRICS, check_metric

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Float, Int

__all__ = [
    "METRICS",
    "check_metric",
    "from_final",
    "from_logits",
    "is_normalizable",
    "logit_diff",
    "normalize",
    "normalized",
    "normalized_effect",
]

# `unembed(final, columns)`: float32 logits of final residuals, all of them (columns None) or
# only the (rows, k) token ids' columns (a runner's `unembed`).
Unembed = Callable[..., Tensor]
Value = TypeVar("Value", float, Tensor)


def logit_diff(
    logits: Float[Tensor, "batch d_vocab"],
    target: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"],
) -> Float[Tensor, " batch"]:
    """The target's logit minus the wrong answer's, per row."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    return logits[rows, target] - logits[rows, wrong]


def from_logits(
    metric: str,
    logits: Float[Tensor, "batch d_vocab"],
    target: Int[Tensor, " batch"],
    wrong: Int[Tensor, " batch"] | None,
) -> Float[Tensor, " batch"]:
    """The metric per row of `logits`, for answer ids `target` and `wrong` (logit_diff only)."""
    rows = torch.arange(logits.shape[0], device=logits.device)
    if metric == "logit_diff":
        assert wrong is not None
        return logit_diff(logits, target, wrong)
    if metric == "prob":
        return logits.float().softmax(-1)[rows, target]
    if metric == "logprob":
        return logits.float().log_softmax(-1)[rows, target]
    if metric == "rank":
        target_logit = logits[rows, target][:, None]
        return 1.0 + (logits > target_logit).sum(-1).to(torch.float32)
    raise InputError(f"Unknown metric {metric!r}.", field="metric")


def from_final(
    metric: str,
    unembed: Unembed,
    final: Float[Tensor, "rows d_model"],
    target: Int[Tensor, " pairs"],
    wrong: Int[Tensor, " pairs"] | None,
) -> Float[Tensor, " rows"]:
    """The metric of each final residual stream, row r being pair r % pairs (a batch holds
    copies of the pairs: one per patched cell, or per interpolation point).

    A logit difference reads only the two answers' columns of the unembedding; the other
    metrics read every logit. Differentiable, so the gradient pass uses it too. (On the bridge
    backend a run's final rows are its logits already, which its `unembed` passes through.)
    """
    reps = final.shape[0] // target.shape[0]
    target = target.repeat(reps)
    if metric != "logit_diff":
        return from_logits(metric, unembed(final), target, None)
    assert wrong is not None
    answers = unembed(final, torch.stack([target, wrong.repeat(reps)], dim=1))  # (rows, 2)
    first = torch.zeros(len(answers), dtype=torch.long, device=answers.device)
    return logit_diff(answers, first, first + 1)  # column 0 is the target's, 1 the wrong's


def is_normalizable(clean: float, corrupt: float) -> bool:
    """Whether clean and corrupted differ enough for the normalized metric to mean anything."""
    return abs(clean - corrupt) > 1e-12 + 1e-6 * max(abs(clean), abs(corrupt))


def normalized_effect(effect: Value, clean: float, corrupt: float) -> Value:
    """A change of the metric as a fraction of clean - corrupt; NaN (every entry) when the
    clean and corrupted metrics are too close for the fraction to mean anything."""
    if not is_normalizable(clean, corrupt):
        return effect * math.nan
    return effect / (clean - corrupt)


def normalize(raw: float, clean: float, corrupt: float) -> float:
    """(raw - corrupt) / (clean - corrupt); NaN when clean and corrupted are equal."""
    if not math.isfinite(raw):
        return math.nan
    return normalized_effect(raw - corrupt, clean, corrupt)


def normalized(
    raw: Float[Tensor, "*cells"], clean: float, corrupt: float, metric: str
) -> tuple[Float[Tensor, "*cells"], str | None]:
    """(raw - corrupt) / (clean - corrupt) of every cell, or all NaN with a note saying why it
    is undefined."""
    if is_normalizable(clean, corrupt):
        return normalized_effect(raw - corrupt, clean, corrupt), None
    return torch.full_like(raw, float("nan")), (
        f"The clean and corrupted runs give the same {metric} ({clean:.6g}), so the normalized "
        "metric (clean = 1, corrupted = 0) is undefined; only raw values are shown. Choose "
        "prompts or answers that the model tells apart."
    )
