"""The model layer: one transformer forward over a small description of each architecture.

- `spec`: `ArchSpec`, what varies between architectures (norms, positions, attention layout,
  MLP, residual wiring), with defaults;
- `forward`: `Transformer`, the one block and the one model forward, with TransformerLens's
  hook names, able to start at any layer and position;
- `families`: one adapter per Hugging Face family (config -> spec, weights -> tensors), and
  `supports(hf_model)` / `load(hf_model)`.
"""

from actpatch.arch.families import FAMILIES, load, supports
from actpatch.arch.forward import HOOK_NAMES, PAST_NAMES, Hook, Transformer, per_query_head
from actpatch.arch.spec import ArchSpec, Rope

__all__ = [
    "FAMILIES",
    "HOOK_NAMES",
    "PAST_NAMES",
    "ArchSpec",
    "Hook",
    "Rope",
    "Transformer",
    "load",
    "per_query_head",
    "supports",
]
