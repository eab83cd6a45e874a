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


SHORT_CLEAN, SHORT_CORRUPT = "Mary met John, and John thanked", "Mary met John, and Mary thanked"
# Seven pairs in two length groups (the IOI prompt, a shorter one), built so that which pairs
# must warn is known: those whose corrupted prompt is the clean one, those whose target has no
# leading space.
MIXED = [
    (IOI_CLEAN, IOI_CORRUPT, " Mary"),
    (IOI_CLEAN, IOI_CLEAN, " Mary"),
    (SHORT_CLEAN, SHORT_CORRUPT, "Mary"),
    (SHORT_CLEAN, SHORT_CLEAN, " Mary"),
    (IOI_CLEAN, IOI_CORRUPT, "Mary"),
    (SHORT_CLEAN, SHORT_CORRUPT, " Mary"),
    (IOI_CLEAN, IOI_CLEAN, " Mary"),
]
MIXED_IDENTICAL = tuple(i for i, (clean, corrupt, _) in enumerate(MIXED) if clean == corrupt)
MIXED_UNSPACED = tuple(i for i, (_, _, target) in enumerate(MIXED) if not target.startswith(" "))


def mixed_groups(model: LoadedModel) -> list[actpatch.Experiment]:
    """`MIXED` on `model`, one experiment per length group, nothing run yet."""
    clean, corrupt, target = (list(x) for x in zip(*MIXED, strict=True))
    return actpatch.group_by_length(model, clean, corrupt, target, [" John"] * len(MIXED))
