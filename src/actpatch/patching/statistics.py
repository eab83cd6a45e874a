"""Statistics: a bootstrap confidence interval for each cell of a sweep, and how far an estimate
is from the exact effects (`agreement`, with Pearson's and Spearman's correlations).

Vocabulary. A dataset sweep patches every cell for every prompt pair; `per_pair[p, ...]` is the
raw metric of pair p after the cell's patch, and `clean[p]`, `corrupt[p]` are pair p's
unpatched metrics. The sweep reports the mean over pairs, `raw = per_pair.mean(0)`, and the
*normalized mean* `(raw - mean(corrupt)) / (mean(clean) - mean(corrupt))` (clean = 1,
corrupted = 0): a ratio of means, as TransformerLens normalizes a batch-averaged metric.

The interval. A percentile bootstrap over pairs: draw `n_boot` resamples of the pairs with
replacement, compute the statistic on each, and report its (1 - level)/2 and (1 + level)/2
quantiles. For the normalized mean the pairs are resampled *jointly* with their clean and
corrupted baselines, so each resample's normalization uses that resample's own mean clean and
corrupted metrics: the interval carries the uncertainty of the baselines too (the denominator
of a ratio estimator is a random quantity like its numerator).

Matching TransformerLens. TransformerLens 4.3's `PatchingResult.bootstrap_ci` (with
`reduce="none"`) bootstraps the raw per-example metric: percentile intervals, resamples drawn by
`torch.randint(0, n, (chunk, n))` in chunks of 256 from a generator seeded by SHA-256 of
"seed:bootstrap:mean". We draw the same resamples the same way, so our interval of the raw mean
(`raw_low`, `raw_high`) equals theirs for the same seed; the normalized interval uses those same
draws. It has no normalized interval to compare with (its `normalized()` is per example).

Cost. Each resample is a weighted mean: a (n_boot, pairs) matrix of draw counts times the
(pairs, cells) values, computed a block of cells at a time, so memory stays at n_boot x block
whatever the sweep's size. With one pair there is nothing to resample: no interval.

Agreement. An estimate of every cell's effect (attribution patching's) against the exact
effects of the same cells: Pearson's correlation, Spearman's (Pearson's of the ranks, ties
averaged), the sign agreement of the cells that matter, the overlap of the top cells, and the
cells missed most (`agreement`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from actpatch.patching.metrics import is_normalizable
from actpatch.patching.serial import nested, tensor_of

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Float

# TransformerLens draws its bootstrap resamples in chunks of this many (same stream, same draws).
DRAW_CHUNK = 256
# How many (resample x cell) floats one block of the computation may hold.
BLOCK_FLOATS = 1 << 22


@dataclass(frozen=True)
class Bootstrap:
    """How to compute a sweep's confidence intervals: level, number of resamples, seed."""

    level: float = 0.95
    n_boot: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        from actpatch.errors import InputError

        if not 0.0 < self.level < 1.0:
            raise InputError(
                f"The confidence level must be between 0 and 1 (e.g. 0.95), got {self.level}.",
                field="ci_level",
            )
        if self.n_boot < 1:
            raise InputError(
                f"The number of bootstrap resamples must be at least 1, got {self.n_boot}.",
                field="n_boot",
            )


@dataclass(frozen=True)
class Interval:
    """A confidence interval per cell: `low`/`high` of the normalized mean, `raw_low`/`raw_high`
    of the raw mean (both shaped like the sweep's cells; NaN where the value is undefined)."""

    low: Tensor
    high: Tensor
    raw_low: Tensor
    raw_high: Tensor
    level: float
    n_boot: int
    seed: int
    method: str = "percentile_bootstrap"

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": nested(self.low),
            "high": nested(self.high),
            "level": self.level,
            "method": self.method,
            "n_boot": self.n_boot,
            "seed": self.seed,
            "of": "normalized mean over pairs (pairs resampled with their baselines)",
            "raw_low": nested(self.raw_low),
            "raw_high": nested(self.raw_high),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Interval:
        """The interval a `to_dict` wrote (e.g. a stored run's)."""
        return cls(
            low=tensor_of(data["low"]),
            high=tensor_of(data["high"]),
            raw_low=tensor_of(data["raw_low"]),
            raw_high=tensor_of(data["raw_high"]),
            level=float(data["level"]),
            n_boot=int(data["n_boot"]),
            seed=int(data["seed"]),
            method=str(data.get("method", "percentile_bootstrap")),
        )


def derive_generator(seed: int, *labels: object) -> torch.Generator:
    """A CPU generator keyed on `seed` and labels, by SHA-256 (stable across processes).

    The same convention as TransformerLens's `utilities.statistics.derive_generator`, so the
    same seed gives the same resamples.
    """
    key = ":".join([str(seed), *(str(label) for label in labels)]).encode()
    derived = int.from_bytes(hashlib.sha256(key).digest()[:8], "little") & 0x7FFFFFFFFFFFFFFF
    return torch.Generator(device="cpu").manual_seed(derived)


def resample_weights(n_pairs: int, n_boot: int, seed: int) -> Float[Tensor, "n_boot pairs"]:
    """How often each pair is drawn in each resample, divided by n. (n_boot, n_pairs), float64.

    Row b times a (pairs, ...) tensor is resample b's mean.
    """
    generator = derive_generator(seed, "bootstrap", "mean")
    counts = torch.zeros(n_boot, n_pairs, dtype=torch.float64)
    for first in range(0, n_boot, DRAW_CHUNK):
        size = min(DRAW_CHUNK, n_boot - first)
        draws = torch.randint(0, n_pairs, (size, n_pairs), generator=generator)
        counts[first : first + size].scatter_add_(
            1, draws, torch.ones(size, n_pairs, dtype=torch.float64)
        )
    return counts / n_pairs


def bootstrap_interval(
    per_pair: Float[Tensor, " pairs *cells"],
    clean: Float[Tensor, " pairs"],
    corrupt: Float[Tensor, " pairs"],
    options: Bootstrap | None = None,
) -> Interval | None:
    """The percentile bootstrap interval of each cell's normalized (and raw) mean over pairs.

    `per_pair`: (pairs, *cells) raw metric after each cell's patch; `clean`, `corrupt`: (pairs,)
    unpatched metrics. None with fewer than two pairs (one pair has nothing to resample).
    """
    options = options or Bootstrap()
    n_pairs = int(per_pair.shape[0])
    if n_pairs < 2:
        return None
    cell_shape = tuple(per_pair.shape[1:])
    values = per_pair.detach().to("cpu", torch.float64).reshape(n_pairs, -1)
    weights = resample_weights(n_pairs, options.n_boot, options.seed)  # (n_boot, pairs)
    clean_means = weights @ clean.detach().to("cpu", torch.float64)  # (n_boot,)
    corrupt_means = weights @ corrupt.detach().to("cpu", torch.float64)
    gap = (clean_means - corrupt_means)[:, None]
    alpha = (1.0 - options.level) / 2.0
    q = torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)
    n_cells = values.shape[1]
    block = max(1, BLOCK_FLOATS // options.n_boot)
    out = torch.empty(4, n_cells, dtype=torch.float64)
    for first in range(0, n_cells, block):
        part = values[:, first : first + block]
        raw_means = weights @ part  # (n_boot, block): each resample's mean
        normalized = (raw_means - corrupt_means[:, None]) / gap
        out[0:2, first : first + block] = torch.quantile(raw_means, q, dim=0)
        out[2:4, first : first + block] = torch.quantile(normalized, q, dim=0)
    # A cell that is undefined for the dataset (NaN: not patched; normalization undefined)
    # is undefined in its interval too.
    if not is_normalizable(float(clean.mean()), float(corrupt.mean())):
        out[2:4] = float("nan")  # the sweep's normalized mean is undefined: so is its interval
    out = out.to(torch.float32).reshape(4, *cell_shape)
    return Interval(
        low=out[2],
        high=out[3],
        raw_low=out[0],
        raw_high=out[1],
        level=options.level,
        n_boot=options.n_boot,
        seed=options.seed,
    )


def spans_zero(interval: Interval, unpatched: float = 0.0) -> Tensor:
    """Which cells' normalized interval contains `unpatched` (0 denoising, 1 noising)."""
    return (interval.low <= unpatched) & (interval.high >= unpatched)


# -- agreement: an estimate against the exact effects ----------------------------------------


def ranks(values: Tensor) -> Tensor:
    """Ranks (0-based, ties averaged) of a 1-D tensor, for Spearman's correlation."""
    order = values.argsort()
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(len(values), dtype=values.dtype)
    for v in values.unique():
        same = values == v
        if int(same.sum()) > 1:
            ranks[same] = ranks[same].mean()
    return ranks


def pearson(a: Tensor, b: Tensor) -> float | None:
    """Pearson's correlation of two 1-D tensors (in float64); None when either is constant."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    denom = float(a.norm() * b.norm())
    return float((a * b).sum()) / denom if denom > 0 else None


def _cells(t: Tensor) -> list[tuple[int, ...]]:
    return [
        tuple(int(i) for i in idx) for idx in torch.nonzero(torch.ones_like(t, dtype=torch.bool))
    ]


def agreement(
    estimate: Float[Tensor, "*cells"],
    exact: Float[Tensor, "*cells"],
    score: Float[Tensor, "*cells"] | None = None,
    top_k: int = 10,
) -> dict[str, Any]:
    """How far an estimate is from the exact effects, cell by cell.

    Over the cells both define (not NaN): Pearson and Spearman correlation; sign agreement
    over the cells whose exact effect is at least 1% of the largest; the overlap of the top
    `top_k` cells by |exact| and by the estimate's ranking score (|estimate| unless `score` is
    given); and the cells the estimate misses most (largest |exact - estimate|).
    """
    score = estimate.abs() if score is None else score
    valid = ~(estimate.isnan() | exact.isnan())
    cells = [c for c in _cells(estimate) if bool(valid[c])]
    est = torch.tensor([float(estimate[c]) for c in cells], dtype=torch.float64)
    ex = torch.tensor([float(exact[c]) for c in cells], dtype=torch.float64)
    sc = torch.tensor([float(score[c]) for c in cells], dtype=torch.float64)
    out: dict[str, Any] = {"cells": len(cells)}
    if not cells:
        return {**out, "pearson": None, "spearman": None, "sign_agreement": None}
    out["pearson"] = pearson(est, ex)
    out["spearman"] = pearson(ranks(est), ranks(ex))
    big = ex.abs() >= 0.01 * float(ex.abs().max()) if float(ex.abs().max()) > 0 else ex != ex
    n_big = int(big.sum())
    out["sign_cells"] = n_big
    out["sign_agreement"] = (
        float((torch.sign(est[big]) == torch.sign(ex[big])).double().mean()) if n_big else None
    )
    k = min(top_k, len(cells))
    top_exact = set(ex.abs().argsort(descending=True)[:k].tolist())
    top_est = set(sc.argsort(descending=True)[:k].tolist())
    out["top_k"] = k
    out["top_k_overlap"] = len(top_exact & top_est) / k if k else None
    out["top_exact"] = [list(cells[i]) for i in ex.abs().argsort(descending=True)[:k].tolist()]
    out["top_estimate"] = [list(cells[i]) for i in sc.argsort(descending=True)[:k].tolist()]
    error = (ex - est).abs()
    out["misses"] = [
        {"cell": list(cells[i]), "estimate": float(est[i]), "exact": float(ex[i])}
        for i in error.argsort(descending=True)[:k].tolist()
        if float(error[i]) > 0
    ]
    return out
