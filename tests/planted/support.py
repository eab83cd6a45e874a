"""What the planted-circuit tests share: a planted model loaded by actpatch and, independently,
by Hugging Face, Hugging Face's own forward with hooks (the constructions checked without
actpatch's engine), and the grids of expected values the engine's results are held to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

import actpatch
from actpatch.planted import BOS_TOKEN_ID, PlantedModel

TOL = 1e-3


class Loaded:
    """A planted model's ground truth, actpatch's view of the model, and Hugging Face's,
    loaded independently."""

    def __init__(self, planted: PlantedModel) -> None:
        self.truth = planted
        self.model = actpatch.load_model(str(planted.folder))
        self.hf = AutoModelForCausalLM.from_pretrained(
            str(planted.folder), attn_implementation="eager"
        )
        self.hf.eval()
        self.tokenizer = self.model.tokenizer  # loaded from the folder by transformers
        self._experiments: dict[int, actpatch.Experiment] = {}

    def experiment(self, n_pairs: int = 1) -> actpatch.Experiment:
        if n_pairs not in self._experiments:
            self._experiments[n_pairs] = actpatch.Experiment(
                self.model, **self.truth.prompts(n_pairs)
            )
        return self._experiments[n_pairs]

    def ids(self, text: str) -> torch.Tensor:
        return torch.tensor(
            [[BOS_TOKEN_ID, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]]
        )

    def answer(self, text: str) -> int:
        (token,) = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return int(token)


def blocks(hf: Any) -> list[tuple[Any, Any]]:
    """Each layer's attention output projection (its input is the heads' z) and its MLP, on
    GPT-2 or on a Llama."""
    if isinstance(hf, LlamaForCausalLM):
        return [(layer.self_attn.o_proj, layer.mlp) for layer in hf.model.layers]
    return [(block.attn.c_proj, block.mlp) for block in hf.transformer.h]


def hf_run(
    fx: Loaded, text: str, *, patch: tuple[int, int, torch.Tensor] | None = None
) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, torch.Tensor], tuple]:
    """Final-position logits, each layer's head outputs z (the input to its output projection),
    each layer's MLP output and the attention patterns. `patch` = (layer, head, z) replaces one
    head's z at every position before its output projection."""
    z: dict[int, torch.Tensor] = {}
    mlp: dict[int, torch.Tensor] = {}
    d_head = fx.hf.config.hidden_size // fx.hf.config.num_attention_heads
    handles = []
    for layer, (out_proj, block_mlp) in enumerate(blocks(fx.hf)):

        def keep_z(module, args, layer=layer):
            (x,) = args
            if patch is not None and patch[0] == layer:
                x = x.clone()
                cols = slice(patch[1] * d_head, (patch[1] + 1) * d_head)
                x[..., cols] = patch[2][..., cols]
            z[layer] = x
            return (x,)

        def keep_mlp(module, args, out, layer=layer):
            mlp[layer] = out

        handles.append(out_proj.register_forward_pre_hook(keep_z))
        handles.append(block_mlp.register_forward_hook(keep_mlp))
    try:
        with torch.no_grad():
            out = fx.hf(fx.ids(text), output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    return out.logits[0, -1], z, mlp, out.attentions


def logit_diff(fx: Loaded, logits: torch.Tensor, pair_index: int = 0) -> float:
    pair = fx.truth.pairs[pair_index]
    return float(logits[fx.answer(pair.target)] - logits[fx.answer(pair.wrong)])


def expected_grid(
    shape: tuple[int, ...], cell_value: Callable[[tuple[int, ...]], float]
) -> torch.Tensor:
    grid = torch.zeros(shape)
    for index in torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape)):
        cell = tuple(int(i) for i in index)
        grid[cell] = cell_value(cell)
    return grid


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=TOL, rtol=0)
