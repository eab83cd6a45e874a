"""The benchmarks' random-weight models and their prompt pair, built one way for every script.

- `gpt2`, `llama`, `neox`: the size of GPT-2 small (12 layers, 12 heads, d_model 768, GPT-2's
  vocabulary), one per architecture: GPT-2 itself, a Llama (4 KV heads, SiLU-gated MLP of 3072)
  and a GPT-NeoX/Pythia (parallel residual, rotary on a quarter of each head);
- `llama1b`: Llama-3.2-1B's shape (16 layers, 32 heads, 8 KV heads, d_model 2048, d_mlp 8192,
  vocabulary 128256, tied embeddings, llama3 rope scaling), float32;
- `gpu_configs()`: bench_gpu.py's shapes (GPT-2 small, Llama-3.2-1B, Llama-3.1-8B, Qwen2.5-32B)
  as configs, which it builds directly on the GPU in the dtype it measures.

Every model uses GPT-2's tokenizer: its ids (< 50257) are valid in every vocabulary here.
"""

from __future__ import annotations

from typing import Any

import torch

from actpatch.models import LoadedModel
from actpatch.tokenizer import gpt2_tokenizer

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
VOCAB = 50257
SMALL = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12}
LLAMA_1B = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "intermediate_size": 8192,
    "vocab_size": 128256,
    "tie_word_embeddings": True,
}
KINDS = ("gpt2", "llama", "neox", "llama1b")


def build(kind: str) -> LoadedModel:
    """A random-weight model of `kind` (seed 0), in eval mode, with GPT-2's tokenizer."""
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        GPTNeoXConfig,
        GPTNeoXForCausalLM,
        LlamaConfig,
        LlamaForCausalLM,
    )

    torch.manual_seed(0)
    if kind == "gpt2":
        hf_model: Any = GPT2LMHeadModel(GPT2Config())
        name = "random GPT-2-small-shaped"
    elif kind == "llama":
        config = LlamaConfig(
            **SMALL, num_key_value_heads=4, intermediate_size=3072, vocab_size=VOCAB
        )
        hf_model = LlamaForCausalLM(config)
        name = "random Llama, GPT-2-small-sized (4 KV heads)"
    elif kind == "neox":
        config = GPTNeoXConfig(**SMALL, intermediate_size=3072, vocab_size=VOCAB, rotary_pct=0.25)
        hf_model = GPTNeoXForCausalLM(config)
        name = "random GPT-NeoX (Pythia), GPT-2-small-sized"
    elif kind == "llama1b":
        config = LlamaConfig(
            **LLAMA_1B,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 32.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 8192,
            },
            rope_theta=500000.0,
        )
        hf_model = LlamaForCausalLM(config)
        name = "random Llama-3.2-1B-shaped"
    else:
        raise ValueError(f"unknown model {kind!r}: choose from {', '.join(KINDS)}")
    hf_model.eval()
    hf_model.requires_grad_(False)
    return LoadedModel(name, "random weights", hf_model, gpt2_tokenizer())


LLAMA3_ROPE = {  # Llama 3's rope scaling, less its factor
    "rope_type": "llama3",
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}


def gpu_configs(smoke: bool = False) -> dict[str, Any]:
    """bench_gpu.py's models, by kind ("gpt2", "llama1b", "llama8b", "qwen32b"), as Hugging Face
    configs: GPT-2 small's, Llama-3.2-1B's, Llama-3.1-8B's and Qwen2.5-32B's shapes, or, with
    `smoke`, tiny ones of the same families (GPT-2's vocabulary)."""
    from transformers import GPT2Config, LlamaConfig, Qwen2Config

    if smoke:
        tiny = {"hidden_size": 64, "num_attention_heads": 4, "num_key_value_heads": 2}
        return {
            "gpt2": GPT2Config(n_layer=2, n_head=4, n_embd=64),
            "llama1b": LlamaConfig(
                **tiny, num_hidden_layers=2, intermediate_size=128, vocab_size=VOCAB
            ),
            "llama8b": LlamaConfig(
                **tiny, num_hidden_layers=3, intermediate_size=128, vocab_size=VOCAB
            ),
            "qwen32b": Qwen2Config(
                **tiny, num_hidden_layers=3, intermediate_size=128, vocab_size=VOCAB
            ),
        }
    return {
        "gpt2": GPT2Config(),
        "llama1b": LlamaConfig(
            **LLAMA_1B, rope_scaling={**LLAMA3_ROPE, "factor": 32.0}, rope_theta=500000.0
        ),
        "llama8b": LlamaConfig(
            hidden_size=4096,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            intermediate_size=14336,
            vocab_size=128256,
            max_position_embeddings=131072,
            rope_scaling={**LLAMA3_ROPE, "factor": 8.0},
            rope_theta=500000.0,
            tie_word_embeddings=False,
        ),
        "qwen32b": Qwen2Config(
            hidden_size=5120,
            num_hidden_layers=64,
            num_attention_heads=40,
            num_key_value_heads=8,
            intermediate_size=27648,
            vocab_size=152064,
            max_position_embeddings=32768,
            rope_theta=1000000.0,
            tie_word_embeddings=False,
        ),
    }
