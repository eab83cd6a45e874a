"""Activation patching: components, alignment, metrics, experiments and the sweep engine.

Names are imported on first use (PEP 562), so that `actpatch.patching.components` and
`actpatch.patching.options` can be read without loading torch (the CLI's parser uses them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actpatch.patching.ablation import ABLATIONS, ablate, ablate_many
    from actpatch.patching.alignment import Alignment, align
    from actpatch.patching.attribution import (
        ATTRIBUTION_METHODS,
        attribute,
        attribute_components,
        attribute_many,
    )
    from actpatch.patching.circuit import evaluate_many, verify_edges
    from actpatch.patching.components import COMPONENTS, Component, get_component
    from actpatch.patching.edges import edge_attribution, edge_attribution_many
    from actpatch.patching.engine import patch, sweep, sweep_many
    from actpatch.patching.experiment import Experiment, group_by_length
    from actpatch.patching.gradients import GradientRun, gradient_run
    from actpatch.patching.options import DIRECTIONS, METRICS
    from actpatch.patching.paths import path_patch, path_patch_many
    from actpatch.patching.results import (
        AblationResult,
        AttributionResult,
        PatchResult,
        SweepResult,
        TopToken,
    )

_WHERE = {
    "ABLATIONS": "ablation",
    "ablate": "ablation",
    "ablate_many": "ablation",
    "ATTRIBUTION_METHODS": "attribution",
    "GradientRun": "gradients",
    "attribute": "attribution",
    "attribute_components": "attribution",
    "attribute_many": "attribution",
    "gradient_run": "gradients",
    "Alignment": "alignment",
    "align": "alignment",
    "COMPONENTS": "components",
    "Component": "components",
    "get_component": "components",
    "evaluate_many": "circuit",
    "verify_edges": "circuit",
    "edge_attribution": "edges",
    "edge_attribution_many": "edges",
    "path_patch": "paths",
    "path_patch_many": "paths",
    "patch": "engine",
    "sweep": "engine",
    "sweep_many": "engine",
    "Experiment": "experiment",
    "group_by_length": "experiment",
    "DIRECTIONS": "options",
    "METRICS": "options",
    "AblationResult": "results",
    "AttributionResult": "results",
    "PatchResult": "results",
    "SweepResult": "results",
    "TopToken": "results",
}

__all__ = [
    "ABLATIONS",
    "ATTRIBUTION_METHODS",
    "COMPONENTS",
    "DIRECTIONS",
    "METRICS",
    "AblationResult",
    "Alignment",
    "AttributionResult",
    "Component",
    "Experiment",
    "GradientRun",
    "PatchResult",
    "SweepResult",
    "TopToken",
    "ablate",
    "ablate_many",
    "align",
    "attribute",
    "attribute_components",
    "attribute_many",
    "edge_attribution",
    "edge_attribution_many",
    "evaluate_many",
    "get_component",
    "gradient_run",
    "group_by_length",
    "patch",
    "path_patch",
    "path_patch_many",
    "sweep",
    "sweep_many",
    "verify_edges",
]


# Old names that still resolve (here and in `actpatch`). (`attribute_many(exp, components)`, the
# old name of `attribute_components`, is still answered by `attribute_many` itself, with a
# FutureWarning: the name now takes a dataset's length groups, as every *_many function does.)
RENAMED: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    name = RENAMED.get(name, name)
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"actpatch.patching.{_WHERE[name]}"), name)
