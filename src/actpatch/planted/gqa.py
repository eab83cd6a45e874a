"""The two-hop circuit on a Llama with grouped-query attention: `GQAAssembler` and its builder.

`GQAAssembler` fills a zeroed `LlamaForCausalLM` (rotary positions, RMS norm, query heads that
share key/value heads) on the plan of `GPT2Assembler`; its docstring says what changes and why
the construction stays exact. `build_two_hop_gqa_circuit` plants on it the two-hop circuit of
`build_two_hop_circuit`, with a decoy that shares the receiver's key/value head.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import LlamaConfig, LlamaForCausalLM

from actpatch.planted.assembler import Assembler, check_index
from actpatch.planted.ground_truth import (
    ANSWER_LOGIT,
    BIAS_NORM,
    BOS_TOKEN_ID,
    GPT2_VOCAB_SIZE,
    MATCH_SCORE,
    N_CTX,
    NAMES,
    POSITION_TEMPLATE,
    REST_SCORE,
    Move,
    PlantedModel,
    prompt_pairs,
)

ROPE_THETA = 1e12  # so large that the rotary pairs the heads score with barely turn
MAX_ROTATION = 1e-6  # radians over N_CTX positions: cos rounds to 1.0 in float32 well before it


class GQAAssembler(Assembler):
    """A Llama with grouped-query attention and every weight zero, filled in like `GPT2Assembler`.

    What differs from GPT-2, and how the construction keeps it exact:
    - RMS norm does not centre, so a feature is one coordinate of the residual stream.
    - There are no position embeddings: every token's embedding carries the bias feature (norm
      BIAS_NORM), BOS also a `bos` feature, and heads find positions by content, through flag
      features of the tokens they look for. A position's norm then depends on its token and
      on the copies written there, never on where it is.
    - Queries and keys rotate. Heads score only on the first dimension of the
      lowest-frequency rotary pairs (dimension d_head/2 - 1 - j, whose rotate_half partner
      d_head - 1 - j stays zero). With rope_theta = ROPE_THETA those pairs turn by under
      MAX_ROTATION over N_CTX positions, so cos rounds to exactly 1.0 in float32 and the sine's
      cross term is under 1e-12 of a score: the scores are the unrotated ones up to rounding,
      and attention is one-hot exactly as in GPT-2's constructions.
    - Query heads share key/value heads (`group` query heads each). A key/value head's keys
      hold the shared rest dimension (BOS) and one dimension per query head of its group, that
      head's own route; its values are shared, so heads of one group read the same features,
      each attending where its own query looks, and each head's output projection says where
      its copy goes.
    """

    def __init__(self, n_layers: int, n_heads: int, n_kv_heads: int, d_model: int) -> None:
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}.")
        if n_kv_heads < 1 or n_heads % n_kv_heads:
            raise ValueError(f"n_heads {n_heads} is not a multiple of n_kv_heads {n_kv_heads}.")
        self.n_layers, self.n_heads, self.d_model = n_layers, n_heads, d_model
        self.d_head = d_model // n_heads
        self.group = n_heads // n_kv_heads  # query heads per key/value head
        self.rest_dim = self.d_head // 2 - 1  # the lowest-frequency pair; routes go below it
        fastest = self.rest_dim - self.group  # the pair of the group's last route
        rotation = (N_CTX - 1) * ROPE_THETA ** (-2 * fastest / self.d_head)
        if fastest < 0 or rotation > MAX_ROTATION:
            raise ValueError(
                f"d_head {self.d_head} leaves too few slowly rotating dimensions for "
                f"{self.group} query heads per key/value head: raise d_model or n_kv_heads."
            )
        super().__init__()
        config = LlamaConfig(
            vocab_size=GPT2_VOCAB_SIZE,
            hidden_size=d_model,
            intermediate_size=d_model,
            num_hidden_layers=n_layers,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads,
            max_position_embeddings=N_CTX,
            rope_theta=ROPE_THETA,
            tie_word_embeddings=True,  # as GPT-2: the unembedding reads the names' embeddings
            bos_token_id=BOS_TOKEN_ID,
            eos_token_id=BOS_TOKEN_ID,
        )
        self.model = LlamaForCausalLM(config).eval()
        self.eps = float(config.rms_norm_eps)
        self._n_features = 0
        self._moves: list[tuple[Move, list[int]]] = []
        self.answers: list[int] = []  # features the unembedding reads
        with torch.no_grad():
            for param in self.model.parameters():
                param.zero_()  # MLPs stay zero; so does the final norm's gain, but on answers
            for layer in self.model.model.layers:
                layer.input_layernorm.weight.fill_(1.0)
                layer.post_attention_layernorm.weight.fill_(1.0)
        self.bias, self.bos = self.feature(), self.feature()
        with torch.no_grad():
            self.wte[:, self.bias] = BIAS_NORM
            self.wte[BOS_TOKEN_ID, self.bos] = 1.0
            for layer in range(n_layers):
                for head in range(n_heads):
                    self.head(layer, head)

    @property
    def sigma(self) -> float:
        """About the scale RMS norm divides a residual by: the bias feature's share of it."""
        return BIAS_NORM / math.sqrt(self.d_model)

    def feature(self) -> int:
        """A new feature: a coordinate that no other feature uses."""
        if self._n_features == self.d_model:
            raise ValueError(f"d_model {self.d_model} is too small for this construction.")
        self._n_features += 1
        return self._n_features - 1

    def subspace(self, n: int) -> list[int]:
        return [self.feature() for _ in range(n)]

    def unit(self, feature: int) -> Tensor:
        """The feature's unit vector. (d_model,)"""
        return torch.nn.functional.one_hot(torch.tensor(feature), self.d_model).float()

    @property
    def wte(self) -> Tensor:
        return self.model.model.embed_tokens.weight.data  # (vocab, d_model); also the unembedding

    def attn(self, layer: int) -> Any:
        return self.model.model.layers[layer].self_attn

    def embed(self, token: str, features: Sequence[int]) -> None:
        """Give `token` an embedding with a unit component along each of `features`, besides the
        bias every token carries."""
        ids = self.tokens(token, bos=False)
        if len(ids) != 1:
            raise ValueError(f"{token!r} is {len(ids)} GPT-2 tokens; a flagged token must be one.")
        self.wte[ids[0]] = BIAS_NORM * self.unit(self.bias)
        for f in features:
            self.wte[ids[0]] += self.unit(f)

    def head(
        self,
        layer: int,
        head: int,
        *,
        route: tuple[int, int] | None = None,
        read: Sequence[int] = (),
        write: Sequence[int] = (),
    ) -> None:
        """Make query head (layer, head) attend from the positions holding feature route[0] to
        the one holding route[1] (None: nowhere), resting on BOS elsewhere, and copy the
        features `read` there into `write`, one to one, at about one unit per unit.

        `read` sets the values of the head's key/value head, which its whole group shares: a
        head may read what its group reads, or nothing. Scores assume RMS norm divides by
        `sigma`; they are large enough that the true scales change nothing.
        """
        if len(read) != len(write) or len(read) > self.d_head:
            raise ValueError(f"a head copies at most d_head = {self.d_head} features, one to one.")
        dh = self.d_head
        kv, rank = divmod(head, self.group)
        q0, k0 = head * dh, kv * dh  # the head's query rows, its key/value head's rows
        attn = self.attn(layer)
        W_Q = attn.q_proj.weight.data  # (n_heads * d_head, d_model)
        W_K = attn.k_proj.weight.data  # (n_kv_heads * d_head, d_model)
        W_V = attn.v_proj.weight.data  # (n_kv_heads * d_head, d_model)
        W_O = attn.o_proj.weight.data  # (d_model, n_heads * d_head)

        def weight(score: float, query_norm: float) -> float:
            # (query_norm * w / sigma) * (1 * w / sigma) / sqrt(d_head) = score
            return math.sqrt(score * math.sqrt(dh) / query_norm) * self.sigma

        W_Q[q0 : q0 + dh] = 0
        W_O[:, q0 : q0 + dh] = 0
        # every query rests on BOS through the bias feature; one dimension, the group's
        w = weight(REST_SCORE, BIAS_NORM)
        W_Q[q0 + self.rest_dim] = w * self.unit(self.bias)
        W_K[k0 + self.rest_dim] = w * self.unit(self.bos)
        # the head's own route: its query dimension and the one key dimension it matches
        match = self.rest_dim - 1 - rank
        W_K[k0 + match] = 0
        if route is not None:
            w = weight(MATCH_SCORE, 1.0)
            W_Q[q0 + match] = w * self.unit(route[0])
            W_K[k0 + match] = w * self.unit(route[1])
        # OV: shared value dimension i reads feature read[i]; this head writes it to write[i]
        for i, (src, dst) in enumerate(zip(read, write, strict=True)):
            before = W_V[k0 + i].clone()
            W_V[k0 + i] = self.unit(src)
            if before.any() and not torch.equal(before, W_V[k0 + i]):
                raise ValueError(
                    f"query head {head} of layer {layer} reads other values than its group's: "
                    "the query heads of a key/value head share their values."
                )
            W_O[:, q0 + i] = self.sigma * self.unit(dst)

    def move(self, move: Move, route: tuple[int, int], features: Sequence[int]) -> None:
        """Plant `move`, found by `route` (the features at its destination and at its source):
        its head copies `features` from the source to the destination; `finish` sets the copy's
        norm to exactly 1."""
        self.head(move.layer, move.head, route=route, read=features, write=features)
        self._moves.append((move, list(features)))

    # -- calibration on the clean prompt

    def _scale(self, prompt: str, layer: int | None, pos: int) -> float:
        """The scale RMS norm divides the clean residual at `pos` by, before block `layer`
        (None: before the final norm)."""
        inner = self.model.model
        where = inner.norm if layer is None else inner.layers[layer].input_layernorm
        seen: list[Tensor] = []
        handle = where.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
        try:
            with torch.no_grad():  # the decoder alone: the logits are not needed
                inner(torch.tensor([self.tokens(prompt)]))
        finally:
            handle.remove()
        x = seen[0][0, pos]
        return float(torch.sqrt(x.pow(2).mean() + self.eps))

    def finish(self, prompt: str, final_pos: int) -> None:
        """Scale each move's output so its copy has norm 1 at the destination, in layer order,
        then the final norm's gain on the answer features so one copy is worth ANSWER_LOGIT."""
        for move, write in sorted(self._moves, key=lambda m: m[0].layer):
            scale = self._scale(prompt, move.layer, move.source_pos)
            W_O = self.attn(move.layer).o_proj.weight.data
            for i, dst in enumerate(write):
                W_O[:, move.head * self.d_head + i] = scale * self.unit(dst)
        scale = self._scale(prompt, None, final_pos)
        for f in self.answers:
            self.model.model.norm.weight.data[f] = ANSWER_LOGIT * scale


def build_two_hop_gqa_circuit(
    folder: str | Path,
    *,
    n_layers: int = 4,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_model: int = 128,
    sender: tuple[int, int] = (1, 1),
    receiver: tuple[int, int] = (2, 2),
) -> PlantedModel:
    """Write a Llama with grouped-query attention in which head A composes into head B's value.

    The two-hop circuit of `build_two_hop_circuit` (same prompts, same moves, same amplifiers,
    logit difference +-4 * ANSWER_LOGIT) on a `LlamaForCausalLM` whose `n_heads` query heads
    share `n_kv_heads` key/value heads: rotary positions, RMS norm, a gated MLP (zero here),
    no biases, tied embeddings, GPT-2's tokenizer. `GQAAssembler` says how the construction
    stays exact: heads find positions by content, score on rotary dimensions that do not
    turn, and every position's norm depends on its content alone, equal in both runs.

    Routes: the layer-0 amplifier attends from the name to itself (a flag every name carries),
    A from " she" to the name, B from the final token " to" to " she", and the last layer's
    amplifier from " to" to itself. B's key/value head also serves B's *partner*, the next
    query head of its group (a decoy): it reads the same values, but from " to" it attends to
    the name, and copies it into a subspace nothing reads. So only B's copy carries the name
    on, and the edge `a{LA}.h{HA}->a{LB}.h{HB}<v>` (`key_edge`; in the grouped convention
    `a{LA}.h{HA}->a{LB}.kv{G}<v>`, `key_edge_grouped`) is the only one that carries the whole
    effect: exact path patching from every head into B's value finds A alone, and edge
    attribution ranks that edge first, at about twice the score of any other.
    """
    for layer, head in (sender, receiver):
        check_index(layer, n_layers, "layer")
        check_index(head, n_heads, "head")
    if not 0 < sender[0] < receiver[0] < n_layers - 1:
        raise ValueError(
            "the two-hop circuit needs 0 < sender layer < receiver layer < n_layers - 1: the "
            "amplifiers sit in layer 0 and in the last layer."
        )
    if not n_kv_heads < n_heads:
        raise ValueError(
            f"n_kv_heads {n_kv_heads} must be less than n_heads {n_heads}: grouped-query "
            "attention shares each key/value head among several query heads."
        )
    asm = GQAAssembler(n_layers, n_heads, n_kv_heads, d_model)
    names, seen = asm.subspace(len(NAMES)), asm.subspace(len(NAMES))
    is_name, at_she, at_end = asm.feature(), asm.feature(), asm.feature()
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [is_name, feature])
    asm.embed(" she", [at_she])
    asm.embed(" to", [at_end])
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
    routes = ((is_name, is_name), (at_she, is_name), (at_end, at_she), (at_end, at_end))
    kv = receiver[1] // asm.group
    group = range(kv * asm.group, (kv + 1) * asm.group)
    partner = (receiver[0], next(h for h in group if h != receiver[1]))
    with torch.no_grad():
        for move, route in zip(moves, routes, strict=True):
            asm.move(move, route, names)
        asm.head(*partner, route=(at_end, is_name), read=names, write=seen)
        asm.finish(pairs[0].clean, final)
    asm.save(folder)
    a, b = f"a{sender[0]}.h{sender[1]}", f"a{receiver[0]}"
    return PlantedModel(
        kind="two-hop GQA circuit",
        folder=Path(folder),
        n_layers=n_layers,
        n_heads=n_heads,
        pairs=pairs,
        moves=moves,
        parallel=False,
        source_pos=source,
        final_pos=final,
        decoy_heads=(partner,),
        decoy_mlps=(),
        clean_logit_diff=4 * ANSWER_LOGIT,
        corrupt_logit_diff=-4 * ANSWER_LOGIT,
        str_tokens=tuple(str_tokens),
        key_edge=f"{a}->{b}.h{receiver[1]}<v>",
        key_edge_grouped=f"{a}->{b}.kv{kv}<v>",
    )
