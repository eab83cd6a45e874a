"""What a planted model promises: its constants, its prompts and the ground truth a builder returns.

`PlantedModel` is what every `build_*` function returns: the folder it wrote and the circuit it
built (`Move`s, decoys, the logit differences as constructed), with the prompt pairs
(`PromptPair`) the construction was calibrated on. The constants here are the construction's
scales (the package docstring says why each is what it is); the templates are the prompts'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GPT2_VOCAB_SIZE = 50257
BOS_TOKEN_ID = 50256
N_CTX = 16  # positions the models read; every prompt here is shorter
BIAS_NORM = 10.0  # norm of the constant feature every position carries
ANSWER_LOGIT = 25.0  # the logit one moved copy of a name gives its token
# Attention scores (at the nominal layer norm scale): a query on the key it looks for, and every
# query on BOS, where heads rest. Both gaps stay above 104 whatever the true scales.
MATCH_SCORE = 400.0
REST_SCORE = 150.0
NAMES = (" Mary", " John", " Alice", " Bob")
NULL = " someone"  # a subject whose identity the unembedding cannot read


@dataclass(frozen=True)
class Move:
    """A planted head that copies the name at `source_pos` into the residual at `dest_pos`."""

    layer: int
    head: int
    source_pos: int
    dest_pos: int


@dataclass(frozen=True)
class PromptPair:
    """One clean/corrupted prompt pair and the answers that tell the two runs apart."""

    clean: str
    corrupt: str
    target: str
    wrong: str


@dataclass(frozen=True)
class PlantedModel:
    """A planted-circuit model's folder and its ground truth.

    `moves` is the circuit, in the order information flows: through them and nothing else, the
    name at `source_pos` decides the answer read at `final_pos`. With several moves, `parallel`
    says whether they are redundant paths (each carries the name from the source to the final
    position on its own) or a chain (each move's destination is the next one's source).
    `decoy_heads` (layer, head) and `decoy_mlps` (layer) see the name but write where nothing
    reads. `clean_logit_diff` and `corrupt_logit_diff` are logit(target) - logit(wrong) of the
    first pair, as constructed.
    """

    kind: str
    folder: Path
    n_layers: int
    n_heads: int
    pairs: tuple[PromptPair, ...]
    moves: tuple[Move, ...]
    parallel: bool
    source_pos: int
    final_pos: int
    decoy_heads: tuple[tuple[int, int], ...]
    decoy_mlps: tuple[int, ...]
    clean_logit_diff: float
    corrupt_logit_diff: float
    str_tokens: tuple[str, ...]  # the first clean prompt's tokens, BOS first
    # the one edge (EAP-IG's name, `actpatch.patching.graph`) that carries the whole effect,
    # where a model is built around one; on a grouped-query model, the same edge named in the
    # grouped convention (kv="grouped": a reader per key/value head)
    key_edge: str | None = None
    key_edge_grouped: str | None = None

    @property
    def heads(self) -> tuple[tuple[int, int], ...]:
        """The planted heads as (layer, head), in the order of `moves`."""
        return tuple((m.layer, m.head) for m in self.moves)

    def prompts(self, n_pairs: int = 1) -> dict[str, Any]:
        """Keyword arguments for `actpatch.Experiment`: the first `n_pairs` prompt pairs."""
        if not 1 <= n_pairs <= len(self.pairs):
            raise ValueError(f"n_pairs must be 1 to {len(self.pairs)}, not {n_pairs}.")
        if n_pairs == 1:
            p = self.pairs[0]
            return {"clean": p.clean, "corrupt": p.corrupt, "target": p.target, "wrong": p.wrong}
        chosen = self.pairs[:n_pairs]
        return {
            "clean": [p.clean for p in chosen],
            "corrupt": [p.corrupt for p in chosen],
            "target": [p.target for p in chosen],
            "wrong": [p.wrong for p in chosen],
        }


HEAD_TEMPLATE = "When{name} arrived at the party, everyone greeted"
POSITION_TEMPLATE = "After lunch{name} said she would pay, so the bill went to"
SATURATED_TEMPLATE = "When{name} arrived at the party, everyone{verb}"


def prompt_pairs(
    template: str, clean: Sequence[str], corrupt: Sequence[str]
) -> tuple[PromptPair, ...]:
    """Prompt pairs from a template; the answers are the clean subject and the corrupted one,
    or the next name when the corrupted subject is not a name."""
    pairs = []
    for c, k in zip(clean, corrupt, strict=True):
        wrong = k if k in NAMES else NAMES[NAMES.index(c) + 1]
        pairs.append(PromptPair(template.format(name=c), template.format(name=k), c, wrong))
    return tuple(pairs)
