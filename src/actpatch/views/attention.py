"""Attention patterns: where a head attends, on the clean and corrupted runs.

A head's pattern (TransformerLens's `hook_pattern`) is the softmax of its attention scores:
row q holds how much query position q reads each key position, summing to 1 over the keys it
may see (causal mask, sliding window). For a grouped-query model every query head has its own
pattern, though it shares keys and values with the other heads of its group.

Both runs come from the experiment's one batched forward (the same one a sweep caches), so a
pattern costs nothing more once a sweep has run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from torch import Tensor

from actpatch.patching.experiment import Experiment, Run, check_experiment
from actpatch.views.common import (
    both_runs,
    check_heads,
    check_layer,
    check_pair,
    padding,
    pair_tokens,
    warnings,
)
from actpatch.views.results import AttentionResult


def attention_pattern(
    exp: Experiment, layer: int, head: int | Sequence[int], pair: int = 0
) -> AttentionResult:
    """Head `head`'s (or each of several heads') attention pattern at `layer`, on pair `pair`'s
    clean and corrupted prompts."""
    t0 = time.perf_counter()
    check_experiment(exp)
    layer = check_layer(exp, layer)
    heads = check_heads(exp, head if isinstance(head, list | tuple) else [head])
    pair = check_pair(exp, pair)
    clean, corrupt = both_runs(exp, ["pattern"])
    pad = padding(exp, pair)

    def pattern(run: Run) -> Tensor:
        p = run.cache[("pattern", layer)][pair, heads]  # (heads, query_pos, key_pos)
        return p[:, pad:, pad:].float().cpu()  # padding left out

    runner = exp.runner
    group = runner.n_heads // runner.n_kv_heads
    return AttentionResult(
        model=exp.model.name,
        backend=exp.backend,
        devices=exp.model.devices,
        layer=layer,
        heads=heads,
        kv_heads=[h // group for h in heads],
        tokens=pair_tokens(exp, "clean", pair),
        corrupt_tokens=pair_tokens(exp, "corrupt", pair),
        clean=pattern(clean),
        corrupt=pattern(corrupt),
        pair=pair,
        warnings=warnings(exp),
        seconds=time.perf_counter() - t0,
    )
