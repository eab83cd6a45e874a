"""PNG pictures of circuits: path-patching heatmaps, the circuit graph, faithfulness curves.

matplotlib, no display needed. The page draws the same graph interactively (web/circuit.js).
Heads of GPT-2 small carry Wang et al. 2022's role labels (`actpatch.known_roles`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from actpatch.patching.results import CircuitResult, EdgeResult, PathPatchResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def path_heatmap(result: PathPatchResult, path: str | Path) -> Path:
    """The normalized metric of every sender head (layer x head) as a heatmap; save a PNG."""
    from actpatch.plotting import label_known_heads

    plt = _pyplot()
    use_norm = not bool(result.normalized.isnan().all())
    values = result.normalized * 100 if use_norm else result.raw - result.corrupt
    grid = values.reshape(values.shape[0], -1)
    limit = float(grid.nan_to_num(0).abs().max()) or 1.0
    fig, ax = plt.subplots(figsize=(max(6.0, 0.55 * grid.shape[1] + 2), 0.45 * grid.shape[0] + 2))
    image = ax.imshow(grid.nan_to_num(0).numpy(), cmap="RdBu", vmin=-limit, vmax=limit)
    ax.set_xlabel("sender head")
    ax.set_ylabel("sender layer")
    ax.set_xticks(range(grid.shape[1]))
    ax.set_yticks(range(grid.shape[0]))
    label_known_heads(ax, result.model)
    fig.colorbar(image, ax=ax, label="% (normalized " + result.metric + ")" if use_norm else "")
    frozen = ", MLPs frozen" if result.freeze_mlps else ""
    receivers = ", ".join(result.receivers)
    ax.set_title(
        f"path patching ({result.direction}{frozen}) -> {receivers}\non {result.model}: "
        f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


def _node_xy(name: str, n_layers: int, n_heads: int, n_kv: int = 0) -> tuple[float, float]:
    """Where a node sits: layers bottom to top, heads left to right, each MLP after its heads;
    a key/value head's reader (grouped convention) amid the query heads that share it."""
    writer = name.split("<")[0]
    if ".kv" in writer:
        layer, kv = writer[1:].split(".kv")
        size = n_heads / (n_kv or n_heads)
        return (int(kv) * size + (size - 1) / 2, float(layer))
    if writer == "input":
        return (n_heads / 2, -1.0)
    if writer == "logits":
        return (n_heads / 2, float(n_layers))
    if writer.startswith("m"):
        return (float(n_heads) + 0.5, int(writer[1:]) + 0.45)
    layer, head = writer[1:].split(".h")
    return (float(head), float(layer))


def circuit_graph(
    result: EdgeResult, path: str | Path, n_layers: int, n_heads: int, top: int = 50
) -> Path:
    """The `top` strongest edges drawn layer by layer, width by |score|, blue positive and red
    negative (the heatmaps' convention: blue raises the metric), q/k/v inputs as
    dotted/dashed/solid; save a PNG."""
    from actpatch.known_roles import CITATION, for_model

    plt = _pyplot()
    edges = result.edges[:top]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * n_heads + 3), max(4.0, 0.7 * n_layers + 2.5)))
    strongest = max((abs(e.score) for e in edges), default=1.0) or 1.0
    used = {"input", "logits"}
    styles = {"q": ":", "k": "--", "v": "-"}
    n_kv = int(result.graph.get("n_kv_heads", n_heads))
    for e in reversed(edges):  # strongest drawn last, on top
        x0, y0 = _node_xy(e.source, n_layers, n_heads)
        x1, y1 = _node_xy(e.target, n_layers, n_heads, n_kv)
        qkv = e.target[-2] if e.target.endswith(">") else "v"
        y1 = y1 - 0.18 if e.target.endswith(">") else y1
        ax.annotate(
            "",
            xy=(x1, y1),
            xytext=(x0, y0),
            arrowprops={
                "arrowstyle": "-|>",
                "color": "#2166ac" if e.score > 0 else "#b2182b",  # the heatmaps' RdBu
                "lw": 0.4 + 3.6 * abs(e.score) / strongest,
                "linestyle": styles[qkv],
                "alpha": 0.35 + 0.65 * abs(e.score) / strongest,
                "shrinkA": 6,
                "shrinkB": 6,
            },
        )
        if ".kv" not in e.target:  # a key/value head is no writer of its own
            used.add(e.target.split("<")[0])
        used.add(e.source)
    roles = for_model(result.model)
    for name in sorted(used):
        x, y = _node_xy(name, n_layers, n_heads)
        ax.plot([x], [y], "o", color="0.2" if name not in ("input", "logits") else "0.5", ms=5)
        label = name
        if name.startswith("a"):
            layer, head = (int(v) for v in name[1:].split(".h"))
            if (layer, head) in roles:
                label += f" ({roles[(layer, head)][1]})"
        ax.annotate(label, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7)
    ax.set_xlim(-1, n_heads + 1.5)
    ax.set_ylim(-1.6, n_layers + 0.6)
    ax.set_yticks(range(n_layers))
    ax.set_ylabel("layer")
    ax.set_xticks(range(n_heads))
    ax.set_xlabel(
        "head (MLPs on the right); q dotted, k dashed, v solid\n"
        "blue raises the metric, red lowers it (as in the heatmaps)"
    )
    note = f"\nhead roles: {CITATION}" if roles else ""
    ax.set_title(
        f"top {len(edges)} edges by |{result.method} score| on {result.model}{note}", fontsize=9
    )
    fig.tight_layout()
    return _save(fig, path)


def faithfulness_curve(results: CircuitResult | list[CircuitResult], path: str | Path) -> Path:
    """Faithfulness against the number of edges kept, one line per ranking; save a PNG."""
    plt = _pyplot()
    runs = results if isinstance(results, list) else [results]
    first = runs[0]
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    colors = ["#c0392b", "#2e6da4", "#27ae60", "#8e44ad"]
    finite: list[float] = []
    for i, result in enumerate(runs):
        xs = [max(p.n_edges, 0) for p in result.points]
        ys = [p.faithfulness for p in result.points]
        finite += [y for y in ys if not math.isnan(y)]
        label = f"ranked by {result.method}" if result.method else None
        ax.plot(xs, ys, "o-", color=colors[i % len(colors)], label=label, ms=4)
        if xs and max(xs) > 100:
            ax.set_xscale("symlog", linthresh=10)
    ax.axhline(1.0, color="0.6", lw=0.8, ls="--")
    ax.axhline(0.0, color="0.6", lw=0.8, ls="--")
    ax.set_xlabel(f"edges kept, best first (of {first.total_edges})")
    ax.set_ylabel("faithfulness")
    if finite:
        ax.set_ylim(min(-0.1, min(finite) - 0.05), max(1.1, max(finite) + 0.05))
    if any(r.method for r in runs):
        ax.legend(loc="lower right", fontsize=8)
    ax.set_title(
        f"faithfulness of the top-n edges, {first.ablation} ablation, on {first.model}\n"
        f"clean {first.metric} = {first.clean:.4g}, corrupted = {first.corrupt:.4g}",
        fontsize=9,
    )
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["circuit_graph", "faithfulness_curve", "path_heatmap"]
