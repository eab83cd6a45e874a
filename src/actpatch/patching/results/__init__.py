"""What each method returns, one module per family of results:

- `sweeps`: a sweep (`SweepResult`), an ablation sweep (`AblationResult`) and a single patch
  (`PatchResult`, with its `TopToken`s);
- `attributions`: attribution patching (`AttributionResult`);
- `circuits`: path patching (`PathPatchResult`), edge attribution (`EdgeResult`, `EdgeScore`),
  exact edge checks (`VerifyResult`, `EdgeCheck`) and circuits (`CircuitResult`,
  `CircuitPoint`);
- `warning`: what makes any of them doubtful (`ResultWarning`).

Every result is built whole by its method and turns into JSON with `to_dict()`. Every name is
importable from here too, as it was when the results were one module.
"""

from actpatch.patching.results.attributions import AttributionResult
from actpatch.patching.results.circuits import (
    CircuitPoint,
    CircuitResult,
    EdgeCheck,
    EdgeResult,
    EdgeScore,
    PathPatchResult,
    VerifyResult,
)
from actpatch.patching.results.sweeps import AblationResult, PatchResult, SweepResult, TopToken
from actpatch.patching.results.warning import ResultWarning
from actpatch.patching.serial import tensor_of  # notebooks `export` wrote import it from here

__all__ = [
    "AblationResult",
    "AttributionResult",
    "CircuitPoint",
    "CircuitResult",
    "EdgeCheck",
    "EdgeResult",
    "EdgeScore",
    "PatchResult",
    "PathPatchResult",
    "ResultWarning",
    "SweepResult",
    "TopToken",
    "VerifyResult",
    "tensor_of",
]
