"""Shared by the views' tests: an experiment on each tiny family, and TransformerLens's cache of
the same prompts through its bridge (the reference)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import actpatch
from tests.patching.test_engine import _pick_answers

CLEAN, CORRUPT = "Mary met John, and John thanked", "Mary met John, and Mary thanked"


@pytest.fixture(scope="module")
def family_experiment(family_model: Any):
    """`family_experiment(name)`: (experiment on the fast path, TransformerLens's cache of the
    clean prompt through the bridge, the Hugging Face model)."""
    built: dict[str, Any] = {}

    def make(name: str) -> Any:
        if name not in built:
            model = family_model(name)
            exp = actpatch.Experiment(
                model, CLEAN, CORRUPT, *_pick_answers(model, CLEAN, CORRUPT), backend="fast"
            )
            with torch.inference_mode():
                _, cache = model.bridge().run_with_cache(exp.clean_tokens)
            built[name] = (exp, cache, model)
        return built[name]

    return make
