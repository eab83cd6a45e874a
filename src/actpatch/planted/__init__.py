"""Planted-circuit models: tiny GPT-2s whose mechanism is known because it was written by hand.

Each builder writes a Hugging Face-format folder holding a `GPT2LMHeadModel` (GPT-2's exact
architecture and 50257-token vocabulary, GPT-2's tokenizer) whose weights were set, not
trained, so that its answer is computed by a circuit we know: which head moves which token's
identity from which position to which, at which layer. What a patching sweep must find then
follows from the construction, not from an engine's output, which makes these models the
ground truth of the test suite. docs/planted-circuits.md describes each one. One builder,
`build_two_hop_gqa_circuit`, writes a Llama with grouped-query attention instead (rotary
positions, RMS norm); `GQAAssembler` says what changes and why the construction stays exact.

Vocabulary. A *feature* is a direction of the residual stream. A *name* is a single-token
answer (" Mary", " John", ...); its embedding is a unit vector along its own feature of a
*name subspace*. A head *moves* a name when its query at one position (`dest_pos`) matches a
key found only at another (`source_pos`) and its OV circuit copies that position's name
features into the destination's residual stream. A *decoy* is a head or MLP whose activation
differs between the clean and corrupted runs but is written where nothing reads it, so
patching it changes nothing. *Idle* heads attend to BOS and write a constant.

Taming layer norm. Every feature is `(e[2i] - e[2i+1]) / sqrt(2)` on a pair of coordinates that
no other feature uses, so every vector is mean-zero (layer norm's centering does nothing) and
layer norm gains can be set feature by feature. Every position carries a large constant bias
feature (norm `BIAS_NORM`, from the position embedding) and every name has the same norm, so a
position's norm does not depend on which name it holds: the clean, corrupted and every patched
run are divided by the same scales. After the heads are placed, the builder measures those
scales on the clean prompt and sets each planted head's output, and the final layer norm's
gain, so that every moved copy of a name has norm exactly 1 and is worth exactly
`ANSWER_LOGIT` to its token. MLPs that are not decoys are exactly zero; tokens other than the
names have a zero embedding, so their logits are 0.

Attention is one-hot. Every query scores the key it looks for (or BOS, where it rests) more
than 104 above every other key, and exp(-104) underflows to exactly 0 in float32, so no head
leaks even a trace of another position: the constructions are exact up to float rounding.

Where things are. `ground_truth`: the constants, the prompts and `PlantedModel`, the ground truth
each builder returns; `assembler`: the zeroed models filled in feature by feature
(`GPT2Assembler`); `circuits`: the five GPT-2 circuits; `gqa`: the two-hop circuit on a
grouped-query Llama (`GQAAssembler`). Every public name is importable from `actpatch.planted`.
"""

from __future__ import annotations

from actpatch.planted.circuits import (
    build_head_circuit,
    build_position_circuit,
    build_redundant_circuit,
    build_saturated_circuit,
    build_two_hop_circuit,
)
from actpatch.planted.gqa import MAX_ROTATION, ROPE_THETA, build_two_hop_gqa_circuit
from actpatch.planted.ground_truth import (
    ANSWER_LOGIT,
    BIAS_NORM,
    BOS_TOKEN_ID,
    GPT2_VOCAB_SIZE,
    HEAD_TEMPLATE,
    MATCH_SCORE,
    N_CTX,
    NAMES,
    NULL,
    POSITION_TEMPLATE,
    REST_SCORE,
    SATURATED_TEMPLATE,
    Move,
    PlantedModel,
    PromptPair,
)

__all__ = [
    "ANSWER_LOGIT",
    "BIAS_NORM",
    "BOS_TOKEN_ID",
    "GPT2_VOCAB_SIZE",
    "HEAD_TEMPLATE",
    "MATCH_SCORE",
    "MAX_ROTATION",
    "NAMES",
    "NULL",
    "N_CTX",
    "POSITION_TEMPLATE",
    "REST_SCORE",
    "ROPE_THETA",
    "SATURATED_TEMPLATE",
    "Move",
    "PlantedModel",
    "PromptPair",
    "build_head_circuit",
    "build_position_circuit",
    "build_redundant_circuit",
    "build_saturated_circuit",
    "build_two_hop_circuit",
    "build_two_hop_gqa_circuit",
]
