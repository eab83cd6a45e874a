"""The views' figures: an attention pattern clean beside corrupted, DLA's layer x head heatmaps
with a table of the other parts, the logit lens's metric over layers."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from actpatch.display.embed import Figure
from actpatch.display.parts import (
    BLUE,
    RED,
    axis,
    base_layout,
    color_limit,
    esc,
    heatmap,
    number,
    pairs,
    warnings_of,
)
from actpatch.patching.serial import nested
from actpatch.views.results import AttentionResult, DLAResult, LensResult


def _token_labels(tokens: list[str]) -> list[str]:
    return [f"{i}:{t!r}"[:18] for i, t in enumerate(tokens)]


def attention(result: AttentionResult) -> Figure:
    runs = [
        ("clean", result.clean, result.tokens),
        ("corrupted", result.corrupt, result.corrupt_tokens),
    ]

    def trace(i: int, which: str, pattern: Tensor, tokens: list[str]) -> dict[str, Any]:
        # Category axes named by the tokens (unique: each label starts with its position), so
        # the hover reads them without a label per cell (a long prompt has n^2 cells).
        labels = [esc(label) for label in _token_labels(tokens)]
        return {
            "type": "heatmap",
            "z": nested(pattern[0]),
            "x": labels,
            "y": labels,
            "hovertemplate": f"{which}<br>query %{{y}}<br>reads key %{{x}}<br>"
            "weight %{z:.3f}<extra></extra>",
            "colorscale": [[0, "#f7fbff"], [0.25, "#c6dbef"], [0.5, "#6baed6"], [1, "#08306b"]],
            "zmin": 0,
            "zmax": 1,
            "xaxis": "x" if i == 0 else "x2",
            "yaxis": "y" if i == 0 else "y2",
            "showscale": i == 1,
            "colorbar": {"title": {"text": "attention weight", "side": "right"}, "thickness": 12},
        }

    data = [trace(i, which, p, tokens) for i, (which, p, tokens) in enumerate(runs)]
    axes: dict[str, Any] = {}
    for i, (which, _, _) in enumerate(runs):
        suffix = "" if i == 0 else "2"
        axes[f"xaxis{suffix}"] = {
            "title": {"text": f"key position ({which})"},
            "type": "category",
            "tickangle": -50,
            "automargin": True,
            "domain": [0.0, 0.44] if i == 0 else [0.56, 1.0],
        }
        axes[f"yaxis{suffix}"] = {
            "title": {"text": "query position"},
            "type": "category",
            "autorange": "reversed",
            "automargin": True,
            "anchor": f"x{suffix}",
        }
    n = max(len(result.tokens), len(result.corrupt_tokens))
    title = f"attention of L{result.layer}H{result.head} on {result.model}"
    layout = base_layout(esc(title), max(380, min(760, 200 + 22 * n)), **axes)
    layout["margin"]["b"] = 120
    layout["margin"]["l"] = 120
    if len(result.heads) > 1:  # a menu to pick the head: both panels restyled at once
        buttons = [
            {
                "label": f"L{result.layer}H{h}",
                "method": "update",
                "args": [
                    {"z": [nested(result.clean[i]), nested(result.corrupt[i])]},
                    {"title.text": esc(f"attention of L{result.layer}H{h} on {result.model}")},
                ],
            }
            for i, h in enumerate(result.heads)
        ]
        layout["updatemenus"] = [{"buttons": buttons, "x": 1.0, "y": 1.12, "xanchor": "right"}]
    kv = f" (key/value head {result.kv_heads[0]})" if result.kv_heads != result.heads else ""
    return Figure(
        data,
        layout,
        layout["height"],
        caption=[f"{result.model} on the {result.backend} path · pair {result.pair}{kv}"],
        warnings=warnings_of(result.warnings),
    )


def dla(result: DLAResult) -> Figure:
    c, k = result.clean, result.corrupt
    panels = [("clean", c.heads), ("corrupted", k.heads), ("clean - corrupted", c.heads - k.heads)]
    limit = color_limit(*(v for _, v in panels))
    n_layers, n_heads = c.heads.shape
    data, axes = [], {}
    for i, (which, values) in enumerate(panels):
        suffix = "" if i == 0 else str(i + 1)
        hover = [
            [
                f"{which} · L{layer}H{h}<br>direct {esc(result.metric)} "
                f"{number(float(values[layer, h]))}"
                for h in range(n_heads)
            ]
            for layer in range(n_layers)
        ]
        trace = heatmap(values, hover, limit, f"direct {result.metric} (blue raises it)")
        trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}", showscale=i == 2)
        data.append(trace)
        axes[f"xaxis{suffix}"] = axis(
            f"head ({which})",
            [f"H{h}" for h in range(n_heads)],
            domain=[i / 3 + 0.03, (i + 1) / 3 - 0.03],
        )
        axes[f"yaxis{suffix}"] = axis(
            "layer", [f"L{n}" for n in range(n_layers)], autorange="reversed", anchor=f"x{suffix}"
        )
    layout = base_layout(
        esc(f"direct logit attribution ({result.metric}) on {result.model}"),
        max(320, min(640, 150 + 30 * n_layers)),
        **axes,
    )
    parts: list[tuple[str, float, float]] = [("embeddings", c.embed, k.embed)]
    parts += [(f"MLP L{n}", float(c.mlp[n]), float(k.mlp[n])) for n in range(n_layers)]
    parts += [
        ("heads, all", float(c.heads.sum()), float(k.heads.sum())),
        ("attention biases, all", float(c.attn_bias.sum()), float(k.attn_bias.sum())),
        ("norm and unembedding biases", c.const, k.const),
        ("total of the parts", c.total, k.total),
        ("model's own metric", c.actual, k.actual),
        ("unexplained", c.actual - c.total, k.actual - k.total),
    ]
    return Figure(
        data,
        layout,
        layout["height"],
        caption=[
            f"{result.model} on the {result.backend} path{pairs(result.n_pairs)} · "
            f"{result.norm_note}"
        ],
        warnings=warnings_of(result.warnings),
        columns=["part", "clean", "corrupted", "clean - corrupted"],
        rows=[[name, number(a), number(b), number(a - b)] for name, a, b in parts],
    )


def lens(result: LensResult) -> Figure:
    def line(which: str, run: Any, color: str) -> dict[str, Any]:
        hover = [
            f"{which} · {esc(label)}<br>{esc(result.metric)} {number(m)}<br>rank of "
            f"{esc(repr(result.target))}: {rank} (P = {number(p, 3)})<br>top: "
            + esc(", ".join(repr(t) for t in top))
            for label, m, rank, p, top in zip(
                result.labels, run.metric, run.target_rank, run.target_prob, run.top, strict=True
            )
        ]
        return {
            "type": "scatter",
            "mode": "lines+markers",
            "name": which,
            "x": list(range(len(result.labels))),
            "y": run.metric,
            "text": hover,
            "hovertemplate": "%{text}<extra></extra>",
            "line": {"color": color},
        }

    layout = base_layout(
        esc(f"logit lens on {result.model} (answer {result.target!r})"),
        380,
        xaxis=axis("read-out point", result.labels, tickangle=-40),
        yaxis={"title": {"text": esc(result.metric)}, "zeroline": True},
    )
    rows = [
        [
            label,
            str(cr),
            " ".join(repr(t) for t in ct[:3]),
            str(kr),
            " ".join(repr(t) for t in kt[:3]),
        ]
        for label, cr, ct, kr, kt in zip(
            result.labels,
            result.clean.target_rank,
            result.clean.top,
            result.corrupt.target_rank,
            result.corrupt.top,
            strict=True,
        )
    ]
    return Figure(
        [line("clean", result.clean, BLUE), line("corrupted", result.corrupt, RED)],
        layout,
        380,
        caption=[f"{result.model} on the {result.backend} path{pairs(result.n_pairs)}"],
        warnings=warnings_of(result.warnings),
        columns=["point", "clean rank", "clean top 3", "corrupted rank", "corrupted top 3"],
        rows=rows,
    )
