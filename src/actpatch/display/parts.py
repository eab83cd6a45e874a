"""The pieces every figure is made of: plotly's text escaping, the page's colours, heatmap and bar
traces, categorical axes, GPT-2 small's known head roles."""

from __future__ import annotations

import html
import math
from typing import Any

import torch
from torch import Tensor

from actpatch.patching.results import ResultWarning
from actpatch.patching.serial import nested

# The web page's diverging scale (web/plots.js): red lowers the metric, blue raises it.
DIVERGING = [
    [0, "#67001f"], [0.1, "#b2182b"], [0.2, "#d6604d"], [0.3, "#f4a582"], [0.4, "#fddbc7"],
    [0.5, "#f7f7f7"], [0.6, "#d1e5f0"], [0.7, "#92c5de"], [0.8, "#4393c3"], [0.9, "#2166ac"],
    [1, "#053061"],
]  # fmt: skip
BLUE, RED, GREY = "#2166ac", "#b2182b", "#9ca3af"


def esc(text: object) -> str:
    """Text as plotly shows it literally (it reads tags such as `<br>` in labels)."""
    return html.escape(str(text), quote=False)


def number(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}g}"


def base_layout(title: str, height: int, **extra: Any) -> dict[str, Any]:
    return {
        "title": {"text": title, "font": {"size": 14}},
        "height": height,
        "margin": {"l": 64, "r": 16, "t": 70, "b": 60},
        "plot_bgcolor": "#eef0f3",
        "paper_bgcolor": "rgba(0,0,0,0)",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        **extra,
    }


def axis(title: str, labels: list[str], **extra: Any) -> dict[str, Any]:
    """A categorical axis drawn at integer positions, so that equal labels stay apart."""
    return {
        "title": {"text": esc(title)},
        "tickmode": "array",
        "tickvals": list(range(len(labels))),
        "ticktext": [esc(label) for label in labels],
        "showgrid": False,
        "zeroline": False,
        "automargin": True,
        **extra,
    }


def color_limit(*grids: Tensor) -> float:
    finite = torch.cat([g[~g.isnan()].flatten() for g in grids])
    limit = float(finite.abs().max()) if finite.numel() else 1.0
    return limit if limit > 0 and math.isfinite(limit) else 1.0


def heatmap(z: Tensor, hover: list[list[str]], limit: float, colorbar: str) -> dict[str, Any]:
    return {
        "type": "heatmap",
        "z": nested(z),
        "text": hover,
        "hovertemplate": "%{text}<extra></extra>",
        "hoverongaps": False,
        "colorscale": DIVERGING,
        "zmid": 0,
        "zmin": -limit,
        "zmax": limit,
        "xgap": 1,
        "ygap": 1,
        "colorbar": {"title": {"text": esc(colorbar), "side": "right"}, "thickness": 12},
    }


def role_marks(model: str) -> list[dict[str, Any]]:
    """Wang et al. 2022's head roles on GPT-2 small's layer x head grids (none for other models)."""
    from actpatch.known_roles import for_model

    return [
        {"x": h, "y": layer, "text": label, "showarrow": False, "font": {"size": 9}}
        for (layer, h), (_, label) in for_model(model).items()
    ]


def strongest(values: Tensor, unpatched: float) -> tuple[Tensor, Tensor]:
    """(layer, pos, head) -> (layer, pos): at each cell, the head that moved the metric most
    from `unpatched`, and which head it was."""
    best = (values - unpatched).nan_to_num(0.0).abs().argmax(dim=-1, keepdim=True)
    return values.gather(-1, best).squeeze(-1), best.squeeze(-1)


def warnings_of(items: list[ResultWarning]) -> list[str]:
    return [w.message for w in items]


def pairs(n: int) -> str:
    return f", mean of {n} pairs" if n > 1 else ""


def bars(
    names: list[str], values: list[float], title: str, axis: str, height: int | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Horizontal bars, first name on top, blue positive and red negative."""
    trace = {
        "type": "bar",
        "orientation": "h",
        "y": [esc(n) for n in names],
        "x": values,
        "marker": {"color": [BLUE if v >= 0 else RED for v in values]},
        "hovertemplate": "%{y}: %{x:.4g}<extra></extra>",
    }
    size = height or max(260, min(900, 110 + 20 * len(names)))
    layout = base_layout(
        esc(title),
        size,
        xaxis={"title": {"text": esc(axis)}, "zeroline": True, "zerolinecolor": "#6b7280"},
        yaxis={"autorange": "reversed", "automargin": True, "type": "category"},
    )
    return trace, layout
