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

Then the same head sweep over `--workers-dataset` (ioi:256) on Ray workers
(`actpatch.patching.workers`): in this process, on 1 worker and on 2, each the best of
`--repeats` runs with the workers already up (starting Ray and loading the model on each worker
is timed apart, once), with the largest difference from this process's per-pair values (0: the
same numbers). The workers are local processes with the machine's CPUs shared among them, so on
a machine of two cores two workers have one core each where one process had two.

    python benchmarks/bench_datasets.py [--model demo] [--dataset ioi:64] [--repeats 5]
                                        [--threads N] [--workers-dataset ioi:256]
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
    parser.add_argument("--workers-dataset", default="ioi:256", help="'' to skip the workers")
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
    if args.workers_dataset:
        bench_workers(model, args.workers_dataset, args.repeats)


def bench_workers(model: actpatch.LoadedModel, dataset: str, repeats: int) -> None:
    """The head sweep of `dataset` in this process and on 1 and 2 Ray workers."""
    try:
        import ray
    except ImportError:
        print("\nworkers: Ray is not installed (pip install 'actpatch[ray]'): skipped")
        return
    from actpatch.patching import workers

    data = load_dataset(dataset)
    groups = dataset_experiments(model, data)
    print(
        f"\nhead sweep of {dataset} ({len(data)} pairs, {len(groups)} length groups) on Ray "
        f"{ray.__version__} workers, {os.cpu_count()} CPUs; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    for batching in ("auto", "grouped"):
        print(f"  batching {batching}:")
        for n in (1, 2):
            t0 = time.perf_counter()
            pool = workers.pool_for(model, n, None)
            pool.grow(len(groups))  # Ray up, the model loaded on each worker
            print(
                f"    ({n} worker(s) of {pool.threads} torch thread(s) each started in "
                f"{time.perf_counter() - t0:.1f} s: Ray and the model on each; this process "
                f"{torch.get_num_threads()} threads)"
            )
            best = {"here": float("inf"), "workers": float("inf")}
            results = {}
            for _ in range(repeats):
                for where in best:  # interleaved, so that load changes hit both alike
                    experiments = dataset_experiments(model, data)
                    t0 = time.perf_counter()
                    results[where] = actpatch.sweep_many(
                        experiments, "z", batching=batching, workers=n if where != "here" else None
                    )
                    best[where] = min(best[where], time.perf_counter() - t0)
            here, there = results["here"].per_pair, results["workers"].per_pair
            assert here is not None and there is not None
            diff = float((there - here).abs().nan_to_num().max())
            print(
                f"    {n} worker{'s' if n > 1 else ' '} {best['workers']:7.3f} s, this process "
                f"{best['here']:7.3f} s (best of {repeats}, interleaved): "
                f"{best['here'] / best['workers']:5.2f}x this process's speed, max |difference| "
                f"{diff:.1e}  [{results['workers'].batching_note}]"
            )
    workers.release_workers()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
