"""The logit lens: what the residual stream predicts at each layer.

The residual stream before each block (`resid_pre 0` is the embeddings), and after the last
block, is read through the final norm (with each point's own scale, as the model would read it
if the remaining blocks added nothing) and the unembedding, at the final position. Per point:
the metric (the experiment's: logit difference, probability, ...), the answer's rank and
probability, and the top tokens. The last point, `resid_post L-1`, is the model's own output.
With `sublayers`, the stream between attention and MLP (`resid_mid`) is read too (a
parallel-residual model has none).
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from actpatch.errors import InputError
from actpatch.patching.experiment import Experiment, check_experiment
from actpatch.patching.metrics import from_logits
from actpatch.patching.options import check_metric
from actpatch.views.common import both_runs, pair_tokens, warnings
from actpatch.views.results import LensResult, LensRun


def _points(exp: Experiment, sublayers: bool) -> list[tuple[str, int]]:
    runner = exp.runner
    names = []
    has_mid = "resid_mid" in runner.hook_names
    for layer in range(runner.n_layers):
        names.append(("resid_pre", layer))
        if sublayers and has_mid:
            names.append(("resid_mid", layer))
    names.append(("resid_post", runner.n_layers - 1))
    return names


def _read_out(exp: Experiment, resid: Tensor) -> Tensor:
    """Logits (float32) of residual streams (n, d_model) through the final norm and unembedding."""
    runner = exp.runner
    if exp.backend == "fast":
        return runner.unembed(resid)
    bridge = runner.bridge
    with runner.lock, torch.inference_mode():
        return bridge.unembed(bridge.ln_final(resid[:, None, :]))[:, 0].float()


def _lens_run(
    exp: Experiment,
    which: str,
    names: list[str],
    points: list[tuple[str, int]],
    metric: str,
    k: int,
) -> LensRun:
    run = exp.run(which, names)
    stack = torch.stack([run.cache[p][:, -1] for p in points])  # (points, pairs, d_model)
    n_points, pairs, d = stack.shape
    with torch.inference_mode():
        logits = _read_out(exp, stack.reshape(-1, d))  # (points * pairs, d_vocab)
        t = exp.target_ids.repeat(n_points)
        w = exp.wrong_ids.repeat(n_points) if exp.wrong_ids is not None else None
        values = {
            m: from_logits(m, logits, t, w).view(n_points, pairs) for m in {metric, "rank", "prob"}
        }
        top = logits.view(n_points, pairs, -1)[:, 0].topk(min(k, logits.shape[-1]), dim=-1).indices
    return LensRun(
        metric=[float(v) for v in values[metric].mean(-1)],
        target_rank=[int(r) for r in values["rank"][:, 0]],
        target_prob=[float(p) for p in values["prob"][:, 0]],
        top=[exp.model.to_str_tokens(row) for row in top],
    )


def logit_lens(
    exp: Experiment, metric: str | None = None, k: int = 5, sublayers: bool = False
) -> LensResult:
    """The logit lens of both runs at the final position (module docstring)."""
    t0 = time.perf_counter()
    check_experiment(exp)
    metric = check_metric(metric, exp.wrong_ids is not None)
    if k < 1:
        raise InputError(f"k must be at least 1 (got {k}).", field="k")
    points = _points(exp, sublayers)
    names = sorted({name for name, _ in points})
    both_runs(exp, names)  # one batched forward
    runs = {
        which: _lens_run(exp, which, names, points, metric, k) for which in ("clean", "corrupt")
    }
    return LensResult(
        model=exp.model.name,
        backend=exp.backend,
        devices=exp.model.devices,
        metric=metric,
        labels=[f"{name} {layer}" for name, layer in points],
        tokens=pair_tokens(exp, "clean"),
        target=exp.target_strs[0],
        clean=runs["clean"],
        corrupt=runs["corrupt"],
        n_pairs=exp.n_pairs,
        warnings=warnings(exp, metric),
        seconds=time.perf_counter() - t0,
    )
