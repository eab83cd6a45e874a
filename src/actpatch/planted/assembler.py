"""The assemblers: zeroed models, filled in one feature, token, head and MLP at a time.

`Assembler` is what every assembler shares (GPT-2's tokenizer, saving the model beside it);
`GPT2Assembler` builds a `GPT2LMHeadModel` the way the package docstring describes (features on
coordinate pairs, position embeddings that carry a bias, one-hot attention, calibration on the
clean prompt). `GQAAssembler` (`actpatch.planted.gqa`) builds a grouped-query Llama on the same
plan. `check_index` and `free_head` check and pick the heads a builder places.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerBase

from actpatch.models.quiet import hide_progress_bars
from actpatch.planted.ground_truth import (
    ANSWER_LOGIT,
    BIAS_NORM,
    BOS_TOKEN_ID,
    GPT2_VOCAB_SIZE,
    MATCH_SCORE,
    N_CTX,
    REST_SCORE,
    Move,
)
from actpatch.tokenizer import gpt2_tokenizer, save_gpt2_tokenizer


@functools.cache
def _tokenizer() -> PreTrainedTokenizerBase:
    return gpt2_tokenizer()


class Assembler:
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
        hide_progress_bars()  # no "Writing model shards" bar: a builder is one quiet step
        self.model.save_pretrained(str(folder))
        save_gpt2_tokenizer(folder)
        return folder


class GPT2Assembler(Assembler):
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


def check_index(value: int, size: int, what: str) -> None:
    if not 0 <= value < size:
        raise ValueError(f"{what} {value} is out of range: the model has {what}s 0 to {size - 1}.")


def free_head(n_heads: int, taken: Sequence[int]) -> int:
    """The first head of a layer that is not in `taken`, for a decoy."""
    for h in range(n_heads):
        if h not in taken:
            return h
    raise ValueError("no head is left for a decoy in this layer: raise n_heads.")
