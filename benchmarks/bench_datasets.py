"""Time a dataset of mixed token lengths: one sweep per length group against padded batches.

`ioi:64` mixes seven templates of 15 to 21 tokens. `sweep_many` can run it three ways, all
giving the same numbers (tests/patching/test_engine.py holds them equal):
- "grouped": one sweep per length group (seven);
- "auto": the groups that recompute the same number of positions (from the first differing
  token to the end) left-padded into one batch each, padding adding no recomputed position;
- "padded": every group left-padded into one batch, recomputing the longest group's positions
  for every pair.
For the head sweep (z, every position) and the resid_pre sweep by role, on the demo model, it
prints each way's best time of several runs (fresh experiments each run, so every run pays its
own clean and corrupted forwards), the ratio to grouped, and the largest difference from the
grouped per-pair values, all in one process.

    python benchmarks/bench_datasets.py [--model demo] [--dataset ioi:64] [--repeats 5]
                                        [--threads N]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import actpatch
from actpatch.datasets import load_dataset
from actpatch.patching.engine import recomputed
from actpatch.patching.experiment import dataset_experiments

WAYS = ("grouped", "auto", "padded")
SWEEPS = (("z", "head sweep (z, all positions)"), ("resid_pre", "resid_pre sweep by role"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--dataset", default="ioi:64")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = actpatch.load_model(args.model)
    data = load_dataset(args.dataset)
    groups = dataset_experiments(model, data)
    print(
        f"model: {model.name} ({model.n_layers} layers, {model.n_heads} heads, d_model "
        f"{model.d_model}); torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"dataset: {args.dataset}, {len(data)} pairs in {len(groups)} length groups "
        "(tokens x pairs, positions recomputed): "
        + ", ".join(f"{int(e.clean_tokens.shape[1])}x{e.n_pairs} ({recomputed(e)})" for e in groups)
    )
    for component, title in SWEEPS:
        best = {way: float("inf") for way in WAYS}
        results = {}
        for _ in range(args.repeats):
            for way in WAYS:  # interleaved, so that load changes hit every way alike
                experiments = dataset_experiments(model, data)
                t0 = time.perf_counter()
                results[way] = actpatch.sweep_many(experiments, component, batching=way)
                best[way] = min(best[way], time.perf_counter() - t0)
        print(f"\n{title}")
        reference = results["grouped"].per_pair
        assert reference is not None
        for way in WAYS:
            result = results[way]
            assert result.per_pair is not None
            diff = float((result.per_pair - reference).abs().nan_to_num().max())
            print(
                f"  {way:8s} {best[way]:7.3f} s  (best of {args.repeats}) "
                f"{best['grouped'] / best[way]:5.2f}x grouped's speed  "
                f"max |difference| {diff:.1e}  [{result.batching}: {result.batching_note}]"
            )
    print(f"\nload average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
