"""Time actpatch's sweeps against TransformerLens's own patching loops, in one process.

A GPT-2-small-shaped model (12 layers, 12 heads, d_model 768, GPT-2's vocabulary) with random
weights, on the 15-token IOI pair. For the head sweep (vs `get_act_patch_attn_head_out_all_pos`)
and the resid_pre sweep (vs `get_act_patch_resid_pre`) it prints both times, the ratio, the
largest difference in the normalized logit difference, and the achieved floating-point rate:
the work the sweep could not avoid, divided by our time, against a matmul peak measured here.

    python benchmarks/bench_sweeps.py [--repeats 3] [--skip-tl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformer_lens import patching as tlp
from transformers import GPT2Config, GPT2LMHeadModel

import actpatch
from actpatch.models import LoadedModel
from actpatch.tokenizer import gpt2_tokenizer

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"


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


def layer_flops(d: int, d_mlp: int, n_keys: int) -> float:
    """FLOPs of one block on one token: QKV, attention over n_keys, output, MLP."""
    return 2 * (3 * d * d + d * d + 2 * d * d_mlp) + 4 * n_keys * d


def unavoidable_flops(model: LoadedModel, result: actpatch.SweepResult, start: int) -> float:
    """The work any exact sweep must do: for each cell that can change the answer, recompute
    every later layer at every position from the first changed one to the end (the last layer
    only at the final position, plus the keys and values it attends to), and read the two
    answer logits. Cells before the first differing token are free (identical in both runs)."""
    d, d_mlp, n_layers = model.d_model, 4 * model.d_model, model.n_layers
    n_pos = len(result.tokens)
    total = 0.0
    cells = [(layer, i) for layer in range(n_layers) for i in range(result.raw.shape[1])]
    for layer, i in cells:
        first = max(start, i) if result.axes[1] == "pos" else start
        if result.axes[1] == "pos" and i < start:
            continue
        positions = range(first, n_pos)
        for later in range(layer, n_layers):
            if later == layer and result.axes[1] == "head":
                # the patched layer: only the head's output projection and the MLP change
                total += len(positions) * (2 * model.d_head * d + 2 * 2 * d * d_mlp)
            elif later == n_layers - 1:
                total += len(positions) * 2 * 2 * d * d  # keys and values
                total += layer_flops(d, d_mlp, n_pos) - 2 * 2 * d * d  # the final position
            else:
                total += sum(layer_flops(d, d_mlp, p + 1) for p in positions)
        total += 2 * 2 * d  # two answer columns of the unembedding
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of our sweeps")
    parser.add_argument("--tl-repeats", type=int, default=1, help="timed runs of TransformerLens")
    parser.add_argument("--skip-tl", action="store_true", help="time only actpatch")
    args = parser.parse_args()

    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(GPT2Config()).eval()
    hf_model.requires_grad_(False)
    model = LoadedModel("random GPT-2-small-shaped", "random weights", hf_model, gpt2_tokenizer())
    print(
        f"model: {model.name}: {model.n_layers} layers, {model.n_heads} heads, d_model "
        f"{model.d_model}, vocabulary {model.d_vocab}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    peak = matmul_peak()
    print(f"measured fp32 matmul peak: {peak:.1f} GFLOP/s")

    exp = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    print(
        f"prompt pair: {exp.clean_tokens.shape[1]} tokens; first differing position "
        f"{exp.first_diff}"
    )
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

    for component, tl_function, target in (
        ("z", tlp.get_act_patch_attn_head_out_all_pos, 20),
        ("resid_pre", tlp.get_act_patch_resid_pre, 50),
    ):
        times, result = [], None
        for _ in range(args.repeats):
            fresh = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")  # no warm cache
            t0 = time.perf_counter()
            result = actpatch.sweep(fresh, component, "logit_diff")
            times.append(time.perf_counter() - t0)
        assert result is not None
        ours = min(times)  # the least disturbed run; noise only ever adds time
        flops = unavoidable_flops(model, result, exp.first_diff)
        line = (
            f"\n{component} sweep ({'x'.join(result.axes)} = {result.raw.numel()} cells)\n"
            f"  actpatch          {ours:8.3f} s  (best of {args.repeats}, cold caches; median "
            f"{statistics.median(times):.3f} s)"
        )
        if not args.skip_tl:
            tl_times = []
            for _ in range(args.tl_repeats):
                t0 = time.perf_counter()
                with torch.no_grad():
                    reference = tl_function(bridge, exp.corrupt_tokens, clean_cache, normalized)
                tl_times.append(time.perf_counter() - t0)
            tl_time = min(tl_times)
            diff = float((result.normalized - reference).abs().max())
            line += (
                f"\n  TransformerLens   {tl_time:8.3f} s  (best of {args.tl_repeats})\n"
                f"  speed-up          {tl_time / ours:8.1f}x   (target {target}x; same process, "
                "same threads)\n"
                f"  max |difference|  {diff:.2e} (normalized logit difference)"
            )
        rate = flops / ours / 1e9
        line += (
            f"\n  unavoidable work  {flops / 1e9:8.2f} GFLOP -> {rate:.1f} GFLOP/s achieved, "
            f"{100 * rate / peak:.0f}% of the measured peak"
        )
        print(line)


if __name__ == "__main__":
    main()
