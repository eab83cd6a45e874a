"""Each result as a plotly figure (plain `data` and `layout` dicts, as plotly.js takes them),
drawn the way the web page and the PNGs draw it.

- a sweep, an ablation, path patching over every head: a layer x head (or layer x position)
  heatmap of the normalized metric's change from the unpatched run (0 denoising, 1 noising),
  diverging around it, blue where the patch raises the metric; hover for the raw metric. A
  (layer, position, head) sweep shows, at each (layer, position), the head that moved the metric
  most, as the PNG does, and names it on hover;
- attribution patching: the estimate, beside the exact effect when it was compared;
- a single patch: the target's probability in the clean, corrupted and patched runs, and a
  table of their top tokens;
- path patching of chosen senders, edge attribution, exact edge checks: bars, strongest first;
- a circuit: faithfulness against the edges kept;
- attention: the clean and corrupted patterns side by side (a menu picks among several heads);
- DLA: each head's direct share, clean, corrupted and their difference, and a table of the MLPs,
  embeddings and what the parts leave unexplained;
- the logit lens: the metric read at each layer, clean and corrupted, hover for the answer's
  rank and the top tokens.
"""

from __future__ import annotations

import math
from functools import singledispatch
from typing import Any

from actpatch.display import view_figures
from actpatch.display.embed import Figure
from actpatch.display.parts import (
    BLUE,
    GREY,
    RED,
    axis,
    bars,
    base_layout,
    color_limit,
    esc,
    heatmap,
    number,
    pairs,
    role_marks,
    strongest,
    warnings_of,
)
from actpatch.patching.results import (
    AblationResult,
    AttributionResult,
    CircuitResult,
    EdgeResult,
    PatchResult,
    PathPatchResult,
    SweepResult,
    VerifyResult,
)
from actpatch.views.results import AttentionResult, DLAResult, LensResult


@singledispatch
def figure(result: Any) -> Figure:
    """The figure of one result (a `Figure`, which `embed.figure_html` turns into HTML)."""
    raise TypeError(f"actpatch has no notebook figure for {type(result).__name__}")


@figure.register
def _(result: SweepResult) -> Figure:
    normalized = not bool(result.normalized.isnan().all())
    unpatched = 0.0 if result.direction == "denoising" else 1.0
    values = result.normalized if normalized else result.raw
    base = unpatched if normalized else result.corrupt
    raw, heads = result.raw, None
    if values.dim() == 3:
        values, heads = strongest(values, base)
        raw = result.raw.gather(-1, heads[..., None]).squeeze(-1)
    shown = values - base
    labels = result.axis_labels()
    ci = result.ci if result.raw.dim() == 2 else None
    hover = []
    for layer in range(shown.shape[0]):
        row = []
        for x in range(shown.shape[1]):
            where = f"{labels[0][layer]} · {labels[1][x]}"
            if heads is not None:
                where += f" · H{int(heads[layer, x])} (strongest head)"
            line = f"{esc(where)}<br>raw {esc(result.metric)} {number(float(raw[layer, x]))}"
            if normalized:
                line += f"<br>normalized {number(float(values[layer, x]), 3)}"
            if ci is not None:
                low, high = float(ci.low[layer, x]), float(ci.high[layer, x])
                line += f"<br>{int(100 * ci.level)}% interval [{number(low, 3)}, {number(high, 3)}]"
            row.append(line)
        hover.append(row)
    if not normalized:
        what = f"{result.metric} - corrupted"
    else:
        what = f"normalized {result.metric}" + (f" - {unpatched:g}" if unpatched else "")
    if isinstance(result, AblationResult):
        title = f"{result.ablation} ablation of {result.component} on {result.model}"
    else:
        title = f"{result.component} patching ({result.direction}) on {result.model}"
    n_layers = shown.shape[0]
    x_name = "" if result.axes[1] == "pos" else result.axes[1]  # token labels say it
    pos = result.axes[1] == "pos"
    layout = base_layout(
        esc(title + pairs(result.n_pairs)),
        max(320, min(640, 130 + 30 * n_layers + (140 if pos else 0))),
        xaxis=axis(x_name, labels[1], tickangle=-50 if pos else 0),
        yaxis=axis("layer", labels[0], autorange="reversed"),
        annotations=role_marks(result.model) if result.axes == ("layer", "head") else [],
    )
    if pos:
        layout["margin"]["b"] = 120
    return Figure(
        data=[heatmap(shown, hover, color_limit(shown), what + " (blue raises it)")],
        layout=layout,
        height=layout["height"],
        caption=[
            f"{result.model} on the {result.backend} path · {result.metric}: clean "
            f"{number(result.clean)}, corrupted {number(result.corrupt)} · {result.n_pairs} "
            f"pair(s) · {result.direction}",
            *([result.note] if result.note else []),
        ],
        warnings=warnings_of(result.warnings),
    )


@figure.register
def _(result: AttributionResult) -> Figure:
    pct = not bool(result.normalized.isnan().all())
    panels = [
        (f"estimate ({result.method.upper()})", result.normalized if pct else result.estimate)
    ]
    if result.exact is not None and result.exact_normalized is not None:
        panels.append(("exact patching", result.exact_normalized if pct else result.exact))
    grids = []
    for title, values in panels:
        heads = None
        if values.dim() == 3:
            values, heads = strongest(values, 0.0)
        grids.append((title, values, heads))
    limit = color_limit(*(g for _, g, _ in grids))
    x_name = "pos" if "pos" in result.axes else "head"
    labels = [f"{i} {t!r}" for i, t in enumerate(result.tokens)] if x_name == "pos" else []
    data, layout_axes = [], {}
    width = 1.0 / len(grids)
    for i, (title, grid, heads) in enumerate(grids):
        n_layers, n_x = grid.shape
        x_labels = labels[:n_x] if x_name == "pos" else [f"H{h}" for h in range(n_x)]
        hover = [
            [
                f"L{layer} · {esc(x_labels[x])}"
                + (f" · H{int(heads[layer, x])}" if heads is not None else "")
                + f"<br>{esc(title)}: {number(float(grid[layer, x]), 3)}"
                for x in range(n_x)
            ]
            for layer in range(n_layers)
        ]
        trace = heatmap(grid, hover, limit, "normalized change" if pct else "change")
        suffix = "" if i == 0 else str(i + 1)
        trace.update(xaxis=f"x{suffix}", yaxis=f"y{suffix}", showscale=i == len(grids) - 1)
        data.append(trace)
        layout_axes[f"xaxis{suffix}"] = axis(
            f"{x_name} ({title})",
            x_labels,
            domain=[i * width + 0.04, (i + 1) * width - 0.04],
            tickangle=-50 if x_name == "pos" else 0,
        )
        layout_axes[f"yaxis{suffix}"] = axis(
            "layer", [f"L{n}" for n in range(n_layers)], autorange="reversed", anchor=f"x{suffix}"
        )
    n_layers = grids[0][1].shape[0]
    title = f"{result.component} attribution ({result.direction}) on {result.model}"
    layout = base_layout(esc(title), max(320, min(640, 150 + 30 * n_layers)), **layout_axes)
    agreement = result.agreement or {}
    caption = [
        f"{result.model} on the {result.backend} path · {result.metric}: clean "
        f"{number(result.clean)}, corrupted {number(result.corrupt)} · ranked by "
        f"{result.score_kind}"
    ]
    if agreement:
        caption.append(
            f"agreement with exact patching: Pearson {number(agreement.get('pearson'), 3)}, "
            f"Spearman {number(agreement.get('spearman'), 3)}"
        )
    return Figure(data, layout, layout["height"], caption, warnings_of(result.warnings))


@figure.register
def _(result: PatchResult) -> Figure:
    runs = [
        ("clean", result.clean_prob, result.clean_rank, result.metric_clean, result.top_clean),
        (
            "corrupted",
            result.corrupt_prob,
            result.corrupt_rank,
            result.metric_corrupt,
            result.top_corrupt,
        ),
        (
            "patched",
            result.patched_prob,
            result.patched_rank,
            result.metric_patched,
            result.top_patched,
        ),
    ]
    where = " ".join(f"{k} {v}" for k, v in result.index.items() if v is not None)
    bars = {
        "type": "bar",
        "x": [name for name, *_ in runs],
        "y": [prob for _, prob, *_ in runs],
        "text": [f"rank {rank}" for _, _, rank, *_ in runs],
        "textposition": "outside",
        "marker": {"color": [BLUE, RED, "#7c3aed"]},
        "hovertemplate": "%{x}: P = %{y:.4g}, %{text}<extra></extra>",
    }
    recovery = "" if math.isnan(result.recovery_pct) else f": recovery {result.recovery_pct:.1f}%"
    title = f"{result.component} patch at {where} ({result.direction}) on {result.model}{recovery}"
    layout = base_layout(
        esc(title),
        340,
        yaxis={"title": {"text": "probability of the target"}, "rangemode": "tozero"},
    )
    rows = [
        [
            name,
            number(prob),
            str(rank),
            number(metric),
            ", ".join(f"{t.token!r} {t.prob:.3g}" for t in top[:5]),
        ]
        for name, prob, rank, metric, top in runs
    ]
    return Figure(
        [bars],
        layout,
        340,
        caption=[
            f"{result.model} on the {result.backend} path · {result.metric} normalized "
            f"{number(result.metric_normalized, 3)} · prompt tokens: {len(result.tokens)}",
            *([result.note] if result.note else []),
        ],
        warnings=warnings_of(result.warnings),
        columns=["run", "P(target)", "rank", result.metric, "top 5 tokens"],
        rows=rows,
    )


@figure.register
def _(result: PathPatchResult) -> Figure:
    use_norm = not bool(result.normalized.isnan().all())
    unpatched = 0.0 if result.direction == "denoising" else 1.0
    values = result.normalized - unpatched if use_norm else result.raw - result.corrupt
    what = f"normalized {result.metric}" + (f" - {unpatched:g}" if unpatched else "")
    what = what if use_norm else f"{result.metric} - corrupted"
    frozen = ", MLPs frozen" if result.freeze_mlps else ""
    title = (
        f"path patching ({result.direction}{frozen}) -> {', '.join(result.receivers)} "
        f"on {result.model}"
    )
    caption = [
        f"{result.model} on the {result.backend} path · {result.metric}: clean "
        f"{number(result.clean)}, corrupted {number(result.corrupt)}{pairs(result.n_pairs)}"
    ]
    if result.all_heads:
        n_layers, n_heads = values.shape
        hover = [
            [
                f"sender L{layer}H{h}<br>raw {esc(result.metric)} "
                f"{number(float(result.raw[layer, h]))}<br>{esc(what)} "
                f"{number(float(values[layer, h]), 3)}"
                for h in range(n_heads)
            ]
            for layer in range(n_layers)
        ]
        layout = base_layout(
            esc(title),
            max(320, min(640, 130 + 30 * n_layers)),
            xaxis=axis("sender head", [f"H{h}" for h in range(n_heads)]),
            yaxis=axis("sender layer", [f"L{n}" for n in range(n_layers)], autorange="reversed"),
            annotations=role_marks(result.model),
        )
        trace = heatmap(values, hover, color_limit(values), what + " (blue raises it)")
        return Figure([trace], layout, layout["height"], caption, warnings_of(result.warnings))
    trace, layout = bars(result.senders, values.flatten().tolist(), title, what)
    return Figure([trace], layout, layout["height"], caption, warnings_of(result.warnings))


@figure.register
def _(result: EdgeResult) -> Figure:
    shown = result.top(30)
    title = (
        f"top {len(shown)} of {len(result.names)} edges by |{result.method} score| "
        f"on {result.model}"
    )
    trace, layout = bars([e.name for e in shown], [e.score for e in shown], title, "score")
    rows = [[c.edge, number(c.effect), number(c.normalized, 3)] for c in result.verified]
    return Figure(
        [trace],
        layout,
        layout["height"],
        caption=[
            f"{result.model} on the {result.backend} path · {result.metric}: clean "
            f"{number(result.clean)}, corrupted {number(result.corrupt)} · {result.direction} · "
            f"{result.steps} step(s) · key/value convention {result.kv}"
        ],
        warnings=warnings_of(result.warnings),
        columns=["edge patched exactly", "effect", "normalized"] if rows else [],
        rows=rows,
    )


@figure.register
def _(result: VerifyResult) -> Figure:
    use_norm = not all(math.isnan(c.normalized) for c in result.edges)
    values = [c.normalized if use_norm else c.effect for c in result.edges]
    axis = f"normalized change in {result.metric}" if use_norm else f"change in {result.metric}"
    trace, layout = bars(
        [c.edge for c in result.edges], values, f"edges patched exactly on {result.model}", axis
    )
    rows = [
        [c.edge, number(c.metric), number(c.effect), number(c.normalized, 3)] for c in result.edges
    ]
    return Figure(
        [trace],
        layout,
        layout["height"],
        caption=[
            f"{result.model} on the {result.backend} path · {result.metric}: clean "
            f"{number(result.clean)}, corrupted {number(result.corrupt)} · {result.direction}"
        ],
        warnings=warnings_of(result.warnings),
        columns=["edge", result.metric, "effect", "normalized"],
        rows=rows,
    )


@figure.register
def _(result: CircuitResult) -> Figure:
    xs = [max(p.n_edges, 0) for p in result.points]
    trace = {
        "type": "scatter",
        "mode": "lines+markers",
        "x": xs,
        "y": [p.faithfulness for p in result.points],
        "name": f"ranked by {result.method}" if result.method else "circuit",
        "customdata": [p.metric for p in result.points],
        "hovertemplate": "%{x} edges: faithfulness %{y:.3f}, metric %{customdata:.4g}"
        "<extra></extra>",
    }
    guides = [
        {
            "type": "line",
            "xref": "paper",
            "x0": 0,
            "x1": 1,
            "y0": y,
            "y1": y,
            "line": {"color": GREY, "dash": "dash", "width": 1},
        }
        for y in (0.0, 1.0)
    ]
    log = bool(xs) and max(xs) > 100 and min(xs) > 0
    layout = base_layout(
        esc(f"faithfulness, {result.ablation} ablation, on {result.model}"),
        360,
        xaxis={
            "title": {"text": f"edges kept (of {result.total_edges})"},
            "type": "log" if log else "linear",
        },
        yaxis={"title": {"text": "faithfulness"}},
        shapes=guides,
    )
    return Figure(
        [trace],
        layout,
        360,
        caption=[
            f"{result.model} on the {result.backend} path · {result.metric}: clean "
            f"{number(result.clean)}, corrupted {number(result.corrupt)} · faithfulness "
            f"{number(result.faithfulness, 3)}{pairs(result.n_pairs)}"
        ],
        warnings=warnings_of(result.warnings),
    )


figure.register(AttentionResult, view_figures.attention)
figure.register(DLAResult, view_figures.dla)
figure.register(LensResult, view_figures.lens)
