"""Activation patching: components, alignment, metrics, experiments and the sweep engine."""

from actpatch.patching.alignment import Alignment, align
from actpatch.patching.components import COMPONENTS, Component, get_component
from actpatch.patching.engine import DIRECTIONS, group_by_length, patch, sweep, sweep_many
from actpatch.patching.experiment import Experiment
from actpatch.patching.metrics import METRICS
from actpatch.patching.results import PatchResult, SweepResult, TopToken

__all__ = [
    "COMPONENTS",
    "DIRECTIONS",
    "METRICS",
    "Alignment",
    "Component",
    "Experiment",
    "PatchResult",
    "SweepResult",
    "TopToken",
    "align",
    "get_component",
    "group_by_length",
    "patch",
    "sweep",
    "sweep_many",
]
