"""Heatmaps of sweep results as PNG files (matplotlib, no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from actpatch.patching.results import AttributionResult, SweepResult


def position_labels(result: SweepResult | AttributionResult) -> list[str]:
    """One label per position: its token, with the other prompt's token where they differ (or
    the role names, for a sweep indexed by role)."""
    if getattr(result, "position_convention", "index") == "role":
        return list(getattr(result, "position_labels", []))
    labels = []
    other = result.clean_tokens if result.direction == "denoising" else result.corrupt_tokens
    same_length = result.alignment.get("identity", False)
    for pos, token in enumerate(result.tokens):
        label = f"{pos}:{token!r}"[:18]
        if same_length and pos < len(other) and other[pos] != token:
            label = f"{pos}:{other[pos]!r}/{token!r}"[:24]
        labels.append(label)
    return labels


def heatmap(result: SweepResult, path: str | Path) -> Path:
    """Draw the normalized (else raw) values as a diverging heatmap centred on 0; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normalized = not bool(result.normalized.isnan().all())
    values = result.normalized * 100 if normalized else result.raw - result.corrupt
    if values.dim() == 3:  # (layer, pos, head): one panel per head would be big; max over heads
        values = values.nan_to_num(0.0).abs().amax(dim=-1) * values.nan_to_num(0.0).sum(-1).sign()
        x_axis = "pos"
    else:
        x_axis = result.axes[1]
    finite = values[~values.isnan()]
    limit = float(finite.abs().max()) if finite.numel() else 1.0
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0

    n_layers, n_x = values.shape
    width = max(6.0, min(18.0, 1.0 + 0.55 * n_x))
    fig, ax = plt.subplots(figsize=(width, max(3.5, 0.45 * n_layers + 1.8)))
    masked = torch.where(values.isnan(), torch.zeros_like(values), values).numpy()
    image = ax.imshow(masked, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
    for layer, x in torch.nonzero(values.isnan()).tolist():
        ax.add_patch(plt.Rectangle((x - 0.5, layer - 0.5), 1, 1, color="0.85", hatch="//"))
    ax.set_ylabel("layer")
    ax.set_yticks(range(n_layers))
    if x_axis == "pos":
        ax.set_xticks(range(n_x))
        ax.set_xticklabels(position_labels(result), rotation=60, ha="right", fontsize=8)
        ax.set_xlabel("position (token)")
    else:
        ax.set_xticks(range(n_x))
        ax.set_xlabel(x_axis)
        if x_axis == "head":
            label_known_heads(ax, result.model)
    what = "recovery % (normalized " + result.metric + ")" if normalized else result.metric
    what = what if normalized else f"{what} - corrupted"
    fig.colorbar(image, ax=ax, label=f"{what} (blue raises it)")
    pairs = f", mean of {result.n_pairs} pairs (tokens of the first)" if result.n_pairs > 1 else ""
    ax.set_title(
        f"{result.component} patching ({result.direction}) on {result.model}{pairs}\n"
        f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}",
        fontsize=10,
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


# -- attribution patching: the estimate beside the exact answer -------------------------------


def _grid(values: torch.Tensor) -> torch.Tensor:
    """A (layer, x) grid: (layer, pos, head) shows each position's largest-magnitude head."""
    if values.dim() == 3:
        flat = values.nan_to_num(0.0)
        pick = flat.abs().argmax(dim=-1, keepdim=True)
        return flat.gather(-1, pick).squeeze(-1)
    return values


def attribution_heatmap(result: AttributionResult, path: str | Path) -> Path:
    """The estimate (and, after a comparison, the exact effect) as diverging heatmaps, in % of
    clean - corrupt when defined; save a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pct = not bool(result.normalized.isnan().all())
    panels = [
        ("estimate (" + result.method.upper() + ")", result.normalized if pct else result.estimate)
    ]
    if result.exact is not None and result.exact_normalized is not None:
        panels.append(("exact patching", result.exact_normalized if pct else result.exact))
    grids = [(title, _grid(v) * (100 if pct else 1)) for title, v in panels]
    finite = torch.cat([g[~g.isnan()] for _, g in grids])
    limit = float(finite.abs().max()) if finite.numel() else 1.0
    limit = limit if limit > 0 and math.isfinite(limit) else 1.0
    n_layers, n_x = grids[0][1].shape
    x_axis = "pos" if "pos" in result.axes else "head"
    width = max(6.0, min(18.0, 1.0 + 0.55 * n_x))
    fig, axes = plt.subplots(
        len(grids),
        1,
        figsize=(width, len(grids) * max(3.0, 0.45 * n_layers + 1.8)),
        squeeze=False,
        layout="constrained",
    )
    image = None
    for ax, (title, grid) in zip(axes[:, 0], grids, strict=True):
        shown = torch.where(grid.isnan(), torch.zeros_like(grid), grid).numpy()
        image = ax.imshow(shown, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        for layer, x in torch.nonzero(grid.isnan()).tolist():
            ax.add_patch(plt.Rectangle((x - 0.5, layer - 0.5), 1, 1, color="0.85", hatch="//"))
        ax.set_ylabel("layer")
        ax.set_yticks(range(n_layers))
        ax.set_xticks(range(n_x))
        if x_axis == "pos":
            ax.set_xticklabels(position_labels(result), rotation=60, ha="right", fontsize=8)
        else:
            ax.set_xlabel("head")
            label_known_heads(ax, result.model)
        ax.set_title(title, fontsize=9)
    label = f"% of clean - corrupted {result.metric}" if pct else f"change in {result.metric}"
    if len(result.axes) == 3:
        label += " (strongest head)"
    assert image is not None
    fig.colorbar(image, ax=axes[:, 0].tolist(), label=label)
    fig.suptitle(
        f"{result.component} attribution ({result.direction}) on {result.model}\n"
        f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}",
        fontsize=10,
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _cell_label(axes: tuple[str, ...], cell: list[int]) -> str:
    return " ".join(
        f"{'P' if a == 'pos' else a[0].upper()}{i}" for a, i in zip(axes, cell, strict=True)
    )


def attribution_scatter(result: AttributionResult, path: str | Path) -> Path:
    """Each cell's estimate against its exact effect (needs a comparison); the diagonal is a
    perfect estimate. AtP*'s points are joined to plain AtP's where they differ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if result.exact is None:
        raise ValueError("a scatter plot needs the exact sweep: attribute(..., compare=True)")
    valid = ~(result.estimate.isnan() | result.exact.isnan())
    exact, estimate = result.exact[valid], result.estimate[valid]
    fig, ax = plt.subplots(figsize=(6.0, 5.6))
    if result.atp is not None:
        atp = result.atp[valid]
        moved = (atp - estimate).abs() > 1e-9
        for x, a, b in zip(
            exact[moved].tolist(), atp[moved].tolist(), estimate[moved].tolist(), strict=True
        ):
            ax.plot([x, x], [a, b], color="0.75", linewidth=0.8, zorder=1)
        ax.scatter(exact, atp, s=12, color="0.6", label="AtP", zorder=2)
    name = "AtP*" if result.method == "atp*" else "AtP"
    ax.scatter(exact, estimate, s=14, color="#2166ac", label=name, zorder=3)
    low = float(torch.cat([exact, estimate]).min())
    high = float(torch.cat([exact, estimate]).max())
    pad = 0.05 * (high - low or 1.0)
    ax.plot(
        [low - pad, high + pad],
        [low - pad, high + pad],
        color="#b2182b",
        linewidth=1,
        label="estimate = exact",
        zorder=0,
    )
    agreement = result.agreement or {}
    for miss in agreement.get("misses", [])[:5]:
        ax.annotate(
            _cell_label(result.axes, miss["cell"]),
            (miss["exact"], miss["estimate"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel(f"exact change in {result.metric} (patching)")
    ax.set_ylabel(f"estimated change in {result.metric}")

    def fmt(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    ax.set_title(
        f"{result.component} ({result.direction}) on {result.model}: {name} vs exact\n"
        f"Pearson {fmt(agreement.get('pearson'))}, Spearman {fmt(agreement.get('spearman'))}, "
        f"top-{agreement.get('top_k', 10)} overlap {fmt(agreement.get('top_k_overlap'))}",
        fontsize=9,
    )
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def label_known_heads(ax: Any, model_name: str) -> bool:
    """Write Wang et al. 2022's role labels (NM, SI, ...) on a layer x head heatmap's cells when
    the model is GPT-2 small, with the citation under the plot; False for any other model."""
    from actpatch.known_roles import CITATION, for_model

    roles = for_model(model_name)
    for (layer, head), (_, label) in roles.items():
        ax.text(head, layer, label, ha="center", va="center", fontsize=6, color="0.15")
    if roles:
        ax.annotate(
            f"head roles: {CITATION}",
            xy=(0, 0),
            xycoords="figure fraction",
            xytext=(4, 4),
            textcoords="offset points",
            fontsize=6,
            color="0.35",
        )
    return bool(roles)
