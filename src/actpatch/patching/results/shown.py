"""How results show themselves in Jupyter, late-bound.

Every result has `_repr_html_` (its plotly figure), `_repr_png_` and `to_pandas()`; what draws
them lives in `actpatch.display`, a layer *above* the results (it knows every result type, as
`plotting` and `export` do). The results reach it through `display()`, imported by name when a
notebook first asks, so that the results never import the layer that presents them and loading
a result loads neither plotly nor pandas.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


def display() -> ModuleType:
    """`actpatch.display`: html(result), png(result), to_pandas(result)."""
    return importlib.import_module("actpatch.display")


class Shown:
    """What every result class inherits: Jupyter's display protocol and `to_pandas()`."""

    def _repr_html_(self) -> str:
        return display().html(self)  # type: ignore[no-any-return]

    def _repr_png_(self) -> bytes:
        return display().png(self)  # type: ignore[no-any-return]

    def to_pandas(self) -> Any:
        """A tidy `pandas.DataFrame`, one row per cell (or per part) with its labels; a sweep's
        has exactly the CSV export's columns. Each result's layout: `actpatch.display.frames`."""
        return display().to_pandas(self)
