"""transformers' own progress bars, off: actpatch's callers report progress themselves (the CLI
its own bars and messages, the server its jobs), and a bar of transformers' on stderr in the
middle of theirs is noise.

transformers draws most of its bars (loading weights, writing model shards) through its
logging module's switch, `transformers.utils.logging.disable_progress_bar()`, which lasts for
the process. Its GGUF converter ("Converting and de-quantizing GGUF tensors") draws its bar
with tqdm directly, past that switch: `hide_progress_bars` gives that module a tqdm that draws
nothing, for the process too.
"""

from __future__ import annotations

import functools


def hide_progress_bars() -> None:
    """Turn transformers' progress bars off for this process (module docstring); idempotent."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    try:
        from transformers import modeling_gguf_pytorch_utils as gguf_utils
    except ImportError:  # a transformers without GGUF support draws no GGUF bar
        return
    bar = getattr(gguf_utils, "tqdm", None)
    if bar is not None and not getattr(bar, "hidden_by_actpatch", False):
        quiet = functools.partial(bar, disable=True)
        quiet.hidden_by_actpatch = True  # type: ignore[attr-defined]
        gguf_utils.tqdm = quiet


__all__ = ["hide_progress_bars"]
