"""The planted circuits on GPT-2: one head, a relay through two positions, two redundant heads, a
saturated head, and a two-hop V-composition edge.

Each `build_*` function writes a model folder and returns its `PlantedModel`;
docs/planted-circuits.md describes each one, and its docstring says what a patching sweep must
find and why.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from actpatch.planted.assembler import GPT2Assembler, check_index, free_head
from actpatch.planted.ground_truth import (
    ANSWER_LOGIT,
    HEAD_TEMPLATE,
    MATCH_SCORE,
    NAMES,
    NULL,
    POSITION_TEMPLATE,
    SATURATED_TEMPLATE,
    Move,
    PlantedModel,
    PromptPair,
    prompt_pairs,
)


def build_head_circuit(
    folder: str | Path,
    *,
    n_layers: int = 3,
    n_heads: int = 4,
    d_model: int = 128,
    circuit_layer: int = 1,
    circuit_head: int = 2,
) -> PlantedModel:
    """Write a model whose answer is moved by one head, (circuit_layer, circuit_head).

    "When Mary arrived at the party, everyone greeted" -> " Mary"; the corrupted prompt has
    " John" -> " John". The planted head attends from the final position to the subject and
    copies its name into the final residual, which the unembedding reads. Decoys: another head
    of the same layer copies the subject's name to every later position, and that layer's MLP
    maps the names it sees (the subject's token, the planted head's copy), both into subspaces
    nothing reads.
    """
    check_index(circuit_layer, n_layers, "layer")
    check_index(circuit_head, n_heads, "head")
    if n_heads < 2:
        raise ValueError("the head circuit needs n_heads >= 2: the planted head and a decoy.")
    asm = GPT2Assembler(n_layers, n_heads, d_model)
    names, seen, mlp_seen = (asm.subspace(len(NAMES)) for _ in range(3))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = prompt_pairs(HEAD_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, final = str_tokens.index(" Mary"), len(str_tokens) - 1
    move = Move(circuit_layer, circuit_head, source, final)
    decoy = (circuit_layer, free_head(n_heads, [circuit_head]))
    with torch.no_grad():
        asm.move(move, read=names, write=names)
        asm.head(*decoy, query_pos=None, key_pos=source, read=names, write=seen)
        asm.mlp(circuit_layer, read=names, write=mlp_seen)
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    return PlantedModel(
        kind="head circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=(move,),
        parallel=False,
        source_pos=source,
        final_pos=final,
        decoy_heads=(decoy,),
        decoy_mlps=(circuit_layer,),
        clean_logit_diff=ANSWER_LOGIT,
        corrupt_logit_diff=-ANSWER_LOGIT,
        str_tokens=tuple(str_tokens),
    )


def build_position_circuit(
    folder: str | Path,
    *,
    n_layers: int = 4,
    n_heads: int = 4,
    d_model: int = 128,
    relay_layer: int = 1,
    relay_head: int = 1,
    final_layer: int = 2,
    final_head: int = 3,
) -> PlantedModel:
    """Write a model whose answer travels subject -> " she" -> final position at known layers.

    "After lunch Mary said she would pay, so the bill went to" -> " Mary"; the corrupted prompt
    has " John" -> " John". At `relay_layer`, head `relay_head` copies the subject's name into
    the residual at " she"; at `final_layer`, head `final_head` copies it from " she" to the
    final position, where the unembedding reads it. So the residual stream carries the answer
    at the subject up to relay_layer, at " she" after it up to final_layer, and at the final
    position after that. Decoys: a layer-0 head copies the subject's name to every later
    position, a `final_layer` head reads it straight from the subject at the final position,
    and `relay_layer`'s MLP maps the names it sees; all three write where nothing reads.
    """
    for layer, head in ((relay_layer, relay_head), (final_layer, final_head)):
        check_index(layer, n_layers, "layer")
        check_index(head, n_heads, "head")
    if relay_layer >= final_layer:
        raise ValueError(f"relay_layer {relay_layer} must come before final_layer {final_layer}.")
    asm = GPT2Assembler(n_layers, n_heads, d_model)
    names, spread, late, mlp_seen = (asm.subspace(len(NAMES)) for _ in range(4))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = prompt_pairs(POSITION_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, relay = str_tokens.index(" Mary"), str_tokens.index(" she")
    final = len(str_tokens) - 1
    moves = (
        Move(relay_layer, relay_head, source, relay),
        Move(final_layer, final_head, relay, final),
    )
    spreader = (0, free_head(n_heads, [m.head for m in moves if m.layer == 0]))
    reader = (final_layer, free_head(n_heads, [final_head]))
    with torch.no_grad():
        asm.head(*spreader, query_pos=None, key_pos=source, read=names, write=spread)
        for move in moves:
            asm.move(move, read=names, write=names)
        asm.head(*reader, query_pos=final, key_pos=source, read=names, write=late)
        asm.mlp(relay_layer, read=names, write=mlp_seen)
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    return PlantedModel(
        kind="position circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=moves,
        parallel=False,
        source_pos=source,
        final_pos=final,
        decoy_heads=(spreader, reader),
        decoy_mlps=(relay_layer,),
        clean_logit_diff=ANSWER_LOGIT,
        corrupt_logit_diff=-ANSWER_LOGIT,
        str_tokens=tuple(str_tokens),
    )


def build_redundant_circuit(
    folder: str | Path,
    *,
    n_layers: int = 3,
    n_heads: int = 4,
    d_model: int = 128,
    first: tuple[int, int] = (1, 0),
    second: tuple[int, int] = (2, 3),
) -> PlantedModel:
    """Write a model in which two heads each move the answer on their own: two parallel paths.

    "When Mary arrived at the party, everyone greeted" -> " Mary"; the corrupted prompt has
    " someone", a subject whose features the unembedding cannot read (ln_f's gain is zero on
    them), so the corrupted run favours no name. Heads `first` and `second` both attend from the
    final position to the subject and copy its name, into two different subspaces that the
    name's embedding spans, each copy worth ANSWER_LOGIT. Each head carries exactly half of
    the clean logit difference, but one copy (a logit of 25 against 50256 zeros) already gives
    almost all of the clean probability: measured by probability each head is sufficient and
    neither is necessary. A decoy head in `first`'s layer copies the name where nothing reads.
    """
    for layer, head in (first, second):
        check_index(layer, n_layers, "layer")
        check_index(head, n_heads, "head")
    if first == second:
        raise ValueError("first and second must be different heads.")
    asm = GPT2Assembler(n_layers, n_heads, d_model)
    tokens = (*NAMES, NULL)
    names, names_too, seen = (asm.subspace(len(tokens)) for _ in range(3))
    for token, a, b in zip(tokens, names, names_too, strict=True):
        asm.embed(token, [a, b])
    asm.answers = names[:-1] + names_too[:-1]
    asm.mute([names[-1], names_too[-1]])

    pairs = prompt_pairs(HEAD_TEMPLATE, [" Mary", " Alice"], [NULL, NULL])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, final = str_tokens.index(" Mary"), len(str_tokens) - 1
    moves = (Move(*first, source, final), Move(*second, source, final))
    decoy = (
        first[0],
        free_head(n_heads, [h for layer, h in (first, second) if layer == first[0]]),
    )
    with torch.no_grad():
        asm.move(moves[0], read=names, write=names)
        asm.move(moves[1], read=names_too, write=names_too)
        asm.head(*decoy, query_pos=None, key_pos=source, read=names, write=seen)
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    return PlantedModel(
        kind="redundant circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=moves,
        parallel=True,
        source_pos=source,
        final_pos=final,
        decoy_heads=(decoy,),
        decoy_mlps=(),
        clean_logit_diff=2 * ANSWER_LOGIT,
        corrupt_logit_diff=0.0,
        str_tokens=tuple(str_tokens),
    )


def build_saturated_circuit(
    folder: str | Path,
    *,
    n_layers: int = 3,
    n_heads: int = 4,
    d_model: int = 128,
    circuit_layer: int = 1,
    circuit_head: int = 2,
) -> PlantedModel:
    """Write a model whose answer depends on where one head's saturated attention goes.

    "When Mary arrived at the party, everyone greeted" -> " Mary"; the corrupted prompt ends in
    " thanked" instead, and its answer is neither name (logit difference 0). The planted head's
    query at the final position reads the final token: " greeted" carries an *ask* feature that
    matches the key at the subject (a score 250 above BOS's), " thanked" an equally long *other*
    feature that the query ignores, so its query rests on BOS. Either way the attention is
    one-hot: saturated, with a softmax gradient of exactly 0. The head copies the name it
    attends to into the final residual stream (worth ANSWER_LOGIT); BOS holds no name.

    So patching the head's query (`q`, or `q_by_pos` at the final position) moves all of the
    logit difference, while the gradient of the metric with respect to that query is exactly 0:
    plain attribution patching estimates 0 and misses the head; AtP*'s QK fix recomputes the
    pattern with the patched query and recovers it exactly. The head's output (`z`) is linear
    in the pattern, so plain AtP finds the head there.
    """
    check_index(circuit_layer, n_layers, "layer")
    check_index(circuit_head, n_heads, "head")
    asm = GPT2Assembler(n_layers, n_heads, d_model)
    names = asm.subspace(len(NAMES))
    ask, other = asm.feature(), asm.feature()
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.embed(" greeted", [ask])
    asm.embed(" thanked", [other])  # the same norm as " greeted", so layer norm scales agree
    asm.answers = names

    pairs = tuple(
        PromptPair(
            SATURATED_TEMPLATE.format(name=name, verb=" greeted"),
            SATURATED_TEMPLATE.format(name=name, verb=" thanked"),
            name,
            NAMES[NAMES.index(name) + 1],
        )
        for name in (" Mary", " Alice")
    )
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, final = str_tokens.index(" Mary"), len(str_tokens) - 1
    move = Move(circuit_layer, circuit_head, source, final)
    with torch.no_grad():
        asm.move(move, read=names, write=names)
        # The query asks through the final token's feature, not the final position's: the
        # weight that scores MATCH_SCORE for a unit position feature does so for `ask` too.
        d, dh = asm.d_model, asm.d_head
        W = asm.block(circuit_layer).attn.c_attn.weight.data
        q0 = circuit_head * dh
        w = math.sqrt(MATCH_SCORE * math.sqrt(dh) / 1.0) * asm.sigma
        W[:, q0] = w * asm.unit(ask)
        assert W.shape[1] == 3 * d
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    return PlantedModel(
        kind="saturated circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=(move,),
        parallel=False,
        source_pos=source,
        final_pos=final,
        decoy_heads=(),
        decoy_mlps=(),
        clean_logit_diff=ANSWER_LOGIT,
        corrupt_logit_diff=0.0,
        str_tokens=tuple(str_tokens),
    )


def build_two_hop_circuit(
    folder: str | Path,
    *,
    n_layers: int = 4,
    n_heads: int = 4,
    d_model: int = 128,
    sender: tuple[int, int] = (1, 1),
    receiver: tuple[int, int] = (2, 2),
) -> PlantedModel:
    """Write a model in which head A's output composes into head B's value: the A -> B<v> edge.

    "After lunch Mary said she would pay, so the bill went to" -> " Mary"; the corrupted prompt
    has " John" -> " John". Head A (`sender`) copies the subject's name to " she"; head B
    (`receiver`) reads it there through its value (V-composition) and copies it to the final
    position. Two *amplifier* heads split every other edge of the path in two: one in layer 0
    adds a second copy of the name at the subject (so A's value reads half of it from the input
    and half from the amplifier), one in the last layer adds a second copy at the final position
    (so the logits read half of it from B and half through the amplifier). The A -> B<v> edge is
    then the only edge that carries the whole effect: exact path patching from every head into
    B's value finds A alone (1, every other head 0), and edge attribution must rank A -> B<v>
    first, at about twice the score of any other edge.

    Why value and not key composition: attention here is one-hot by construction (scores 104
    apart), so its gradient is exactly zero and no gradient-based method can see a key edge;
    exact patching can (docs/circuits.md says more).
    """
    for layer, head in (sender, receiver):
        check_index(layer, n_layers, "layer")
        check_index(head, n_heads, "head")
    if not 0 < sender[0] < receiver[0] < n_layers - 1:
        raise ValueError(
            "the two-hop circuit needs 0 < sender layer < receiver layer < n_layers - 1: the "
            "amplifiers sit in layer 0 and in the last layer."
        )
    asm = GPT2Assembler(n_layers, n_heads, d_model)
    names = asm.subspace(len(NAMES))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = prompt_pairs(POSITION_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, relay = str_tokens.index(" Mary"), str_tokens.index(" she")
    final = len(str_tokens) - 1
    moves = (
        Move(0, 0, source, source),  # amplifier: a second copy of the name at the subject
        Move(*sender, source, relay),  # A
        Move(*receiver, relay, final),  # B, reading A's copy through its value
        Move(n_layers - 1, n_heads - 1, final, final),  # amplifier: a second copy at the end
    )
    with torch.no_grad():
        for move in moves:
            asm.move(move, read=names, write=names)
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    # the final position holds four copies: B's two (from A's two) and the amplifier's two
    return PlantedModel(
        kind="two-hop circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=moves,
        parallel=False,
        source_pos=source,
        final_pos=final,
        decoy_heads=(),
        decoy_mlps=(),
        clean_logit_diff=4 * ANSWER_LOGIT,
        corrupt_logit_diff=-4 * ANSWER_LOGIT,
        str_tokens=tuple(str_tokens),
        key_edge=f"a{sender[0]}.h{sender[1]}->a{receiver[0]}.h{receiver[1]}<v>",
    )
