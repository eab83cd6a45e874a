"""Cells: the head axis of keys and values (the memory budget's batches: test_budget.py)."""

from __future__ import annotations

import actpatch
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


def test_keys_and_values_sweep_kv_heads(family_model):
    model = family_model("llama")  # 4 query heads share 2 KV heads
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    assert actpatch.sweep(exp, "k").raw.shape == (2, 2)
    assert actpatch.sweep(exp, "v_by_pos").raw.shape == (2, exp.clean_tokens.shape[1], 2)
    assert actpatch.sweep(exp, "q").raw.shape == (2, 4)
    assert actpatch.sweep(exp, "pattern").raw.shape == (2, 4)
