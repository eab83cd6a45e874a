"""`actpatch attribute`: estimate every cell by attribution patching (AtP, AtP*), and optionally
measure the estimate against the exact sweep (--compare) or its top cells (--verify)."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    add_option,
    direction,
    experiments,
    load_for,
    progress_bar,
    request,
)
from actpatch.cli.report import report
from actpatch.cli.tables import cell_text, effect_text, print_cells, top_heading
from actpatch.patching.components import COMPONENTS
from actpatch.patching.options import DEFAULT_COMPONENT


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "attribute",
        help="estimate every cell by attribution patching (AtP, AtP*), beside the exact sweep",
    )
    add_common(p)
    add_experiment(p)
    p.add_argument(
        "--component",
        default=DEFAULT_COMPONENT,
        help=f"what to estimate (default {DEFAULT_COMPONENT}); one of {', '.join(COMPONENTS)} "
        "or an alias",
    )
    add_option(p, "--method", "attribution_method")
    p.add_argument(
        "--compare",
        action="store_true",
        help="also run the exact sweep of the same cells and measure the estimate against it",
    )
    p.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="K",
        help="patch exactly the K cells the estimate ranks first",
    )
    p.add_argument("--top", type=int, default=10, help="how many top cells to list")
    p.add_argument(
        "--max-memory",
        default=None,
        help="activations one batched run of --compare's and --verify's exact patches may hold, "
        "e.g. 4GB (default 1GiB on a CPU, half the free memory on a GPU)",
    )
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.patching.attribution import attribute_many
    from actpatch.patching.components import get_component
    from actpatch.plotting import attribution_heatmap, attribution_scatter

    component = get_component(args.component).name
    model = load_for(args)
    pairs = experiments(args, model)  # a dataset's length groups run as one padded batch
    result = attribute_many(
        pairs,
        component,
        args.method,
        direction(args),
        args.metric,
        compare=args.compare,
        verify=args.verify,
        progress=progress_bar(f"{component} attribution"),
        max_memory=args.max_memory,
    )
    stem = f"attribute_{component}_{result.method.replace('*', '_star')}"
    plots = {f"{stem}.png": lambda path: attribution_heatmap(result, path)}
    if result.exact is not None:
        plots[f"{stem}_scatter.png"] = lambda path: attribution_scatter(result, path)
    return report(
        args,
        result.to_dict(),
        file=f"{stem}.json",
        text=lambda: print_attribution(result, component, args.top),
        kind="attribution",
        request=request(
            args,
            model,
            component=component,
            method=args.method,
            compare=args.compare,
            verify=args.verify or None,
        ),
        warnings=result.warnings,
        plots=plots,
    )


def print_attribution(result: Any, component: str, top: int) -> None:
    """What ran, the table of estimates, the `top` cells, and how the estimate held up."""
    name = "AtP*" if result.method == "atp*" else "AtP"
    print(
        f"{name} of {component} ({result.direction}) on {result.model} ({result.backend} path): "
        f"{result.n_pairs} pair(s), metric {result.metric}"
    )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    gap = None if result.normalized.isnan().all() else result.clean - result.corrupt
    if result.unpatched_positions:
        print(f"not patched (no counterpart in the other prompt): {result.unpatched_positions}")
    if result.note:
        print(f"note: {result.note}")
    print()
    values = result.estimate if not gap else result.estimate / gap
    unit = "% of clean - corrupted" if gap else f"change in {result.metric}"
    print(f"estimated effect of each patch ({unit}) by {' x '.join(result.axes)}")
    tokens = [repr(token) for token in result.tokens]
    print_cells(values, result.axes, tokens, "token", bool(gap))
    verified = {tuple(v["cell"]): v["exact"] for v in result.verified}
    exact = result.exact
    print(f"\n{top_heading(f'top {top} cells by {result.score_kind}', result.warnings)}:")
    for cell, value in result.top(top):
        line = f"  {cell_text(result.axes, cell):<14} estimate {effect_text(value, gap):>8}"
        if exact is not None:
            line += f"   exact {effect_text(float(exact[cell]), gap):>8}"
        elif cell in verified:
            line += f"   exact {effect_text(verified[cell], gap):>8} (verified)"
        print(line)
    if result.verified and exact is None:
        print(f"verified: the top {len(result.verified)} cells were patched exactly")
    if result.agreement is not None:
        print_agreement(result, gap)
    print_corrections(result, gap)
    print(f"\ntook {result.seconds:.2f} s")


def print_agreement(result: Any, gap: float | None) -> None:
    """How the estimate agrees with exact patching (--compare), and the cells it misses most."""
    a = result.agreement

    def num(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.3f}"

    print(
        f"\nagreement with exact patching over {a['cells']} cells: Pearson {num(a['pearson'])}"
        f", Spearman {num(a['spearman'])}, sign {num(a['sign_agreement'])} (of "
        f"{a['sign_cells']} cells with an effect), top-{a['top_k']} overlap "
        f"{num(a['top_k_overlap'])}"
    )
    if result.agreement_atp is not None:
        b = result.agreement_atp
        print(
            f"plain AtP for comparison: Pearson {num(b['pearson'])}, Spearman "
            f"{num(b['spearman'])}, top-{b['top_k']} overlap {num(b['top_k_overlap'])}"
        )
    print("cells the estimate misses most (exact vs estimate):")
    for miss in a["misses"][:5]:
        print(
            f"  {cell_text(result.axes, miss['cell']):<14} exact "
            f"{effect_text(miss['exact'], gap):>8}   estimate "
            f"{effect_text(miss['estimate'], gap):>8}"
        )


def print_corrections(result: Any, gap: float | None) -> None:
    """The cells AtP* corrects most, listed only where a correction changes a number as printed."""
    scale = gap and abs(gap)
    corrections = [
        c
        for c in result.corrections
        if effect_text(c["atp_star"], gap) != effect_text(c["atp"], gap)
        or effect_text(c["score"], scale) != effect_text(abs(c["atp"]), scale)
    ]
    if result.corrections and not corrections:
        print(
            "AtP* changes no estimate or ranking score at the precision shown: its QK fix and "
            "GradDrop agree with AtP here."
        )
    if corrections:
        print("cells AtP* corrects most: estimate AtP -> AtP*, ranking |AtP| -> GradDrop score")
        for c in corrections[:5]:
            line = (
                f"  {cell_text(result.axes, c['cell']):<14} {effect_text(c['atp'], gap):>8} -> "
                f"{effect_text(c['atp_star'], gap):>8}   "
                f"{effect_text(abs(c['atp']), scale):>7} -> "
                f"{effect_text(c['score'], scale):>7}"
            )
            if "exact" in c:
                line += f"   exact {effect_text(c['exact'], gap):>8}"
            print(line)
