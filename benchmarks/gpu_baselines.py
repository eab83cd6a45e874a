"""What `bench_gpu.py` holds actpatch's GPU figures against, on the GPT-2-small-shaped model.

- `hand_batched_heads`: the head sweep as one would write it with plain PyTorch hooks on the
  Hugging Face model: one forward of a batch of layers x heads, each row patching one head;
- `tl_loops`: TransformerLens's own head and resid_pre patching loops, through its bridge over
  the same weights;
- `launches`: how many kernels a call launches and how long the GPU is busy in it (the union of
  the kernels' intervals on the profiler's device timeline), to tell a sweep that waits on
  kernel launches from one that waits on arithmetic.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch

import actpatch
from actpatch.models import LoadedModel
from random_models import CLEAN, CORRUPT


def experiment(model: LoadedModel) -> actpatch.Experiment:
    """The IOI pair on `model` (a fresh experiment: no cached runs)."""
    return actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")


def hand_batched_heads(model: LoadedModel) -> torch.Tensor:
    """The head sweep with plain PyTorch hooks on the Hugging Face GPT-2: one forward of both
    prompts records every layer's clean head outputs (the input of `attn.c_proj`, heads side by
    side) and both logit differences; then one forward of the corrupted prompt repeated
    layers x heads times, row `layer * n_heads + head` taking the clean run's output of that
    head at every position (the last position's logits only). The normalized logit difference,
    (layer, head)."""
    hf, exp = model.hf_model, experiment(model)
    n_layers, n_heads, d_head = model.n_layers, model.n_heads, model.d_head
    target, wrong = int(exp.target_ids[0]), int(exp.wrong_ids[0])  # type: ignore[index]
    clean, corrupt = exp.clean_tokens, exp.corrupt_tokens
    blocks = hf.transformer.h
    rows = n_layers * n_heads
    heads = torch.arange(n_heads, device=clean.device)
    recorded: dict[int, torch.Tensor] = {}

    def record(layer: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple[torch.Tensor, ...]) -> None:
            recorded[layer] = args[0][0]  # (pos, n_heads * d_head): the clean prompt's row

        return hook

    def patch(layer: int) -> Callable[..., tuple[torch.Tensor]]:
        def hook(module: Any, args: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor]:
            z = args[0].clone().view(rows, -1, n_heads, d_head)  # (rows, pos, head, d_head)
            source = recorded[layer].view(-1, n_heads, d_head).transpose(0, 1)
            z[layer * n_heads + heads, :, heads] = source  # (head, pos, d_head)
            return (z.view(rows, -1, n_heads * d_head),)

        return hook

    def forward(tokens: torch.Tensor, hook: Callable[[int], Any]) -> torch.Tensor:
        handles = [b.attn.c_proj.register_forward_pre_hook(hook(i)) for i, b in enumerate(blocks)]
        try:
            logits = hf(tokens, logits_to_keep=1).logits[:, -1]
        finally:
            for handle in handles:
                handle.remove()
        return logits[:, target] - logits[:, wrong]

    with torch.inference_mode():
        clean_ld, corrupt_ld = forward(torch.cat([clean, corrupt]), record)
        patched = forward(corrupt.expand(rows, -1), patch)
    return ((patched - corrupt_ld) / (clean_ld - corrupt_ld)).view(n_layers, n_heads)


def tl_loops(model: LoadedModel, sync: Callable[[], None]) -> dict[str, tuple[float, torch.Tensor]]:
    """TransformerLens's head (`get_act_patch_attn_head_out_all_pos`) and resid_pre
    (`get_act_patch_resid_pre`) loops through its bridge over the same weights, once each,
    synchronised: seconds and the normalized logit difference, by component."""
    from transformer_lens import patching as tlp

    exp = experiment(model)
    bridge = model.bridge()
    target, wrong = int(exp.target_ids[0]), int(exp.wrong_ids[0])  # type: ignore[index]

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, target] - logits[:, -1, wrong]).mean()

    with torch.no_grad():
        clean_logits, clean_cache = bridge.run_with_cache(exp.clean_tokens)
        clean_ld = float(logit_diff(clean_logits))
        corrupt_ld = float(logit_diff(bridge(exp.corrupt_tokens)))

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return (logit_diff(logits) - corrupt_ld) / (clean_ld - corrupt_ld)

    out = {}
    for component, loop in (
        ("z", tlp.get_act_patch_attn_head_out_all_pos),
        ("resid_pre", tlp.get_act_patch_resid_pre),
    ):
        sync()
        t0 = time.perf_counter()
        with torch.no_grad():
            result = loop(bridge, exp.corrupt_tokens, clean_cache, normalized)
        sync()
        out[component] = (time.perf_counter() - t0, result)
    return out


def launches(fn: Callable[[], Any], cuda: bool, sync: Callable[[], None]) -> tuple[int, float]:
    """(kernels launched, milliseconds the GPU was busy) in one call of `fn`; on a CPU
    (`cuda` False) the operator calls, and 0."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        fn()
        sync()
    events = list(prof.events())
    if not cuda:
        return len(events), 0.0
    kernels = [e for e in events if e.device_type == DeviceType.CUDA]
    intervals = sorted((e.time_range.start, e.time_range.end) for e in kernels)
    busy, end = 0.0, float("-inf")  # microseconds: the union of the intervals
    for start, stop in intervals:
        if stop > end:
            busy += stop - max(start, end)
            end = stop
    return len(kernels), busy / 1000


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).abs().nan_to_num().max())
