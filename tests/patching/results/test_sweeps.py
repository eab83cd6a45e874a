"""SweepResult: ranking cells by effect, and JSON with nulls."""

import math

import torch

from actpatch.patching.results.sweeps import SweepResult


def _result(normalized: torch.Tensor, direction: str) -> SweepResult:
    return SweepResult(
        model="m",
        component="z",
        metric="logit_diff",
        direction=direction,
        axes=("layer", "head"),
        raw=normalized * 2.0,
        normalized=normalized,
        clean=2.0,
        corrupt=0.0,
        tokens=[],
        clean_tokens=[],
        corrupt_tokens=[],
        patched_positions=[],
        unpatched_positions=[],
        identical_positions=[],
        alignment={},
        n_pairs=1,
        seconds=0.0,
        backend="fast",
    )


def test_top_ranks_by_distance_from_the_unpatched_run():
    values = torch.tensor([[0.0, 0.9], [-0.5, 0.1]])
    assert [i for i, _ in _result(values, "denoising").top(2)] == [(0, 1), (1, 0)]
    # noising: the unpatched run is the clean one (1); a cell at 1 did nothing
    values = torch.tensor([[1.0, 0.2], [0.95, float("nan")]])
    ranked = _result(values, "noising").top(3)
    assert ranked[0][0] == (0, 1)
    assert ranked[1][0] == (1, 0)


def test_to_dict_writes_nan_as_null():
    values = torch.tensor([[float("nan"), 0.5]])
    d = _result(values, "denoising").to_dict()
    assert d["normalized"] == [[None, 0.5]] and d["raw"][0][0] is None
    assert math.isclose(d["raw"][0][1], 1.0)
