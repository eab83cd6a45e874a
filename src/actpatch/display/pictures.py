"""Each result's picture as PNG bytes, for notebook viewers that run no scripts.

The pictures the CLI already writes are reused as they are: `plotting.heatmap` (sweeps and
ablations), `plotting.attribution_heatmap`, `circuit_plots.path_heatmap`, `.circuit_graph` and
`.faithfulness_curve`, and `views.plots` (attention, DLA, lens). A single patch, path patching
of chosen senders, edge attribution without its graph's shape, and exact edge checks get bar
charts drawn here.

Those drawing functions select matplotlib's Agg backend (no display needed); in a notebook that
would silently stop the user's own `plt.plot` from showing inline, so the backend in use before
is put back after each picture.
"""

from __future__ import annotations

import io
import math
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import singledispatch
from pathlib import Path
from typing import Any

from actpatch.patching.results import (
    AttributionResult,
    CircuitResult,
    EdgeResult,
    PatchResult,
    PathPatchResult,
    SweepResult,
    VerifyResult,
)
from actpatch.views.results import AttentionResult, DLAResult, LensResult

BLUE, RED, PURPLE = "#2166ac", "#b2182b", "#7c3aed"


@contextmanager
def same_backend() -> Iterator[None]:
    """matplotlib's backend after the block as it was before it."""
    import matplotlib

    before = matplotlib.get_backend()
    try:
        yield
    finally:
        if matplotlib.get_backend() != before:
            matplotlib.use(before)


def drawn(draw: Callable[[Path], Path]) -> bytes:
    """The bytes of the PNG that `draw(path)` writes (into a folder removed afterwards)."""
    with same_backend(), tempfile.TemporaryDirectory() as folder:
        return draw(Path(folder) / "figure.png").read_bytes()


def bar_chart(names: list[str], values: list[float], title: str, axis: str) -> bytes:
    """Horizontal bars as PNG bytes, first name on top, blue positive and red negative (the
    heatmaps' RdBu). Drawn on a bare `Figure`: no pyplot, no backend touched."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7.0, max(2.5, 0.32 * len(names) + 1.6)), layout="constrained")
    ax = fig.subplots()
    shown = [0.0 if math.isnan(v) else v for v in values]
    ax.barh(range(len(names)), shown, color=[BLUE if v >= 0 else RED for v in shown])
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="0.4", linewidth=0.8)
    ax.set_xlabel(axis)
    ax.set_title(title, fontsize=9)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=120)
    return out.getvalue()


@singledispatch
def png(result: Any) -> bytes:
    """The PNG of one result."""
    raise TypeError(f"actpatch has no picture for {type(result).__name__}")


@png.register
def _(result: SweepResult) -> bytes:
    from actpatch.plotting import heatmap

    return drawn(lambda path: heatmap(result, path))


@png.register
def _(result: AttributionResult) -> bytes:
    from actpatch.plotting import attribution_heatmap

    return drawn(lambda path: attribution_heatmap(result, path))


@png.register
def _(result: PatchResult) -> bytes:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    ax = fig.subplots()
    runs = ("clean", "corrupted", "patched")
    probs = (result.clean_prob, result.corrupt_prob, result.patched_prob)
    ranks = (result.clean_rank, result.corrupt_rank, result.patched_rank)
    bars = ax.bar(runs, probs, color=[BLUE, RED, PURPLE])
    ax.bar_label(bars, labels=[f"{p:.3g} (rank {r})" for p, r in zip(probs, ranks, strict=True)])
    ax.set_ylabel("probability of the target")
    ax.set_ylim(0, max(1e-9, *probs) * 1.2)
    where = " ".join(f"{k} {v}" for k, v in result.index.items() if v is not None)
    recovery = "" if math.isnan(result.recovery_pct) else f", recovery {result.recovery_pct:.1f}%"
    ax.set_title(
        f"{result.component} patch at {where} ({result.direction}) on {result.model}{recovery}",
        fontsize=9,
    )
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=120)
    return out.getvalue()


@png.register
def _(result: PathPatchResult) -> bytes:
    if result.all_heads:
        from actpatch.circuit_plots import path_heatmap

        return drawn(lambda path: path_heatmap(result, path))
    use_norm = not bool(result.normalized.isnan().all())
    values = result.normalized if use_norm else result.raw - result.corrupt
    axis = f"normalized {result.metric}" if use_norm else f"{result.metric} - corrupted"
    title = f"path patching ({result.direction}) -> {', '.join(result.receivers)} on {result.model}"
    return bar_chart(result.senders, values.flatten().tolist(), title, axis)


@png.register
def _(result: EdgeResult) -> bytes:
    n_layers, n_heads = result.graph.get("n_layers"), result.graph.get("n_heads")
    if n_layers and n_heads:
        from actpatch.circuit_plots import circuit_graph

        return drawn(lambda path: circuit_graph(result, path, int(n_layers), int(n_heads)))
    top = result.top(30)
    title = f"top {len(top)} edges by |{result.method} score| on {result.model}"
    return bar_chart([e.name for e in top], [e.score for e in top], title, "score")


@png.register
def _(result: VerifyResult) -> bytes:
    use_norm = not all(math.isnan(c.normalized) for c in result.edges)
    values = [c.normalized if use_norm else c.effect for c in result.edges]
    axis = f"normalized change in {result.metric}" if use_norm else f"change in {result.metric}"
    title = f"edges patched exactly on {result.model}"
    return bar_chart([c.edge for c in result.edges], values, title, axis)


@png.register
def _(result: CircuitResult) -> bytes:
    from actpatch.circuit_plots import faithfulness_curve

    return drawn(lambda path: faithfulness_curve(result, path))


@png.register
def _(result: AttentionResult) -> bytes:
    from actpatch.views.plots import attention_heatmap

    return drawn(lambda path: attention_heatmap(result, path))


@png.register
def _(result: DLAResult) -> bytes:
    from actpatch.views.plots import dla_heatmap

    return drawn(lambda path: dla_heatmap(result, path))


@png.register
def _(result: LensResult) -> bytes:
    from actpatch.views.plots import lens_chart

    return drawn(lambda path: lens_chart(result, path))
