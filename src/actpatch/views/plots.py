"""The views as PNG files (matplotlib, no display needed): an attention pattern clean beside
corrupted, DLA's layer x head heatmaps, and the logit lens's metric over layers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from actpatch.views.results import AttentionResult, DLAResult, LensResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _labels(tokens: list[str]) -> list[str]:
    return [f"{i}:{t!r}"[:16] for i, t in enumerate(tokens)]


def attention_heatmap(result: AttentionResult, path: str | Path) -> Path:
    """Head `result.head`'s pattern, clean beside corrupted (rows: queries, columns: keys)."""
    plt = _pyplot()
    n = max(len(result.tokens), len(result.corrupt_tokens))
    size = max(4.0, min(9.0, 0.35 * n + 1.5))
    fig, axes = plt.subplots(1, 2, figsize=(2 * size, size))
    for ax, pattern, tokens, which in (
        (axes[0], result.clean[0], result.tokens, "clean"),
        (axes[1], result.corrupt[0], result.corrupt_tokens, "corrupted"),
    ):
        image = ax.imshow(pattern.numpy(), cmap="Blues", vmin=0, vmax=1)
        labels = _labels(tokens)
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("key position (attended to)")
        ax.set_ylabel("query position")
        ax.set_title(f"{which}", fontsize=10)
    fig.colorbar(image, ax=axes[1], label="attention weight", shrink=0.8)
    fig.suptitle(f"attention of L{result.layer}H{result.head} on {result.model}", fontsize=11)
    return _save(fig, path)


def dla_heatmap(result: DLAResult, path: str | Path) -> Path:
    """Each head's direct share of the metric: clean, corrupted and their difference."""
    plt = _pyplot()
    panels = (
        ("clean", result.clean.heads),
        ("corrupted", result.corrupt.heads),
        ("clean - corrupted", result.clean.heads - result.corrupt.heads),
    )
    n_layers, n_heads = result.clean.heads.shape
    width = max(4.0, min(8.0, 0.5 * n_heads + 1.5))
    fig, axes = plt.subplots(1, 3, figsize=(3 * width, max(3.0, 0.4 * n_layers + 1.8)))
    for ax, (which, values) in zip(axes, panels, strict=True):
        limit = float(values.abs().max()) or 1.0
        image = ax.imshow(values.numpy(), cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
        ax.set_title(which, fontsize=10)
        fig.colorbar(image, ax=ax, label=f"direct {result.metric} (blue raises it)")
    fig.suptitle(f"direct logit attribution on {result.model}", fontsize=11)
    return _save(fig, path)


def lens_chart(result: LensResult, path: str | Path) -> Path:
    """The metric read at each layer, clean and corrupted."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(result.labels) + 2), 3.8))
    xs = torch.arange(len(result.labels)).tolist()
    ax.plot(xs, result.clean.metric, marker="o", label="clean")
    ax.plot(xs, result.corrupt.metric, marker="o", label="corrupted")
    ax.set_xticks(xs)
    ax.set_xticklabels(result.labels, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(result.metric)
    ax.axhline(0, color="0.7", linewidth=0.8)
    ax.legend()
    ax.set_title(f"logit lens on {result.model} (answer {result.target!r})", fontsize=10)
    return _save(fig, path)
