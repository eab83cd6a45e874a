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


def test_an_ablation_comes_back_from_its_dict_as_the_ablation_it_was():
    """A mean ablation read back from JSON is a mean ablation (from_dict once made it 'zero',
    the field's default, and dropped its reference, seed and resampling order)."""
    import dataclasses
    import json

    from actpatch.patching.results.sweeps import AblationResult

    sweep = _result(torch.tensor([[0.25, float("nan")]]), "noising")
    ablation = AblationResult(
        **{f.name: getattr(sweep, f.name) for f in dataclasses.fields(sweep)},
        ablation="resample",
        reference="another pair's clean prompt",
        seed=7,
        resample_from=[1, 0],
    )
    back = AblationResult.from_dict(json.loads(json.dumps(ablation.to_dict())))
    assert isinstance(back, AblationResult)
    assert (back.ablation, back.reference, back.seed, back.resample_from) == (
        "resample",
        "another pair's clean prompt",
        7,
        [1, 0],
    )
    assert back.to_dict() == ablation.to_dict()


def test_a_snapshot_comes_back_from_its_dict_with_its_progress():
    snapshot = _result(torch.tensor([[0.5, float("nan")]]), "denoising")
    snapshot.complete, snapshot.values_done, snapshot.values_total = False, 1, 2
    back = SweepResult.from_dict(snapshot.to_dict())
    assert (back.complete, back.values_done, back.values_total) == (False, 1, 2)
    assert back.to_dict() == snapshot.to_dict()
