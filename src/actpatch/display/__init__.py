"""Results in a Jupyter notebook: an interactive figure, a PNG fallback and a tidy table.

Every result object (a sweep, an ablation, a single patch, attribution patching, path patching,
edge attribution and its exact checks, a circuit's faithfulness, and the views: attention
patterns, direct logit attribution, the logit lens) shows itself when it is the last expression
of a cell, and converts to a `pandas.DataFrame`:

    >>> heads = actpatch.sweep(exp, "z")
    >>> heads                       # in Jupyter: the layer x head heatmap, hover for the numbers
    >>> heads.to_pandas()           # one row per cell: layer, head, raw, normalized, ...

The result classes hold one-line methods that call this package:
- `html(result)` (`_repr_html_`): a plotly figure, then the run's model, backend, metric and
  warnings. Plotly.js comes from the installed `plotly` package, never from a CDN, so it works
  offline: the first figure of a kernel session embeds it (4.8 MB, as plotly's own "notebook"
  renderer does) and the later ones reuse it (`reset()` embeds it again; see `embed`);
- `png(result)` (`_repr_png_`): the same picture drawn by matplotlib, for the places that run no
  scripts (GitHub's notebook preview, an untrusted notebook, nbconvert to PDF);
- `to_pandas(result)`: a tidy table, one row per cell with its labels (`frames` documents each
  layout; a sweep's is exactly its CSV export's). pandas is the `actpatch[notebook]` extra.

Nothing here is imported until a result is displayed or converted: pandas, matplotlib and
plotly load on first use.
"""

from __future__ import annotations

from typing import Any


def html(result: Any) -> str:
    """`result` as an HTML fragment: its plotly figure (and table), then what it was run on."""
    from actpatch.display.embed import figure_html
    from actpatch.display.figures import figure

    return figure_html(figure(result))


def png(result: Any) -> bytes:
    """`result`'s picture as PNG bytes (matplotlib)."""
    from actpatch.display.pictures import png as draw

    return draw(result)


def to_pandas(result: Any) -> Any:
    """`result` as a tidy `pandas.DataFrame`, one row per cell with its labels."""
    from actpatch.display.frames import frame

    return frame(result)


def reset() -> None:
    """Make the next figure embed plotly.js again (after clearing the output that held it)."""
    from actpatch.display import embed

    embed.reset()


__all__ = ["html", "png", "reset", "to_pandas"]
