"""Look inside what patching finds: attention patterns, direct logit attribution, logit lens.

Patching says *where* a behaviour lives; these views say *what* that place does, on the same
`Experiment` (clean and corrupted prompts, the answers), from one batched forward of both runs:
- `attention_pattern(exp, layer, head)`: where a head attends, clean and corrupted, with the
  tokens as labels (for a grouped-query model, each query head's own pattern);
- `direct_logit_attribution(exp)` (DLA): how much each head, MLP and the embeddings write
  directly into the answer's logit difference (or the target's logit), through the final norm
  with its scale frozen from the run, as TransformerLens decomposes the residual stream;
- `logit_lens(exp)`: the residual stream at each layer read through the final norm and the
  unembedding: the metric, the answer's rank and probability, the top tokens.

Each result names its model and the path that computed it (`backend`) and carries its
`warnings`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actpatch.views.attention import attention_pattern
    from actpatch.views.dla import direct_logit_attribution
    from actpatch.views.lens import logit_lens
    from actpatch.views.results import AttentionResult, DLAResult, LensResult

# Loaded on first use, as `actpatch` itself does: `actpatch.views.columns` (the views' tables,
# which the CSV export reads) must not pull in the engine.
_WHERE = {
    "attention_pattern": "actpatch.views.attention",
    "direct_logit_attribution": "actpatch.views.dla",
    "logit_lens": "actpatch.views.lens",
    "AttentionResult": "actpatch.views.results",
    "DLAResult": "actpatch.views.results",
    "LensResult": "actpatch.views.results",
}

__all__ = [
    "AttentionResult",
    "DLAResult",
    "LensResult",
    "attention_pattern",
    "direct_logit_attribution",
    "logit_lens",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'actpatch.views' has no attribute {name!r}")
    value = getattr(importlib.import_module(_WHERE[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value
