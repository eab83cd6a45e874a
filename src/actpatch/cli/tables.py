"""How numbers and tables read in a terminal: percentages, cells, grids that fit the width."""

from __future__ import annotations

import math
import re
import shutil
from collections.abc import Sequence
from typing import Any


def fmt(value: float | None, pct: bool = True) -> str:
    """A table cell: a fraction as signed percent points (+23.9), else the value; · if none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "·"
    return f"{value * 100:+.1f}" if pct else f"{value:+.3g}"


def pct(prob: float) -> str:
    """A probability as a percentage, or in scientific notation when it is below 0.1%."""
    return f"{prob * 100:5.1f}%" if prob >= 1e-3 else f"{prob:.0e}".rjust(6)


def normalized_text(value: float) -> str:
    """A normalized value as a percentage, or why it is undefined."""
    if math.isnan(value):
        return "undefined (the clean and corrupted runs give the same value)"
    return f"{value * 100:.1f}%"


def cell_text(
    axes: Sequence[str], cell: Sequence[int], pos_labels: Sequence[str] | None = None
) -> str:
    """A cell as people read it, a head in the page's notation: `L3H5`, `L3 P4`, `L2H1 P4`
    (a position by its role, `L2H1 S2`, when `pos_labels` names them)."""
    at = dict(zip(axes, cell, strict=True))
    text = f"L{at['layer']}" + (f"H{at['head']}" if "head" in at else "")
    if "pos" in at:
        text += " " + (pos_labels[at["pos"]] if pos_labels else f"P{at['pos']}")
    return text


def node_text(name: str) -> str:
    """A graph node as people read it: a head `a3.h4` as `L3H4`; MLPs (`m3`), the input and
    key/value heads keep the engine's names. Edges keep theirs whole (`a3.h4->a5.h1<v>`)."""
    match = re.fullmatch(r"a(\d+)\.h(\d+)", name)
    return f"L{match[1]}H{match[2]}" if match else name


def top_heading(heading: str, warnings: Sequence[Any]) -> str:
    """The heading over a result's top cells: `heading`, or, when the result carries the
    `no_behaviour` warning, a heading that says the cells are not where a behaviour lives (the
    experiment has none: the largest effects are the largest noise)."""
    if any(getattr(w, "code", None) == "no_behaviour" for w in warnings):
        return (
            f"no behaviour to localize (see the warning): the {heading.split(' ', 1)[1]} are "
            "the largest noise, not where the behaviour lives"
        )
    return heading


def effect_text(value: float | None, gap: float | None) -> str:
    """A metric change as % of clean - corrupted when defined, else raw."""
    if value is None or math.isnan(value):
        return "·"
    if gap:
        return f"{100 * value / gap:+.1f}%"
    return f"{value:+.4f}"


def role(model_name: str, name: str) -> str:
    """A head's known role (GPT-2 small only), for listings: ' (name mover)' or ''."""
    from actpatch.known_roles import for_model

    if not name.startswith("a"):
        return ""
    layer, head = (int(v) for v in name[1:].split("<")[0].split(".h"))
    known = for_model(model_name).get((layer, head))
    return f" ({known[0]})" if known else ""


def print_cells(
    values: Any, axes: Sequence[str], labels: Sequence[str], label_head: str, pct: bool
) -> None:
    """A (layer, head) table, or a (layer, pos) one with the positions as rows (`labels`, under
    `label_head`); a three-axis result is too large for a terminal, and says so."""
    if len(axes) == 3:  # (layer, pos, head): too big for a terminal table
        print(
            f"  ({' x '.join(axes)} is too large for a table here: the top cells follow; "
            "--json or --out keeps every cell)"
        )
        return
    if axes[1] == "head":
        rows = [f"  L{layer:<3}" for layer in range(values.shape[0])]
        print_grid("      ", rows, [f"H{h}" for h in range(values.shape[1])], values, pct)
    else:  # positions as rows, layers as columns
        rows = [f"  {pos:>3} {label:<16}" for pos, label in enumerate(labels)]
        layers = [f"L{i}" for i in range(values.shape[0])]
        print_grid(f"  {'pos':>3} {label_head:<16}", rows, layers, values.T, pct)


def print_grid(head: str, rows: list[str], columns: list[str], values: Any, pct: bool) -> None:
    """A table of 7-character cells (rows x columns of `values`), in blocks of as many columns
    as fit the terminal's width, so that a 30-layer model's table does not wrap."""
    width = shutil.get_terminal_size((100, 24)).columns
    per_block = max(1, (width - max(len(head), *(len(r) for r in rows))) // 7)
    for first in range(0, len(columns), per_block):
        block = range(first, min(first + per_block, len(columns)))
        if first:
            print()
        print(head + "".join(f"{columns[j]:>7}" for j in block))
        for i, row in enumerate(rows):
            print(row + "".join(f"{fmt(float(values[i, j]), pct):>7}" for j in block))
