"""What every view needs from an experiment: checked layer and head numbers, one pair's tokens
without padding, the warnings a sweep of the same experiment would carry, and both runs cached
in one batched forward."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from actpatch.errors import InputError
from actpatch.patching import guardrails
from actpatch.patching.experiment import Experiment, Run
from actpatch.patching.metrics import from_logits
from actpatch.patching.options import check_index, check_metric
from actpatch.patching.results import ResultWarning


def check_layer(exp: Experiment, layer: Any) -> int:
    n = exp.runner.n_layers
    return check_index(n, "layer", layer, f"{exp.model.name} has layers 0 to {n - 1}")


def check_heads(exp: Experiment, heads: Iterable[Any]) -> list[int]:
    n = exp.runner.n_heads
    allowed = f"{exp.model.name} has heads 0 to {n - 1} per layer"
    out = [check_index(n, "head", h, allowed) for h in heads]
    if not out:
        raise InputError("No head given: give at least one.", field="head")
    return out


def check_pair(exp: Experiment, pair: Any) -> int:
    n = exp.n_pairs
    return check_index(n, "pair", pair, f"the experiment has pairs 0 to {n - 1}")


def padding(exp: Experiment, pair: int) -> int:
    """How many left-padding positions pair `pair`'s rows carry (0 when nothing is padded)."""
    return 0 if exp.pad is None else int(exp.pad[pair])


def pair_tokens(exp: Experiment, which: str, pair: int = 0) -> list[str]:
    """Pair `pair`'s clean or corrupted token strings, padding left out."""
    tokens = exp.clean_tokens if which == "clean" else exp.corrupt_tokens
    return exp.model.to_str_tokens(tokens[pair, padding(exp, pair) :])


def both_runs(exp: Experiment, names: Iterable[str]) -> tuple[Run, Run]:
    """The clean and corrupted runs caching `names` (one batched forward when they share a
    length, as the engine runs them)."""
    wanted = list(names)
    return exp.run("clean", wanted), exp.run("corrupt", wanted)


def default_metric(exp: Experiment) -> str:
    return check_metric(None, exp.wrong_ids is not None)


def warnings(exp: Experiment, metric: str | None = None) -> list[ResultWarning]:
    """The warnings a sweep of `exp` would carry (no behaviour, identical prompts, the bridge
    path instead of the fast one, ...), measured with `metric` (the default one if None)."""
    metric = metric or default_metric(exp)
    values = []
    with torch.inference_mode():
        for which in ("clean", "corrupt"):
            logits = exp.logits(which)
            values.append(float(from_logits(metric, logits, exp.target_ids, exp.wrong_ids).mean()))
    return guardrails.check(exp, metric, values[0], values[1])
