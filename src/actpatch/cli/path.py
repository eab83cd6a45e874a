"""`actpatch path`: path patching (Wang et al. 2022), each sender's effect through receivers."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    direction,
    experiments,
    load_for,
    progress_bar,
    request,
)
from actpatch.cli.report import report
from actpatch.cli.tables import fmt, node_text, role, top_heading


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "path", help="path patching (Wang et al. 2022): each sender's effect through receivers"
    )
    add_common(p)
    add_experiment(p)
    p.add_argument(
        "--senders",
        default="all",
        help="'all' (every head) or heads and MLPs, e.g. '9.9,10.0,m0' (default all)",
    )
    p.add_argument(
        "--receivers",
        default="logits",
        help="'logits', or heads' inputs and MLPs, e.g. '9.9.q,9.6.q' or '7.3.v,m8'; on a "
        "grouped-query model 'a7.kv1<k>' is key/value head 1's input (default logits)",
    )
    p.add_argument(
        "--freeze-mlps", action="store_true", help="freeze every MLP too, not only the heads"
    )
    p.add_argument("--top", type=int, default=10, help="how many top senders to list")
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import path_heatmap
    from actpatch.patching.paths import path_patch_many

    model = load_for(args)
    result = path_patch_many(
        experiments(args, model),
        args.senders,
        args.receivers,
        freeze_mlps=args.freeze_mlps,
        metric=args.metric,
        direction=direction(args),
        progress=progress_bar("path patching"),
    )
    return report(
        args,
        result.to_dict(),
        file="path.json",
        text=lambda: print_path(result, args.top),
        kind="path",
        request=request(
            args,
            model,
            senders=args.senders,
            receivers=args.receivers,
            freeze_mlps=args.freeze_mlps or None,
        ),
        warnings=result.warnings,
        plots={"path.png": lambda p: path_heatmap(result, p)} if result.all_heads else {},
    )


def print_path(result: Any, top: int) -> None:
    """What ran, the sender table (when every head sends), and the `top` senders."""
    frozen = " (MLPs frozen)" if result.freeze_mlps else ""
    print(
        f"path patching ({result.direction}){frozen} on {result.model} ({result.backend} path): "
        f"{result.n_pairs} pair(s), metric {result.metric}"
    )
    print(f"receivers: {', '.join(result.receivers)}")
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    if result.note:
        print(f"note: {result.note}")
    pct = not bool(result.normalized.isnan().all())
    if result.all_heads:
        print()
        table = result.normalized if pct else result.raw
        print(
            f"normalized {result.metric}, % (clean = 100, corrupted = 0) by sender layer x head"
            if pct
            else f"raw {result.metric} by sender layer x head"
        )
        print("      " + "".join(f"{'H' + str(h):>7}" for h in range(table.shape[1])))
        for layer in range(table.shape[0]):
            print(f"  L{layer:<3}" + "".join(f"{fmt(float(v), pct):>7}" for v in table[layer]))
    print(f"\n{top_heading(f'top {top} senders', result.warnings)}:")
    for name, value in result.top(top):
        shown = f"{value * 100:+.1f}%" if pct else f"{value:+.4f}"
        print(f"  {node_text(name) + role(result.model, name):<28} {shown}")
    print(f"\npath patching took {result.seconds:.2f} s")
