"""Tensors through JSON: NaN becomes null and comes back as NaN; shapes and values survive."""

import json
import math

import torch

from actpatch.patching.serial import jsonable, nested, tensor_of


def test_nan_is_written_as_null_and_read_back_as_nan() -> None:
    t = torch.tensor([[1.5, float("nan")], [-2.0, 0.25]])
    text = json.dumps(nested(t))  # strict JSON: json.dumps would write NaN otherwise
    assert text == "[[1.5, null], [-2.0, 0.25]]"
    back = tensor_of(json.loads(text))
    assert back.shape == (2, 2)
    assert math.isnan(float(back[0, 1]))
    assert back[0, 0] == 1.5 and back[1, 0] == -2.0 and back[1, 1] == 0.25


def test_a_scalar_is_a_number_or_null() -> None:
    assert nested(torch.tensor(3.0)) == 3.0
    assert nested(torch.tensor(float("nan"))) is None
    assert jsonable(float("nan")) is None
    assert jsonable(2.0) == 2.0
