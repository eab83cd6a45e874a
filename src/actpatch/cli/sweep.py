"""`actpatch sweep`: patch (or ablate) every layer x head or layer x position cell."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    add_option,
    add_workers,
    direction,
    experiments,
    load_for,
    progress_bar,
    request,
    spread,
)
from actpatch.cli.report import report
from actpatch.cli.tables import cell_text, print_cells, top_heading
from actpatch.patching.components import ALIASES, COMPONENTS
from actpatch.patching.options import check_ablation_direction


def add_parser(sub: Any) -> None:
    p = sub.add_parser("sweep", help="patch every layer x head (or layer x position) cell")
    add_common(p)
    add_experiment(p)
    p.add_argument(
        "what",
        help=f"what to sweep: a component ({', '.join(COMPONENTS)}) or an alias "
        f"({', '.join(f'{a} = {t}' for a, t in ALIASES.items())})",
    )
    p.add_argument("--component", default=None, help="overrides WHAT, e.g. --component mlp_out")
    p.add_argument("--top", type=int, default=10, help="how many top cells to list")
    p.add_argument(
        "--max-memory",
        default=None,
        help="activations one batched run may hold, e.g. 4GB (default 1GiB on a CPU, half the "
        "free memory on a GPU); a sweep that needs more runs in several batches, slower rather "
        "than out of memory",
    )
    add_option(p, "--positions", "positions", what="a position-resolved sweep's columns: ")
    add_option(p, "--batching", "batching", what="a dataset of several token lengths: ")
    add_workers(p)
    add_keep(p)
    add_option(
        p,
        "--ablate",
        "ablation",
        what="ablate each cell in the clean run instead of patching (with --dataset, the mean "
        "and the resampling are over its pairs): ",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of --ablate resample")


def run(args: argparse.Namespace) -> int:
    from actpatch.patching.components import get_component
    from actpatch.patching.engine import sweep_many
    from actpatch.plotting import heatmap

    component = get_component(args.component or args.what).name
    check_ablation_direction(args.ablate, args.direction)
    model = load_for(args)
    pairs = experiments(args, model)
    result: Any
    if args.ablate:
        from actpatch.patching.ablation import ablate_many

        result = ablate_many(
            pairs,
            component,
            args.ablate,
            args.metric,
            seed=args.seed,
            progress=progress_bar(f"{component} {args.ablate} ablation"),
            max_memory=args.max_memory,
            **spread(args),
        )
        stem = f"sweep_{component}_{args.ablate}"
        asked = request(args, model, component=component, ablate=args.ablate, seed=args.seed)
    else:
        result = sweep_many(
            pairs,
            component,
            args.metric,
            direction(args),
            positions=args.positions,
            progress=progress_bar(f"{component} sweep"),
            max_memory=args.max_memory,
            batching=args.batching,
            **spread(args),
        )
        stem = f"sweep_{component}"
        asked = request(args, model, component=component, positions=args.positions)
    return report(
        args,
        result.to_dict(),
        file=f"{stem}.json",
        text=lambda: print_sweep(result, component, args.ablate, args.top),
        kind="ablation" if args.ablate else "sweep",
        request=asked,
        warnings=result.warnings,
        plots={f"{stem}.png": lambda path: heatmap(result, path)},
    )


def print_sweep(result: Any, component: str, ablate: str | None, top: int) -> None:
    """What ran, the clean and corrupted metric, the table, and the `top` cells."""
    if ablate:
        print(
            f"{component} {ablate}-ablation sweep on {result.model} ({result.backend} "
            f"path): each cell ablated in the clean run, {result.n_pairs} pair(s), metric "
            f"{result.metric}"
        )
        print(f"ablation value: {result.reference}")
    else:
        print(
            f"{component} sweep ({result.direction}) on {result.model} ({result.backend} path): "
            f"{result.n_pairs} pair(s), metric {result.metric}"
        )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    if result.unpatched_positions:
        print(
            f"not patched (no counterpart in the other prompt): positions "
            f"{result.unpatched_positions}"
        )
    if result.note:
        print(f"note: {result.note}")
    print()
    print_table(result)
    heading = f"top {top} cells (" + ", ".join(result.axes) + ")"
    print(f"\n{top_heading(heading, result.warnings)}:")
    pct = not result.normalized.isnan().all()
    roles = result.position_labels if result.position_convention == "role" else None
    for index, value in result.top(top):
        label = cell_text(result.axes, index, roles)
        shown = f"{value * 100:+.1f}%" if pct else f"{value:+.4f}"
        if pct and result.ci is not None:
            low, high = float(result.ci.low[index]), float(result.ci.high[index])
            shown += f"  [{low * 100:+.1f}, {high * 100:+.1f}]"
        print(f"  {label:<14} {shown}")
    if result.ci is not None and pct:
        print(
            f"  [{int(result.ci.level * 100)}% bootstrap interval over {result.n_pairs} pairs, "
            f"{result.ci.n_boot} resamples]"
        )
    print(f"\nsweep took {result.seconds:.2f} s")


def print_table(result: Any) -> None:
    """The normalized metric (raw where undefined) of every cell, positions by role or token."""
    pct = not bool(result.normalized.isnan().all())
    print(
        f"normalized {result.metric}, % (clean = 100, corrupted = 0)"
        if pct
        else f"raw {result.metric}",
        "by",
        " x ".join(result.axes),
    )
    by_role = result.position_convention == "role"
    labels = result.position_labels if by_role else [repr(t) for t in result.tokens]
    table = result.normalized if pct else result.raw
    print_cells(table, result.axes, labels, "role" if by_role else "token", pct)
