"""What every result shows as text: a short repr, never a wall of numbers."""

import torch

from actpatch.patching.results import AblationResult, AttributionResult, PatchResult, SweepResult
from actpatch.patching.results.circuits import (
    CircuitResult,
    EdgeResult,
    PathPatchResult,
    VerifyResult,
)
from actpatch.patching.results.shown import Shown, brief
from actpatch.views.results import AttentionResult, DLAResult, LensResult

RESULTS = [
    SweepResult,
    AblationResult,
    PatchResult,
    AttributionResult,
    PathPatchResult,
    EdgeResult,
    VerifyResult,
    CircuitResult,
    AttentionResult,
    DLAResult,
    LensResult,
]


def test_every_result_class_uses_the_short_repr():
    """A dataclass writes its own __repr__ (every field, every number) unless told not to."""
    for cls in RESULTS:
        assert cls.__repr__ is Shown.__repr__, cls.__name__


def test_a_sweep_shows_its_shape_not_its_numbers():
    raw = torch.arange(144, dtype=torch.float32).reshape(12, 12) + 0.123
    sweep = SweepResult(
        model="gpt2",
        component="z",
        metric="logit_diff",
        direction="denoising",
        axes=("layer", "head"),
        raw=raw,
        normalized=raw / 144,
        clean=3.5,
        corrupt=-1.25,
        tokens=[f"t{i}" for i in range(40)],
        clean_tokens=[],
        corrupt_tokens=[],
        patched_positions=list(range(40)),
        unpatched_positions=[],
        identical_positions=[],
        alignment={},
        n_pairs=1,
        seconds=0.5,
        backend="fast",
        devices=["cpu"],
    )
    text = repr(sweep)
    assert text.startswith("SweepResult(model='gpt2', component='z', metric='logit_diff'")
    assert "raw=<Tensor 12x12>" in text and "tokens=<40 list items>" in text
    assert "backend='fast'" in text and "devices=['cpu']" in text and "warnings=[]" in text
    assert "0.123" not in text and "t39" not in text  # no cell's value, no token list
    assert len(text) < 600


def test_brief():
    assert brief(torch.zeros(2, 3, 4)) == "<Tensor 2x3x4>"
    assert brief(torch.tensor(1.0)) == "<Tensor scalar>"
    assert brief([1, 2]) == "[1, 2]"
    assert brief(list(range(9))) == "<9 list items>"
    assert brief(1 / 3) == "0.333333"
    assert brief("x" * 200) == "'" + "x" * 116 + "..."
