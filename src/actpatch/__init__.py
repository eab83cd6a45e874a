"""actpatch: activation patching, exact and fast.

    >>> import actpatch
    >>> model = actpatch.load_model("gpt2")          # or a local folder, or "demo"
    >>> exp = actpatch.Experiment(
    ...     model,
    ...     clean="When Mary and John went to the store, John gave a drink to",
    ...     corrupt="When Mary and John went to the store, Mary gave a drink to",
    ...     target=" Mary", wrong=" John",
    ... )
    >>> heads = actpatch.sweep(exp, "z")                  # (layer, head), normalized logit diff
    >>> resid = actpatch.sweep(exp, "resid_pre")          # (layer, pos)
    >>> one = actpatch.patch(exp, layer=9, head=9)       # the specification's /patch numbers
    >>> est = actpatch.attribute(exp, "z_by_pos", method="atp*", compare=True)  # AtP* vs exact
    >>> knock = actpatch.ablate(exp, "z", "mean")         # mean-ablate each head in the clean run
    >>> again = actpatch.read_result("out/sweep_z.json") # a saved result (--out, runs show), back

Several prompt pairs: pass lists to `Experiment` (one token length each side), or, for a
dataset of several templates, `sweep_many(group_by_length(model, clean, corrupt, target,
wrong), "z")`; `actpatch.datasets.ioi(n, seed)` generates IOI pairs.

Vocabulary: the *clean* run shows the behaviour, the *corrupted* run does not. *Denoising*
patches a clean activation into the corrupted run; *noising* patches a corrupted activation
into the clean run. Results are normalized so that the clean run is 1 and the corrupted run 0.

Importing actpatch loads nothing heavy: torch and transformers are imported on first use of a
name that needs them (so `actpatch --help` answers at once).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from actpatch.errors import ActpatchError, CancelledError, InputError, ModelUnavailableError
from actpatch.version import __version__ as __version__

if TYPE_CHECKING:
    from actpatch.models import LoadedModel, load_model
    from actpatch.patching import (
        ABLATIONS,
        ATTRIBUTION_METHODS,
        COMPONENTS,
        DIRECTIONS,
        METRICS,
        AblationResult,
        AttributionResult,
        Experiment,
        PatchResult,
        SweepResult,
        ablate,
        ablate_many,
        attribute,
        attribute_components,
        attribute_many,
        group_by_length,
        patch,
        sweep,
        sweep_many,
    )
    from actpatch.reading import read_result


_WHERE = {
    "LoadedModel": "actpatch.models",
    "load_model": "actpatch.models",
    "COMPONENTS": "actpatch.patching.components",
    "DIRECTIONS": "actpatch.patching.options",
    "METRICS": "actpatch.patching.options",
    "Experiment": "actpatch.patching.experiment",
    "group_by_length": "actpatch.patching.experiment",
    "PatchResult": "actpatch.patching.results",
    "SweepResult": "actpatch.patching.results",
    "patch": "actpatch.patching.engine",
    "sweep": "actpatch.patching.engine",
    "sweep_many": "actpatch.patching.engine",
    "ABLATIONS": "actpatch.patching.ablation",
    "ablate": "actpatch.patching.ablation",
    "ablate_many": "actpatch.patching.ablation",
    "ATTRIBUTION_METHODS": "actpatch.patching.attribution",
    "attribute": "actpatch.patching.attribution",
    "attribute_components": "actpatch.patching.attribution",
    "attribute_many": "actpatch.patching.attribution",
    "AblationResult": "actpatch.patching.results",
    "AttributionResult": "actpatch.patching.results",
    "read_result": "actpatch.reading",
}

__all__ = [
    "ABLATIONS",
    "ATTRIBUTION_METHODS",
    "COMPONENTS",
    "DIRECTIONS",
    "METRICS",
    "AblationResult",
    "ActpatchError",
    "AttributionResult",
    "CancelledError",
    "Experiment",
    "InputError",
    "LoadedModel",
    "ModelUnavailableError",
    "PatchResult",
    "SweepResult",
    "ablate",
    "ablate_many",
    "attribute",
    "attribute_components",
    "attribute_many",
    "group_by_length",
    "load_model",
    "patch",
    "read_result",
    "sweep",
    "sweep_many",
]


def __getattr__(name: str) -> Any:
    from actpatch.patching import RENAMED  # old names that still resolve

    where = RENAMED.get(name, name)
    if where not in _WHERE:
        raise AttributeError(f"module 'actpatch' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[where]), where)
    globals()[name] = value  # later look-ups skip this function
    return value
