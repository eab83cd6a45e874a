"""Tensors as JSON and back: nested lists, with NaN written as null (JSON has no NaN).

Results (`results/`) and their statistics (`statistics.py`) both write and read their tensors
this way, so it lives below both.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


def jsonable(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def nested(t: Tensor) -> Any:
    """A tensor as nested lists with NaN as None (JSON's null)."""
    if t.dim() == 0:
        return jsonable(float(t))
    values = t.detach().to("cpu", torch.float64).tolist()  # one conversion, not one per float
    return _nulls(values)


def _nulls(values: Any) -> Any:
    if isinstance(values, list):
        return [_nulls(v) for v in values]
    return None if math.isnan(values) else values


def number_of(value: Any) -> float:
    """The inverse of `jsonable`: JSON's null as NaN, any other number as a float."""
    return math.nan if value is None else float(value)


def tensor_of(values: Any, dtype: torch.dtype = torch.float32) -> Tensor:
    """The inverse of `nested`: nested lists with None as NaN, as a float32 tensor (or `dtype`:
    float64 keeps a number written in decimal, as the views round theirs, exactly)."""

    def fill(v: Any) -> Any:
        if isinstance(v, list):
            return [fill(x) for x in v]
        return float("nan") if v is None else float(v)

    return torch.tensor(fill(values), dtype=dtype)


def optional_tensor(data: dict[str, Any], key: str) -> Tensor | None:
    """`tensor_of(data[key])`, or None where `data` has no such key or it is null."""
    value = data.get(key)
    return None if value is None else tensor_of(value)
