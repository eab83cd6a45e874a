"""Planted-circuit models: tiny GPT-2s whose mechanism is known because it was written by hand.

Each builder writes a Hugging Face-format folder holding a `GPT2LMHeadModel` (GPT-2's exact
architecture and 50257-token vocabulary, GPT-2's tokenizer) whose weights were set, not
trained, so that its answer is computed by a circuit we know: which head moves which token's
identity from which position to which, at which layer. What a patching sweep must find then
follows from the construction, not from an engine's output, which makes these models the
ground truth of the test suite. docs/planted-circuits.md describes each one. One builder,
`build_two_hop_gqa_circuit`, writes a Llama with grouped-query attention instead (rotary
positions, RMS norm); `_GQAAssembler` says what changes and why the construction stays exact.

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
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import (
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerBase,
)

from actpatch.tokenizer import gpt2_tokenizer, save_gpt2_tokenizer

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


@functools.cache
def _tokenizer() -> PreTrainedTokenizerBase:
    return gpt2_tokenizer()


# -- the assemblers: zeroed models, filled in feature by feature ----------------------------------


class _Builder:
    """What every assembler shares: GPT-2's tokenizer, and saving the model beside it."""

    model: Any

    def __init__(self) -> None:
        self.tokenizer = _tokenizer()

    def tokens(self, text: str, *, bos: bool = True) -> list[int]:
        ids = [int(i) for i in self.tokenizer(text, add_special_tokens=False)["input_ids"]]
        return [BOS_TOKEN_ID, *ids] if bos else ids

    def str_tokens(self, prompt: str) -> list[str]:
        """The prompt's tokens as strings, BOS first; an error if the model cannot read it."""
        ids = self.tokens(prompt)
        if len(ids) > N_CTX:
            raise ValueError(f"{prompt!r} is {len(ids)} tokens; planted models read {N_CTX}.")
        return [str(self.tokenizer.decode([i])) for i in ids]

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(folder))
        save_gpt2_tokenizer(folder)
        return folder


class _Assembler(_Builder):
    """A GPT-2 with every weight zero, filled in one feature, token, head and MLP at a time."""

    def __init__(self, n_layers: int, n_heads: int, d_model: int) -> None:
        if d_model % n_heads:
            raise ValueError(f"d_model {d_model} is not divisible by n_heads {n_heads}.")
        self.n_layers, self.n_heads, self.d_model = n_layers, n_heads, d_model
        self.d_head = d_model // n_heads
        config = GPT2Config(
            vocab_size=GPT2_VOCAB_SIZE,
            n_positions=N_CTX,
            n_embd=d_model,
            n_layer=n_layers,
            n_head=n_heads,
            activation_function="gelu_new",
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=BOS_TOKEN_ID,
            eos_token_id=BOS_TOKEN_ID,
        )
        super().__init__()
        self.model = GPT2LMHeadModel(config).eval()
        self.eps = float(config.layer_norm_epsilon)
        self._n_features = 0
        self._moves: list[tuple[Move, list[int], list[int]]] = []
        self.answers: list[int] = []  # features the unembedding reads
        with torch.no_grad():
            for param in self.model.parameters():
                param.zero_()
            for module in self.model.modules():
                if isinstance(module, torch.nn.LayerNorm):
                    module.weight.fill_(1.0)
        self.bias = self.feature()
        self.positions = self.subspace(N_CTX)  # one feature per position
        self.idle = self.feature()
        with torch.no_grad():
            for pos, feature in enumerate(self.positions):
                self.wpe[pos] = BIAS_NORM * self.unit(self.bias) + self.unit(feature)
            for layer in range(n_layers):
                for head in range(n_heads):
                    self.idle_head(layer, head)

    # -- features, and the scale layer norm divides by

    @property
    def sigma(self) -> float:
        """About the scale layer norm divides a residual by: the bias feature's share of it."""
        return BIAS_NORM / math.sqrt(self.d_model)

    def feature(self) -> int:
        """A new feature: the index of a coordinate pair that no other feature uses."""
        if 2 * (self._n_features + 1) > self.d_model:
            raise ValueError(
                f"d_model {self.d_model} has room for {self.d_model // 2} features and this "
                "construction needs more: raise d_model."
            )
        self._n_features += 1
        return self._n_features - 1

    def subspace(self, n: int) -> list[int]:
        return [self.feature() for _ in range(n)]

    def unit(self, feature: int) -> Tensor:
        """The feature's unit vector, which is mean-zero. (d_model,)"""
        v = torch.zeros(self.d_model)
        v[2 * feature] = 1 / math.sqrt(2)
        v[2 * feature + 1] = -1 / math.sqrt(2)
        return v

    # -- the weights, as views into the Hugging Face model

    @property
    def wte(self) -> Tensor:
        return self.model.transformer.wte.weight.data

    @property
    def wpe(self) -> Tensor:
        return self.model.transformer.wpe.weight.data

    def block(self, layer: int) -> Any:
        return self.model.transformer.h[layer]

    def embed(self, token: str, features: Sequence[int]) -> None:
        """Give `token` an embedding with a unit component along each of `features`."""
        ids = self.tokens(token, bos=False)
        if len(ids) != 1:
            raise ValueError(f"{token!r} is {len(ids)} GPT-2 tokens; a name must be one token.")
        with torch.no_grad():
            self.wte[ids[0]] = torch.stack([self.unit(f) for f in features]).sum(0)

    def head(
        self,
        layer: int,
        head: int,
        *,
        query_pos: int | None,
        key_pos: int,
        read: Sequence[int] = (),
        write: Sequence[int] = (),
    ) -> None:
        """Make (layer, head) attend from `query_pos` (None: every position) to `key_pos` and
        copy the features `read` there into `write`, one to one, at about one unit per unit.

        Queries that do not look for `key_pos`, and those before it, rest on BOS, whose name
        features are zero. Scores assume layer norm divides by `sigma`; they are large enough
        that the true scales (within a few percent of it) change nothing.
        """
        if len(read) != len(write) or len(read) > self.d_head:
            raise ValueError(f"a head copies at most d_head = {self.d_head} features, one to one.")
        d, dh = self.d_model, self.d_head
        q0, k0, v0 = head * dh, d + head * dh, 2 * d + head * dh
        attn = self.block(layer).attn
        W = attn.c_attn.weight.data  # (d_model, 3 * d_model): queries | keys | values
        W_O = attn.c_proj.weight.data  # (d_model, d_model), row = head * d_head + i

        def weight(score: float, query_norm: float) -> float:
            # (query_norm * w / sigma) * (1 * w / sigma) / sqrt(d_head) = score
            return math.sqrt(score * math.sqrt(dh) / query_norm) * self.sigma

        for start in (q0, k0, v0):
            W[:, start : start + dh] = 0
        W_O[q0 : q0 + dh] = 0
        # query-key dimension 0 finds key_pos; dimension 1 rests on BOS (position 0)
        if query_pos is None:  # every position asks, through the constant bias feature
            w = weight(MATCH_SCORE, BIAS_NORM)
            W[:, q0] = w * self.unit(self.bias)
        else:
            w = weight(MATCH_SCORE, 1.0)
            W[:, q0] = w * self.unit(self.positions[query_pos])
        W[:, k0] = w * self.unit(self.positions[key_pos])
        w = weight(REST_SCORE, BIAS_NORM)
        W[:, q0 + 1] = w * self.unit(self.bias)
        W[:, k0 + 1] = w * self.unit(self.positions[0])
        # OV: value dimension i reads feature read[i]; the output writes it along write[i]
        for i, (src, dst) in enumerate(zip(read, write, strict=True)):
            W[:, v0 + i] = self.unit(src)
            W_O[q0 + i] = self.sigma * self.unit(dst)

    def move(self, move: Move, read: Sequence[int], write: Sequence[int]) -> None:
        """Plant `move`: its head copies features `read` at the source into `write` at the
        destination; `finish` sets the copy's norm to exactly 1."""
        self.head(
            move.layer,
            move.head,
            query_pos=move.dest_pos,
            key_pos=move.source_pos,
            read=read,
            write=write,
        )
        self._moves.append((move, list(read), list(write)))

    def idle_head(self, layer: int, head: int) -> None:
        """Rest (layer, head) on BOS and write a small constant, the same in every run."""
        self.head(layer, head, query_pos=0, key_pos=0)
        attn = self.block(layer).attn
        d, dh = self.d_model, self.d_head
        attn.c_attn.weight.data[:, 2 * d + head * dh] = self.unit(self.bias)
        attn.c_proj.weight.data[head * dh] = 0.1 * self.sigma / BIAS_NORM * self.unit(self.idle)

    def mlp(self, layer: int, read: Sequence[int], write: Sequence[int]) -> None:
        """Make `layer`'s MLP map feature read[i] to write[i] through one GELU neuron each."""
        mlp = self.block(layer).mlp
        W_in, W_out = mlp.c_fc.weight.data, mlp.c_proj.weight.data  # (d, d_mlp), (d_mlp, d)
        for i, (src, dst) in enumerate(zip(read, write, strict=True)):
            W_in[:, i] = 2.0 * self.sigma * self.unit(src)  # pre-activation ~2 per unit
            W_out[i] = self.unit(dst)

    def mute(self, features: Sequence[int]) -> None:
        """Zero ln_f's gain on `features`: the unembedding cannot read them."""
        for f in features:
            self.model.transformer.ln_f.weight.data[2 * f : 2 * f + 2] = 0.0

    # -- calibration on the clean prompt, and saving

    def _scale(self, prompt: str, layer: int | None, pos: int) -> float:
        """The scale layer norm divides the clean residual at `pos` by, before block `layer`
        (None: before the final layer norm)."""
        where = self.model.transformer.ln_f if layer is None else self.block(layer).ln_1
        seen: list[Tensor] = []
        handle = where.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
        try:
            with torch.no_grad():  # the transformer alone: the logits are not needed
                self.model.transformer(torch.tensor([self.tokens(prompt)]))
        finally:
            handle.remove()
        x = seen[0][0, pos]
        return float(torch.sqrt(x.var(unbiased=False) + self.eps))

    def finish(self, prompt: str, final_pos: int) -> None:
        """Scale each move's output so its copy has norm 1 at the destination, in layer order,
        then ln_f's gain on the answer features so one copy is worth ANSWER_LOGIT."""
        for move, _, write in sorted(self._moves, key=lambda m: m[0].layer):
            scale = self._scale(prompt, move.layer, move.source_pos)
            W_O = self.block(move.layer).attn.c_proj.weight.data
            for i, dst in enumerate(write):
                W_O[move.head * self.d_head + i] = scale * self.unit(dst)
        scale = self._scale(prompt, None, final_pos)
        for f in self.answers:
            self.model.transformer.ln_f.weight.data[2 * f : 2 * f + 2] = ANSWER_LOGIT * scale


def _check(value: int, size: int, what: str) -> None:
    if not 0 <= value < size:
        raise ValueError(f"{what} {value} is out of range: the model has {what}s 0 to {size - 1}.")


def _free_head(n_heads: int, taken: Sequence[int]) -> int:
    """The first head of a layer that is not in `taken`, for a decoy."""
    for h in range(n_heads):
        if h not in taken:
            return h
    raise ValueError("no head is left for a decoy in this layer: raise n_heads.")


def _pairs(template: str, clean: Sequence[str], corrupt: Sequence[str]) -> tuple[PromptPair, ...]:
    """Prompt pairs from a template; the answers are the clean subject and the corrupted one,
    or the next name when the corrupted subject is not a name."""
    pairs = []
    for c, k in zip(clean, corrupt, strict=True):
        wrong = k if k in NAMES else NAMES[NAMES.index(c) + 1]
        pairs.append(PromptPair(template.format(name=c), template.format(name=k), c, wrong))
    return tuple(pairs)


# -- the planted models ------------------------------------------------------------------------

HEAD_TEMPLATE = "When{name} arrived at the party, everyone greeted"
POSITION_TEMPLATE = "After lunch{name} said she would pay, so the bill went to"


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
    _check(circuit_layer, n_layers, "layer")
    _check(circuit_head, n_heads, "head")
    if n_heads < 2:
        raise ValueError("the head circuit needs n_heads >= 2: the planted head and a decoy.")
    asm = _Assembler(n_layers, n_heads, d_model)
    names, seen, mlp_seen = (asm.subspace(len(NAMES)) for _ in range(3))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = _pairs(HEAD_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, final = str_tokens.index(" Mary"), len(str_tokens) - 1
    move = Move(circuit_layer, circuit_head, source, final)
    decoy = (circuit_layer, _free_head(n_heads, [circuit_head]))
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
        _check(layer, n_layers, "layer")
        _check(head, n_heads, "head")
    if relay_layer >= final_layer:
        raise ValueError(f"relay_layer {relay_layer} must come before final_layer {final_layer}.")
    asm = _Assembler(n_layers, n_heads, d_model)
    names, spread, late, mlp_seen = (asm.subspace(len(NAMES)) for _ in range(4))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = _pairs(POSITION_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, relay = str_tokens.index(" Mary"), str_tokens.index(" she")
    final = len(str_tokens) - 1
    moves = (
        Move(relay_layer, relay_head, source, relay),
        Move(final_layer, final_head, relay, final),
    )
    spreader = (0, _free_head(n_heads, [m.head for m in moves if m.layer == 0]))
    reader = (final_layer, _free_head(n_heads, [final_head]))
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
        _check(layer, n_layers, "layer")
        _check(head, n_heads, "head")
    if first == second:
        raise ValueError("first and second must be different heads.")
    asm = _Assembler(n_layers, n_heads, d_model)
    tokens = (*NAMES, NULL)
    names, names_too, seen = (asm.subspace(len(tokens)) for _ in range(3))
    for token, a, b in zip(tokens, names, names_too, strict=True):
        asm.embed(token, [a, b])
    asm.answers = names[:-1] + names_too[:-1]
    asm.mute([names[-1], names_too[-1]])

    pairs = _pairs(HEAD_TEMPLATE, [" Mary", " Alice"], [NULL, NULL])
    str_tokens = asm.str_tokens(pairs[0].clean)
    source, final = str_tokens.index(" Mary"), len(str_tokens) - 1
    moves = (Move(*first, source, final), Move(*second, source, final))
    decoy = (
        first[0],
        _free_head(n_heads, [h for layer, h in (first, second) if layer == first[0]]),
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


SATURATED_TEMPLATE = "When{name} arrived at the party, everyone{verb}"


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
    _check(circuit_layer, n_layers, "layer")
    _check(circuit_head, n_heads, "head")
    asm = _Assembler(n_layers, n_heads, d_model)
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
        _check(layer, n_layers, "layer")
        _check(head, n_heads, "head")
    if not 0 < sender[0] < receiver[0] < n_layers - 1:
        raise ValueError(
            "the two-hop circuit needs 0 < sender layer < receiver layer < n_layers - 1: the "
            "amplifiers sit in layer 0 and in the last layer."
        )
    asm = _Assembler(n_layers, n_heads, d_model)
    names = asm.subspace(len(NAMES))
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [feature])
    asm.answers = names

    pairs = _pairs(POSITION_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
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


# -- the two-hop circuit on a grouped-query Llama ------------------------------------------------

ROPE_THETA = 1e12  # so large that the rotary pairs the heads score with barely turn
MAX_ROTATION = 1e-6  # radians over N_CTX positions: cos rounds to 1.0 in float32 well before it


class _GQAAssembler(_Builder):
    """A Llama with grouped-query attention and every weight zero, filled in like `_Assembler`.

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
    no biases, tied embeddings, GPT-2's tokenizer. `_GQAAssembler` says how the construction
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
        _check(layer, n_layers, "layer")
        _check(head, n_heads, "head")
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
    asm = _GQAAssembler(n_layers, n_heads, n_kv_heads, d_model)
    names, seen = asm.subspace(len(NAMES)), asm.subspace(len(NAMES))
    is_name, at_she, at_end = asm.feature(), asm.feature(), asm.feature()
    for token, feature in zip(NAMES, names, strict=True):
        asm.embed(token, [is_name, feature])
    asm.embed(" she", [at_she])
    asm.embed(" to", [at_end])
    asm.answers = names

    pairs = _pairs(POSITION_TEMPLATE, [" Mary", " Alice"], [" John", " Bob"])
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


__all__ = [
    "ANSWER_LOGIT",
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
