"""How many operators a sweep or AtP dispatches: the launch count a GPU waits on, read on a CPU.

On a GPU a small model's sweep is bound by kernel launches (issue 22: a GPT-2-small head sweep
took 20 ms on an H200, about four plain forwards). Each operator PyTorch dispatches costs the
CPU several microseconds and, on a GPU, usually one launch; so the count is the CPU-side
measure of that cost. This script counts them with a `TorchDispatchMode`, on the random
GPT-2-small-shaped model and the IOI pair (`random_models.py`), each call from a fresh
experiment (its unpatched runs included):

- eager: every operator, and how many are not views (views launch no kernel);
- with `cuda_graphs` on (the same weights; on a CPU a "replay" runs eagerly, so the operators
  inside the recorded runs are counted apart): what a replayed call would still dispatch
  outside its recordings, and how many ran inside them (one replay each on a GPU).

    python benchmarks/count_operators.py [--model gpt2|llama|neox]
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import os
import traceback
from collections.abc import Callable
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from torch.utils._python_dispatch import TorchDispatchMode

import actpatch
from actpatch.patching.attribution import attribute_components
from random_models import CLEAN, CORRUPT, build

VIEWS = {
    "aten.alias", "aten.as_strided", "aten.detach", "aten.expand", "aten.permute",
    "aten.reshape", "aten.select", "aten.slice", "aten.split", "aten.squeeze", "aten.t",
    "aten.transpose", "aten.unbind", "aten.unsqueeze", "aten.view", "aten._unsafe_view",
}  # fmt: skip
# The functions a CUDA graph records: what they dispatch is one replay on a GPU.
RECORDED = {"_patched_run", "run_with_cache", "from_cache"}
CALLS: dict[str, Callable[[actpatch.Experiment], Any]] = {
    "head sweep (z)": lambda e: actpatch.sweep(e, "z"),
    "resid_pre sweep": lambda e: actpatch.sweep(e, "resid_pre"),
    "AtP over z": lambda e: attribute_components(e, ["z"], "atp", "denoising", "logit_diff"),
}


class Count(TorchDispatchMode):
    """Counts operators: (inside a recorded run?, a view?) -> how many."""

    def __init__(self, split: bool) -> None:
        super().__init__()
        self.split, self.counts = split, collections.Counter[tuple[bool, bool]]()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        inside = self.split and any(f.name in RECORDED for f in traceback.extract_stack())
        self.counts[(inside, str(func.overloadpacket) in VIEWS)] += 1
        return func(*args, **(kwargs or {}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gpt2", choices=["gpt2", "llama", "neox"])
    args = parser.parse_args()
    eager = build(args.model)
    graphed = dataclasses.replace(eager, cuda_graphs=True)
    print(f"{eager.name}, torch {torch.__version__}; operators dispatched per call")
    for name, call in CALLS.items():
        for model, split in ((eager, False), (graphed, True)):
            call(actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John"))  # warm
            with Count(split) as count:
                call(actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John"))
            c = count.counts
            outside = c[(False, False)] + c[(False, True)]
            if not split:
                print(f"  {name:16s} eager: {outside:5d} ({c[(False, False)]} not views)")
            else:
                inside = c[(True, False)] + c[(True, True)]
                print(
                    f"  {name:16s} cuda_graphs: {outside:5d} outside the recordings "
                    f"({c[(False, False)]} not views), {inside} inside them"
                )


if __name__ == "__main__":
    main()
