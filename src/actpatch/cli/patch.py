"""`actpatch patch`: patch one head (or one cell) and show what it does to the answer."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    direction,
    load_for,
    one_experiment,
    request,
)
from actpatch.cli.report import report
from actpatch.cli.tables import cell_text, normalized_text, pct
from actpatch.patching.components import COMPONENTS
from actpatch.patching.options import DEFAULT_COMPONENT


def add_parser(sub: Any) -> None:
    p = sub.add_parser("patch", help="patch one head (or one cell) and show the effect")
    add_common(p)
    add_experiment(p)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, default=None)
    p.add_argument("--pos", type=int, default=None, help="position, for by-position components")
    p.add_argument(
        "--component",
        default=DEFAULT_COMPONENT,
        help=f"what to patch (default {DEFAULT_COMPONENT}: a head's output); one of "
        f"{', '.join(COMPONENTS)}",
    )
    p.add_argument("--top", type=int, default=10, help="how many top tokens to show")
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.patching.engine import patch

    model = load_for(args)
    pairs = [one_experiment(args, model, "A single patch")]
    result = patch(
        pairs[0],
        args.layer,
        args.head,
        args.pos,
        component=args.component,
        metric=args.metric,
        direction=direction(args),
        top_k=args.top,
    )
    asked = request(
        args, model, component=args.component, layer=args.layer, head=args.head, pos=args.pos
    )
    return report(
        args,
        result.to_dict(),
        file="patch.json",
        text=lambda: print_patch(result, pairs[0].target_strs[0]),
        kind="patch",
        request=asked,
        warnings=result.warnings,
        indent=2,
        list_saved=False,
    )


def print_patch(result: Any, target: str) -> None:
    """The patch's effect on P(target), its rank and the metric, then the top tokens of each run."""
    where = cell_text(list(result.index), list(result.index.values()))  # L8H11, L3 P5
    print(
        f"{result.component} patch at {where} ({result.direction}) on {result.model} "
        f"({result.backend} path)"
    )
    print(
        f"\n  P({target!r})  clean {result.clean_prob:.4g}   corrupted {result.corrupt_prob:.4g}"
        f"   patched {result.patched_prob:.4g}"
    )
    print(f"  recovery    {normalized_text(result.recovery_pct / 100)} of P({target!r})")
    print(
        f"  rank        {result.clean_rank} (clean) -> {result.corrupt_rank} (corrupted) -> "
        f"{result.patched_rank} (patched)"
    )
    if result.metric != "prob":
        print(
            f"  {result.metric:<11} clean {result.metric_clean:+.4f}   corrupted "
            f"{result.metric_corrupt:+.4f}   patched {result.metric_patched:+.4f}"
        )
    print(
        f"  normalized  {normalized_text(result.metric_normalized)} of {result.metric} "
        "(clean = 100%, corrupted = 0%)"
    )
    if result.note:
        print(f"  note        {result.note}")
    if result.patched_positions != list(range(len(result.tokens))):
        print(
            f"  patched     positions {result.patched_positions} of the corrupted run "
            f"{result.tokens} (aligned prefix and suffix)"
        )
    print(f"\n  {'clean':<24}{'corrupted':<24}patched")
    for c, k, p in zip(result.top_clean, result.top_corrupt, result.top_patched, strict=True):
        row = [f"{t.token!r:<15} {pct(t.prob)}" for t in (c, k, p)]
        print(("  " + "  ".join(f"{r:<22}" for r in row)).rstrip())
