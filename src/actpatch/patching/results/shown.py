"""How results show themselves in Jupyter, late-bound.

Every result has `_repr_html_` (its plotly figure), `_repr_png_` and `to_pandas()`; what draws
them lives in `actpatch.display`, a layer *above* the results (it knows every result type, as
`plotting` and `export` do). The results reach it through `display()`, imported by name when a
notebook first asks, so that the results never import the layer that presents them and loading
a result loads neither plotly nor pandas.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType
from typing import Any


def display() -> ModuleType:
    """`actpatch.display`: html(result), png(result), to_pandas(result)."""
    return importlib.import_module("actpatch.display")


def brief(value: Any) -> str:
    """A value as a result's repr shows it: a tensor by its shape, a long list by its length,
    never a wall of numbers."""
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # a tensor or an array
        return f"<{type(value).__name__} {'x'.join(str(n) for n in value.shape) or 'scalar'}>"
    if isinstance(value, list | tuple | dict) and len(value) > 8:
        return f"<{len(value)} {type(value).__name__} items>"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"<{type(value).__name__}>"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class Shown:
    """What every result class inherits: Jupyter's display protocol, `to_pandas()` and a short
    repr (the result classes are `@dataclass(repr=False)`, so that this one is theirs)."""

    def __repr__(self) -> str:
        """The result's kind and every field that is set, briefly (`brief`): readable where a
        notebook prints it as text (`print`, a list of results); `to_pandas()` has the numbers."""
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        values = [(f.name, getattr(self, f.name)) for f in fields if f.repr]
        shown = [
            f"{name}={brief(value)}"
            for name, value in values
            if name == "warnings"  # always shown, even when there are none
            or not (value is None or (isinstance(value, list | tuple | dict | str) and not value))
        ]
        return f"{type(self).__name__}({', '.join(shown)})"

    def _repr_html_(self) -> str:
        return display().html(self)  # type: ignore[no-any-return]

    def _repr_png_(self) -> bytes:
        return display().png(self)  # type: ignore[no-any-return]

    def to_pandas(self) -> Any:
        """A tidy `pandas.DataFrame`, one row per cell (or per part) with its labels: the same
        table, column for column, as the run's CSV export. Each result's layout:
        `actpatch.display.frames`."""
        return display().to_pandas(self)
