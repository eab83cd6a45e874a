"""`actpatch lens`: the logit lens, what the residual stream predicts at each layer."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    load_for,
    one_experiment,
    request,
)
from actpatch.cli.report import report


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "lens", help="logit lens: the metric, the answer's rank and the top tokens per layer"
    )
    add_common(p)
    add_experiment(p, direction=False)
    p.add_argument("--k", type=int, default=5, help="top tokens per layer (5)")
    p.add_argument("--sublayers", action="store_true", help="also read between attention and MLP")
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.views import logit_lens
    from actpatch.views.plots import lens_chart

    model = load_for(args)
    exp = one_experiment(args, model, "The logit lens")
    result = logit_lens(exp, args.metric, k=args.k, sublayers=args.sublayers)
    return report(
        args,
        result.to_dict(),
        file="lens.json",
        text=lambda: print_lens(result),
        warnings=result.warnings,
        kind="lens",
        request=request(args, model, k=args.k, sublayers=args.sublayers),
        plots={"lens.png": lambda p: lens_chart(result, p)},
    )


def print_lens(result: Any) -> None:
    """Per read-out point: the metric, the answer's rank, its probability and the top tokens."""
    print(
        f"logit lens on {result.model} ({result.backend} path), answer {result.target!r}, "
        f"metric {result.metric}"
    )
    for which, run in (("clean", result.clean), ("corrupted", result.corrupt)):
        print(f"\n{which}:  {'point':<14}{result.metric:>11}{'rank':>7}{'P':>8}  top tokens")
        for i, label in enumerate(result.labels):
            top = " ".join(repr(t) for t in run.top[i])
            print(
                f"  {label:<22}{run.metric[i]:>+11.3f}{run.target_rank[i]:>7}"
                f"{run.target_prob[i]:>8.1%}  {top}"
            )
