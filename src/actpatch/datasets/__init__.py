"""Prompt-pair datasets for activation patching: clean and corrupted prompts with their answers.

Vocabulary. A *pair* is a clean prompt and a corrupted prompt that differ in a few tokens, so
that the model's answer changes; `target` is the answer the clean prompt calls for and `wrong`
the answer the corrupted prompt calls for. Every answer is a string the model reads as one
token, usually with its leading space (" Mary"). The metric the engine averages over pairs is
usually the logit difference `logit(target) - logit(wrong)` at the final position.

Generated tasks ship here, and any other can be read from a JSONL file:

- `ioi`: indirect object identification (Wang et al. 2022, "Interpretability in the Wild").
  "When Mary and John went to the store, John gave a drink to" -> " Mary".
- `factual`: factual recall. "The city of Paris is the capital of" -> " France", and
  "In France, people speak" -> " French".
- MIB's circuit-track tasks: `mib_ioi`, `arithmetic` ("12 + 7 =" -> " 19") and `mcqa`.
- `load_dataset("ioi:N[:SEED]" | "factual:N[:SEED]" | "mib-ioi:N" | "add:N" | "sub:N" |
  "mcqa:N" | "path/to/pairs.jsonl")`. Every generator takes the served model's tokenizer:
  `load_dataset(spec, tokenizer=model.tokenizer)`.

Where things are, from the bottom up: `pairs` (the format: `PromptDataset`, roles as
`Positions`), `tokens` (the tokenizer's view: which words are one token, and where),
`ioi_task`, `factual_task` and `mib_tasks` (the generators and their word lists; MIB's IOI
shares the IOI names and roles), and `load` (the registry of specs, `DATASET_SPECS`, and JSONL
files), above them all. Every public name is importable from `actpatch.datasets`.
"""

from __future__ import annotations

from actpatch.datasets.factual_task import (
    CAPITALS,
    FACTUAL_HELDOUT_TEMPLATES,
    FACTUAL_RELATIONS,
    FACTUAL_TRAIN_TEMPLATES,
    LANGUAGES,
    factual,
)
from actpatch.datasets.ioi_task import (
    IOI_HELDOUT_NAMES,
    IOI_HELDOUT_TEMPLATES,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    IOI_ROLES,
    IOI_TEMPLATES,
    IOI_TRAIN_NAMES,
    IOI_TRAIN_TEMPLATES,
    Split,
    ioi,
    ioi_positions,
)
from actpatch.datasets.load import (
    DATASET_SPEC_LIST,
    DATASET_SPECS,
    generated_dataset,
    load_dataset,
    parse_jsonl,
    spec_numbers,
    unencodable,
)
from actpatch.datasets.mib_tasks import arithmetic, mcqa, mib_ioi
from actpatch.datasets.pairs import Positions, PromptDataset
from actpatch.datasets.tokens import (
    Span,
    answer_form,
    span_positions,
    spans_are_one_token,
    token_offsets,
    tokenizer_or_gpt2,
)

__all__ = [
    "CAPITALS",
    "DATASET_SPECS",
    "DATASET_SPEC_LIST",
    "FACTUAL_HELDOUT_TEMPLATES",
    "FACTUAL_RELATIONS",
    "FACTUAL_TRAIN_TEMPLATES",
    "IOI_HELDOUT_NAMES",
    "IOI_HELDOUT_TEMPLATES",
    "IOI_NAMES",
    "IOI_OBJECTS",
    "IOI_PLACES",
    "IOI_ROLES",
    "IOI_TEMPLATES",
    "IOI_TRAIN_NAMES",
    "IOI_TRAIN_TEMPLATES",
    "LANGUAGES",
    "Positions",
    "PromptDataset",
    "Span",
    "Split",
    "answer_form",
    "arithmetic",
    "factual",
    "generated_dataset",
    "ioi",
    "ioi_positions",
    "load_dataset",
    "mcqa",
    "mib_ioi",
    "parse_jsonl",
    "span_positions",
    "spans_are_one_token",
    "spec_numbers",
    "token_offsets",
    "tokenizer_or_gpt2",
    "unencodable",
]
