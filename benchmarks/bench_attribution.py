"""Time attribution patching against TransformerLens's `attribution_patch`, in one process.

A GPT-2-small-shaped model (12 layers, 12 heads, d_model 768, GPT-2's vocabulary) with random
weights, on the 15-token IOI pair, then on a batch of IOI pairs of one template. Both estimate
every head at every position (our z_by_pos, its attn_head_out nodes) and every MLP output at
every position (mlp_out); ours also estimates resid_pre at every layer and position in the same
pass. It prints:

- both times and the speed-up (target: 10x), for one pair and for the batch (TransformerLens
  runs each pair on its own; we run all pairs as one batch);
- our time in forward-equivalents: divided by the time of one plain forward pass of our own
  fast path on the same prompt (target: at most 3);
- the largest difference between our estimates and TransformerLens's node scores;
- beside them, the time of our exact sweeps of the same cells, and of AtP* (QK fix and GradDrop).

    python benchmarks/bench_attribution.py [--repeats 5] [--pairs 16] [--threads N] [--skip-tl]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformer_lens.tools.analysis.attribution_patching import attribution_patch
from transformers import GPT2Config, GPT2LMHeadModel

import actpatch
from actpatch.datasets import ioi
from actpatch.models import LoadedModel
from actpatch.patching.attribution import attribute_components
from actpatch.tokenizer import gpt2_tokenizer

CLEAN = "When Mary and John went to the store, John gave a drink to"
CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
COMPONENTS = ("z_by_pos", "mlp_out", "resid_pre")


def best(times: list[float]) -> str:
    return f"{min(times):8.3f} s  (best of {len(times)}; median {statistics.median(times):.3f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of ours")
    parser.add_argument("--tl-repeats", type=int, default=1, help="timed runs of TransformerLens")
    parser.add_argument("--skip-tl", action="store_true", help="time only actpatch")
    parser.add_argument("--pairs", type=int, default=16, help="IOI pairs in the batch")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    hf_model = GPT2LMHeadModel(GPT2Config()).eval()
    hf_model.requires_grad_(False)
    model = LoadedModel("random GPT-2-small-shaped", "random weights", hf_model, gpt2_tokenizer())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"model: {model.name}: {model.n_layers} layers, {model.n_heads} heads, d_model "
        f"{model.d_model}, vocabulary {model.d_vocab}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; load average {load:.2f}"
    )
    exp = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    n_pos = int(exp.clean_tokens.shape[1])
    print(f"prompt pair: {n_pos} tokens; first differing position {exp.first_diff}")

    # One plain forward pass of our fast path on the prompt: the unit of cost.
    runner = exp.runner
    forward = []
    for _ in range(max(5, args.repeats)):
        t0 = time.perf_counter()
        with torch.inference_mode():
            runner.unembed(runner.run(runner.embed(exp.corrupt_tokens), last_only=True))
        forward.append(time.perf_counter() - t0)
    one_forward = min(forward)

    # Ours: every head x position, every MLP and resid_pre cell, from a cold experiment (its
    # time includes the unpatched forward of both runs, the forward with gradients and the
    # backward pass).
    times, results = [], []
    for _ in range(args.repeats):
        fresh = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
        t0 = time.perf_counter()
        results = attribute_components(fresh, COMPONENTS, "atp", "denoising", "logit_diff")
        times.append(time.perf_counter() - t0)
    ours = min(times)
    z, mlp, resid = results
    cells = sum(int((~r.estimate.isnan()).sum()) for r in results)
    print(
        f"\nAtP of {' + '.join(COMPONENTS)} ({cells} cells: "
        f"{z.estimate.numel()} head x position, {mlp.estimate.numel()} MLP, "
        f"{resid.estimate.numel()} resid_pre)"
    )
    print(f"  actpatch          {best(times)}")
    print(f"  one forward pass  {one_forward * 1000:8.1f} ms  (our fast path, the base prompt)")
    print(
        f"  forward-equivalents {ours / one_forward:6.2f}   (target: at most 3; AtP time / one "
        "forward)"
    )

    if not args.skip_tl:
        bridge = model.bridge()
        # TransformerLens's gradient pass needs a leaf that takes gradients (actpatch loads models
        # with requires_grad off): the embeddings, the least it needs. Our fast path reads
        # detached views of the weights, so this changes nothing on our side.
        for embedding in (hf_model.transformer.wte, hf_model.transformer.wpe):
            embedding.weight.requires_grad_(True)
        mary, john = int(exp.target_ids[0]), int(exp.wrong_ids[0])  # type: ignore[index]

        def logit_diff(logits: torch.Tensor) -> torch.Tensor:
            return logits[0, -1, mary] - logits[0, -1, john]

        tl_times, scores = [], {}
        for _ in range(args.tl_repeats):
            t0 = time.perf_counter()
            scores = attribution_patch(
                bridge, exp.clean_tokens, exp.corrupt_tokens, logit_diff
            ).node_scores
            tl_times.append(time.perf_counter() - t0)
        tl_time = min(tl_times)
        ref_z = torch.zeros_like(z.estimate)
        ref_mlp = torch.zeros_like(mlp.estimate)
        for node, value in scores.items():
            if node.kind == "attn_head_out":
                ref_z[node.layer, node.position, node.head] = value
            elif node.kind == "mlp_out":
                ref_mlp[node.layer, node.position] = value
        diff = max(
            float((z.estimate - ref_z).abs().max()), float((mlp.estimate - ref_mlp).abs().max())
        )
        scale = max(float(ref_z.abs().max()), float(ref_mlp.abs().max()))
        print(
            f"  TransformerLens   {tl_time:8.3f} s  (attribution_patch: heads x positions and "
            f"MLPs, best of {len(tl_times)})"
        )
        print(f"  speed-up          {tl_time / ours:8.1f}x   (target 10x; same process, threads)")
        print(
            f"  max |difference|  {diff:.2e} in logit difference (largest score {scale:.3g}; "
            f"relative {diff / scale:.1e})"
        )

    exact_times = []
    for _ in range(max(1, args.repeats // 2)):
        fresh = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
        t0 = time.perf_counter()
        for component in COMPONENTS:
            actpatch.sweep(fresh, component, "logit_diff")
        exact_times.append(time.perf_counter() - t0)
    print(f"  exact sweeps      {best(exact_times)}  (actpatch.sweep of the same cells)")

    star_times = []
    for _ in range(max(1, args.repeats // 2)):
        fresh = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
        t0 = time.perf_counter()
        attribute_components(fresh, COMPONENTS, "atp*", "denoising", "logit_diff")
        star_times.append(time.perf_counter() - t0)
    print(
        f"  AtP*              {best(star_times)}  (GradDrop: {model.n_layers} more backward passes)"
    )

    # A batch of pairs: one forward and one backward for all of them.
    data = ioi(args.pairs, seed=0, same_length=True)
    batch = actpatch.Experiment(model, data.clean, data.corrupt, data.target, data.wrong)
    times = []
    for _ in range(max(1, args.repeats // 2)):
        fresh = actpatch.Experiment(model, data.clean, data.corrupt, data.target, data.wrong)
        t0 = time.perf_counter()
        attribute_components(fresh, COMPONENTS, "atp", "denoising", "logit_diff")
        times.append(time.perf_counter() - t0)
    print(
        f"\nAtP of the same components on {batch.n_pairs} IOI pairs of one template "
        f"({batch.clean_tokens.shape[1]} tokens)"
    )
    print(f"  actpatch          {best(times)}")
    if not args.skip_tl:
        targets, wrongs = batch.target_ids.tolist(), batch.wrong_ids.tolist()  # type: ignore[union-attr]
        index = {"row": 0}

        def pair_logit_diff(logits: torch.Tensor) -> torch.Tensor:
            # attribution_patch scores each pair on its own, in order; this metric follows it
            i = index["row"] // 2 % len(targets)
            index["row"] += 1
            return logits[0, -1, targets[i]] - logits[0, -1, wrongs[i]]

        t0 = time.perf_counter()
        attribution_patch(bridge, batch.clean_tokens, batch.corrupt_tokens, pair_logit_diff)
        tl_time = time.perf_counter() - t0
        print(f"  TransformerLens   {tl_time:8.3f} s  (attribution_patch, one pair at a time)")
        print(f"  speed-up          {tl_time / min(times):8.1f}x   (target 10x)")


if __name__ == "__main__":
    main()
