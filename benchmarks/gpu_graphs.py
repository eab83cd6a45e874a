"""bench_gpu.py's CUDA graph row: the GPT-2-shaped head sweep with `cuda_graphs` on.

Measures, on the same weights as the eager sweep (the model object copied with the setting on,
so it has its own recordings): the first sweep (which records the graph), the steady state
(fresh experiments of the same prompt pair, replaying it), the largest difference from the
eager sweep, the kernels one replayed sweep launches against the eager one, and AtP over the
head sweep's own cells (z), eager and with its gradient pass replayed, against the sweep:
issue 22's targets (head sweep <= 8 ms on one H100/H200; AtP over the same cells no slower than
the exact sweep). On a CPU there are no CUDA graphs: the replay runs eagerly on its buffers,
and the row says the figures check only that the wiring gives the same numbers.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import actpatch
from actpatch.models import LoadedModel
from actpatch.patching import runners
from actpatch.patching.attribution import attribute_components
from actpatch.patching.graphs import replays_of
from gpu_baselines import experiment, launches, max_diff, ms


def graphs_row(bench: Any, model: LoadedModel, t_z: float, z: actpatch.SweepResult) -> str:
    """The row's text; `t_z`, `z`: the eager head sweep's median time and result."""
    graphed = dataclasses.replace(model, cuda_graphs=True)

    def sweep(exp: actpatch.Experiment) -> actpatch.SweepResult:
        return actpatch.sweep(exp, "z", "logit_diff")

    exp = experiment(graphed)
    bench.sync()
    t0 = time.perf_counter()
    sweep(exp)
    bench.sync()
    t_first = time.perf_counter() - t0
    t_graph, replayed = bench.timed(sweep, lambda: experiment(graphed), warmup=1)
    recordings = replays_of(runners.runner(graphed, "fast"))
    n_eager, _ = launches(lambda: sweep(experiment(model)), bench.cuda, bench.sync)
    n_graph, _ = launches(lambda: sweep(experiment(graphed)), bench.cuda, bench.sync)

    def atp(exp: actpatch.Experiment) -> Any:
        return attribute_components(exp, ["z"], "atp", "denoising", "logit_diff")

    t_atp, eager_atp = bench.timed(atp, lambda: experiment(model))
    t_atp_graph, replayed_atp = bench.timed(atp, lambda: experiment(graphed), warmup=1)
    what = "kernels" if bench.cuda else "operator calls"
    text = (
        f"head sweep {ms(t_graph)} replayed ({ms(t_first)} the first, recording; eager "
        f"{ms(t_z)}: {t_z / t_graph:.2f}x); {recordings.graph_count} CUDA graph(s) kept, "
        f"{recordings.recorded} recorded; {what} per sweep {n_graph} replayed / {n_eager} "
        f"eager; max |normalized difference| from eager "
        f"{max_diff(replayed.normalized, z.normalized):.1e}; AtP over the same cells (z) "
        f"eager {ms(t_atp)} = {t_atp / t_z:.2f}x the eager sweep, replayed {ms(t_atp_graph)} = "
        f"{t_atp_graph / t_graph:.2f}x the replayed sweep (max |difference| from eager AtP "
        f"{max_diff(replayed_atp[0].estimate, eager_atp[0].estimate):.1e}); targets: head "
        "sweep <= 8 ms, AtP <= 1x the sweep"
    )
    if not bench.cuda:
        text += "; no CUDA graphs on cpu: the replays ran eagerly (this checks the wiring only)"
    return text
