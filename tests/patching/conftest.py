"""Fixtures shared by the tests of patching's modules."""

from __future__ import annotations

import pytest

import actpatch
from actpatch.models import LoadedModel
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


@pytest.fixture(scope="module")
def exp64(tiny_model_dir):
    """The IOI experiment on a float64 copy of the tiny model (for finite differences)."""
    fresh = actpatch.load_model(str(tiny_model_dir))
    hf = fresh.hf_model.double()
    model = LoadedModel("tiny-gpt2-float64", "local folder", hf, fresh.tokenizer)
    return actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
