"""Time actpatch's sweeps against TransformerLens's own patching loops, in one process.

Random-weight models the size of GPT-2 small (12 layers, 12 heads, d_model 768, GPT-2's
vocabulary), one per architecture: GPT-2 itself, a Llama (4 KV heads, SiLU-gated MLP of 3072)
and a GPT-NeoX/Pythia (parallel residual, rotary on a quarter of each head). On the 15-token IOI
pair, for the head sweep (vs `get_act_patch_attn_head_out_all_pos`) and the resid_pre sweep (vs
`get_act_patch_resid_pre`) it prints both times, the ratio, the largest difference in the
normalized logit difference, and the achieved floating-point rate: the work the sweep could not
avoid, divided by our time, against a matmul peak measured here. For the Llama it also times
actpatch's generic (bridge) path, which models outside the fast path's families use.

Then, in a child process (so that its peak memory is its own), a Llama-3.2-1B-shaped model
(16 layers, 32 heads, 8 KV heads, d_model 2048, d_mlp 8192, vocabulary 128256, float32): the
head sweep's time and the process's peak resident memory.

    python benchmarks/bench_sweeps.py [--models gpt2,llama,neox,llama1b] [--repeats 3]
                                      [--skip-tl] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import actpatch
from actpatch.arch import ArchSpec
from random_models import CLEAN, CORRUPT, build


def matmul_peak(seconds: float = 2.0) -> float:
    """The best fp32 matmul rate (GFLOP/s) over a few square sizes, on all threads."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        a @ b
        reps, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 3:
            a @ b
            reps += 1
        best = max(best, 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9)
    return best


def _token_flops(spec: ArchSpec, n_keys: int) -> tuple[float, float, float]:
    """FLOPs of one block on one token: (q/k/v projections, attention and output, MLP)."""
    d, dh = spec.d_model, spec.d_head
    qkv = 2 * d * (spec.n_heads + 2 * spec.n_kv_heads) * dh
    attn = 4 * n_keys * spec.n_heads * dh + 2 * spec.n_heads * dh * d
    mlp = 2 * (3 if spec.gated_mlp else 2) * d * spec.d_mlp
    return qkv, attn, mlp


def unavoidable_flops(spec: ArchSpec, result: actpatch.SweepResult, start: int) -> float:
    """The work any exact sweep must do: for each cell that can change the answer, recompute
    every later layer at every position from the first changed one to the end (the last layer
    only at the final position, plus the keys and values it attends to), and read the two
    answer logits. Cells before the first differing token are free (identical in both runs).
    In a parallel-residual block the MLP does not read attention's output, so a head's patch
    there costs only its output projection."""
    n_layers, n_pos, by_pos = spec.n_layers, len(result.tokens), result.axes[1] == "pos"
    kv = 2 * 2 * spec.d_model * spec.n_kv_heads * spec.d_head
    total = 0.0
    for layer in range(n_layers):
        for i in range(result.raw.shape[1]):
            if by_pos and i < start:
                continue
            first = max(start, i) if by_pos else start
            positions = range(first, n_pos)
            for later in range(layer, n_layers):
                if later == layer and not by_pos:
                    # the patched layer: only the head's output projection and the MLP change
                    mlp = 0.0 if spec.parallel else _token_flops(spec, 0)[2]
                    total += len(positions) * (2 * spec.d_head * spec.d_model + mlp)
                elif later == n_layers - 1:
                    total += len(positions) * kv + sum(_token_flops(spec, n_pos)) - kv
                else:
                    total += sum(sum(_token_flops(spec, p + 1)) for p in positions)
            total += 2 * 2 * spec.d_model  # two answer columns of the unembedding
    return total


def time_sweeps(kind: str, peak: float, repeats: int, tl_repeats: int, skip_tl: bool) -> None:
    from transformer_lens import patching as tlp

    model = build(kind)
    print(
        f"\n== {model.name}: {model.n_layers} layers, {model.n_heads} heads "
        f"({model.n_kv_heads} KV), d_model {model.d_model}, vocabulary {model.d_vocab}"
    )
    exp = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    spec = exp.runner.spec
    bridge = model.bridge()
    with torch.no_grad():
        clean_logits, clean_cache = bridge.run_with_cache(exp.clean_tokens)
        corrupt_logits = bridge(exp.corrupt_tokens)
    mary, john = int(exp.target_ids[0]), int(exp.wrong_ids[0])  # type: ignore[index]

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:
        return (logits[:, -1, mary] - logits[:, -1, john]).mean()

    clean_ld, corrupt_ld = float(logit_diff(clean_logits)), float(logit_diff(corrupt_logits))

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return (logit_diff(logits) - corrupt_ld) / (clean_ld - corrupt_ld)

    backends = ["fast", "bridge"] if kind == "llama" else ["fast"]
    for component, tl_function, target in (
        ("z", tlp.get_act_patch_attn_head_out_all_pos, 25),
        ("resid_pre", tlp.get_act_patch_resid_pre, 50),
    ):
        ours: dict[str, float] = {}
        results: dict[str, actpatch.SweepResult] = {}
        for backend in backends:
            times = []
            for _ in range(repeats if backend == "fast" else 1):
                fresh = actpatch.Experiment(
                    model, CLEAN, CORRUPT, " Mary", " John", backend=backend
                )
                t0 = time.perf_counter()
                results[backend] = actpatch.sweep(fresh, component, "logit_diff")
                times.append(time.perf_counter() - t0)
            ours[backend] = min(times)  # the least disturbed run; noise only ever adds time
            if backend == "fast":
                median = statistics.median(times)
        result = results["fast"]
        flops = unavoidable_flops(spec, result, exp.first_diff)
        line = (
            f"\n{component} sweep ({'x'.join(result.axes)} = {result.raw.numel()} cells)\n"
            f"  actpatch (fast)     {ours['fast']:8.3f} s  (best of {repeats}, cold caches; "
            f"median {median:.3f} s)"
        )
        if "bridge" in ours:
            line += f"\n  actpatch (bridge)   {ours['bridge']:8.3f} s  (generic path, one run)"
        if not skip_tl:
            tl_times = []
            for _ in range(tl_repeats):
                t0 = time.perf_counter()
                with torch.no_grad():
                    reference = tl_function(bridge, exp.corrupt_tokens, clean_cache, normalized)
                tl_times.append(time.perf_counter() - t0)
            tl_time = min(tl_times)
            diffs = {b: float((r.normalized - reference).abs().max()) for b, r in results.items()}
            line += (
                f"\n  TransformerLens     {tl_time:8.3f} s  (best of {tl_repeats})\n"
                f"  speed-up (fast)     {tl_time / ours['fast']:8.1f}x   (target {target}x; same "
                "process, same threads)"
            )
            if "bridge" in ours:
                line += f"\n  speed-up (bridge)   {tl_time / ours['bridge']:8.1f}x"
            line += "\n  max |difference|    " + ", ".join(
                f"{d:.2e} ({b})" for b, d in diffs.items()
            )
        rate = flops / ours["fast"] / 1e9
        line += (
            f"\n  unavoidable work    {flops / 1e9:8.2f} GFLOP -> {rate:.1f} GFLOP/s achieved, "
            f"{100 * rate / peak:.0f}% of the measured peak"
        )
        print(line, flush=True)


def one_billion() -> dict[str, float]:
    """The Llama-3.2-1B-shaped model's head sweep: time and this process's peak memory."""
    t0 = time.perf_counter()
    model = build("llama1b")
    built = time.perf_counter() - t0
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    exp = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    t0 = time.perf_counter()
    result = actpatch.sweep(exp, "z", "logit_diff")
    seconds = time.perf_counter() - t0
    flops = unavoidable_flops(exp.runner.spec, result, exp.first_diff)
    return {
        "gflops": flops / 1e9,
        "n_params": model.n_params,
        "build_s": built,
        "sweep_s": seconds,
        "cells": result.raw.numel(),
        "backend_fast": float(result.backend == "fast"),
        "peak_rss_after_build_gib": rss_built,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="gpt2,llama,neox,llama1b")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of our sweeps")
    parser.add_argument("--tl-repeats", type=int, default=1, help="timed runs of TransformerLens")
    parser.add_argument("--skip-tl", action="store_true", help="time only actpatch")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads for both sides (default: all)"
    )
    parser.add_argument("--one-billion-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if args.one_billion_child:
        print(json.dumps(one_billion()))
        return

    kinds = args.models.split(",")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    peak = matmul_peak()
    print(f"measured fp32 matmul peak: {peak:.1f} GFLOP/s")
    for kind in kinds:
        if kind != "llama1b":
            time_sweeps(kind, peak, args.repeats, args.tl_repeats, args.skip_tl)
    if "llama1b" in kinds:
        print(
            "\n== random Llama-3.2-1B-shaped (16 layers, 32 heads, 8 KV heads, d_model 2048, "
            "d_mlp 8192, vocabulary 128256), float32, in a child process"
        )
        threads = ["--threads", str(args.threads)] if args.threads is not None else []
        out = subprocess.run(
            [sys.executable, __file__, "--one-billion-child", *threads],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        r = json.loads(out.strip().splitlines()[-1])
        print(
            f"  {r['n_params'] / 1e9:.2f} B parameters, built in {r['build_s']:.1f} s "
            f"(peak RSS {r['peak_rss_after_build_gib']:.2f} GiB)\n"
            f"  head sweep ({int(r['cells'])} cells, "
            f"{'fast' if r['backend_fast'] else 'bridge'} path): {r['sweep_s']:.2f} s; "
            f"unavoidable work {r['gflops']:.0f} GFLOP -> {r['gflops'] / r['sweep_s']:.1f} "
            f"GFLOP/s\n"
            f"  peak RSS of the whole process: {r['peak_rss_gib']:.2f} GiB"
        )
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
