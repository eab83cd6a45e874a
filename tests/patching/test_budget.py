"""The memory budget: read as people write it, and a small one splits a batch, not the answer."""

from __future__ import annotations

import pytest

import actpatch
from actpatch.patching.budget import DEFAULT_MAX_MEMORY, chunk_size, parse_memory
from actpatch.patching.cells import prepare
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GB", 4e9), ("512MiB", 512 * 2**20), ("2g", 2e9), ("1.5 GB", 1.5e9), (1000, 1000)],
)
def test_memory_budgets_read_as_people_write_them(text, size):
    assert parse_memory(text) == int(size)
    assert parse_memory(None) == DEFAULT_MAX_MEMORY


@pytest.mark.parametrize("text", ["lots", "-1GB", "4XB", 0])
def test_unreadable_budgets_teach(text):
    with pytest.raises(actpatch.InputError, match="4GB") as err:
        parse_memory(text)
    assert err.value.field == "max_memory"


@pytest.mark.parametrize("backend", ["fast", "bridge"])
def test_a_small_budget_splits_the_batch_but_not_the_answer(tiny_model, backend):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John", backend=backend)
    setup = prepare(exp, "z", "logit_diff", "denoising")
    assert chunk_size(setup, DEFAULT_MAX_MEMORY) >= 12  # every head of the tiny model at once
    assert chunk_size(setup, 1) == 1
    assert chunk_size(setup, 10**6) < chunk_size(setup, 10**9)
    whole = actpatch.sweep(exp, "z", "logit_diff")
    seen: list[tuple[int, int]] = []
    split = actpatch.sweep(
        exp, "z", "logit_diff", max_memory=1, progress=lambda d, t: seen.append((d, t))
    )
    assert (whole.raw - split.raw).abs().max() < 1e-5
    assert seen[-1] == (12, 12) and len(seen) >= 12  # one batch per cell
