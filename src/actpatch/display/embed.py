"""A figure as an HTML fragment for a notebook, with plotly.js embedded once per kernel session.

Plotly.js (the 4.8 MB bundle inside the installed `plotly` package, the same file the web page
serves) is a classic script that sets `window.Plotly`. A notebook page keeps one `window` for
all its outputs, so, as plotly's own "notebook" renderer does, the first figure of a kernel
session carries the bundle and every later figure only calls `Plotly.newPlot`. Nothing is
fetched from a network. Two gotchas:
- the bundle lives in the output of the first figure shown: clear that output (or open the
  notebook with it cleared) and later figures say so in place of the plot; `reset()` makes the
  next figure embed it again;
- Google Colab renders every output in its own frame, so there every figure embeds it.

Text reaches plotly escaped (plotly reads `<br>` and other tags in labels, and a token such as
`<|endoftext|>` would vanish), and the JSON inside the script cannot close it (`<` is written
`\\u003c`).
"""

from __future__ import annotations

import html
import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any

_embedded = False  # whether this kernel session has sent plotly.js already
_ids = itertools.count()


@dataclass
class Figure:
    """What a result shows: a plotly figure (`data` and `layout`, as plotly.js takes them),
    an optional table under it (`columns` and `rows` of plain text), a caption of plain-text
    lines (the model, the backend, the metric) and the warnings the result carries."""

    data: list[dict[str, Any]]
    layout: dict[str, Any]
    height: int
    caption: list[str]
    warnings: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)


def reset() -> None:
    """The next figure embeds plotly.js again."""
    global _embedded
    _embedded = False


def plotlyjs_script() -> str:
    """The `<script>` that defines `window.Plotly`, from the installed `plotly` package."""
    from plotly.offline import get_plotlyjs

    return f'<script type="text/javascript">{get_plotlyjs()}</script>'


def _in_colab() -> bool:
    return "google.colab" in sys.modules


def script_json(value: Any) -> str:
    """`value` as JSON that is safe inside a `<script>` element (no `<`, `>` or `&` as such)."""
    text = json.dumps(_finite(value), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as None (plotly's gap; JSON has no NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def text(value: str) -> str:
    """Plain text as HTML: escaped, and non-ASCII (tokens, the caption's dots) as character
    references, right whatever encoding the page is read in."""
    return html.escape(value).encode("ascii", "xmlcharrefreplace").decode()


_MISSING = (
    "plotly.js is not loaded on this page: the first actpatch figure of this kernel session "
    "embedded it, and that output is gone. Run actpatch.display.reset() and show this result "
    "again, or rerun the notebook from the top."
)


def figure_html(fig: Figure) -> str:
    """The HTML fragment of `fig`: plotly.js (first time only), the plot, the table, the caption."""
    global _embedded
    parts = ['<div class="actpatch-result">']
    if not _embedded or _in_colab():
        parts.append(plotlyjs_script())
        _embedded = True
    div = f"actpatch-figure-{next(_ids)}-{id(fig):x}"
    config = {"responsive": True, "displaylogo": False}
    parts.append(
        f'<div id="{div}" class="plotly-graph-div" style="height:{fig.height}px; width:100%;">'
        "</div>"
        "<script>(function () {"
        f'var gd = document.getElementById("{div}"); if (!gd) return;'
        "if (!window.Plotly) { gd.style.height = 'auto';"
        f" gd.textContent = {script_json(_MISSING)}; return; }}"
        f"window.Plotly.newPlot(gd, {script_json(fig.data)}, {script_json(fig.layout)}, "
        f"{script_json(config)});"
        "})();</script>"
    )
    if fig.rows:
        head = "".join(f"<th>{text(c)}</th>" for c in fig.columns)
        body = "".join(
            "<tr>" + "".join(f"<td>{text(v)}</td>" for v in row) + "</tr>" for row in fig.rows
        )
        parts.append(
            '<table style="border-collapse:collapse">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        )
    if fig.caption:
        parts.append(f"<p>{'<br>'.join(text(line) for line in fig.caption)}</p>")
    for message in fig.warnings:
        parts.append(f'<p style="color:#9a3412">warning: {text(message)}</p>')
    parts.append("</div>")
    return "\n".join(parts)
