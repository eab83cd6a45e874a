"""`actpatch dla`: direct logit attribution, what each head and MLP writes into the answer."""

from __future__ import annotations

import argparse
import textwrap
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
        "dla",
        help="direct logit attribution: each head's, MLP's and the embeddings' direct share of "
        "the answer's logit difference (final position, final norm's scale frozen)",
    )
    add_common(p)
    add_experiment(p, metric=False, direction=False)  # logit_diff (with --wrong) or logit
    p.add_argument("--top", type=int, default=10, help="how many heads to list (10)")
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.views import direct_logit_attribution
    from actpatch.views.plots import dla_heatmap

    model = load_for(args)
    exp = one_experiment(args, model, "Direct logit attribution")
    result = direct_logit_attribution(exp)
    return report(
        args,
        result.to_dict(),
        file="dla.json",
        text=lambda: print_dla(result, args.top),
        warnings=result.warnings,
        kind="dla",
        request=request(args, model),
        plots={"dla.png": lambda p: dla_heatmap(result, p)},
    )


def print_dla(result: Any, top: int) -> None:
    """The head table of the difference, the MLPs, the sums, and the top heads."""
    c, k = result.clean, result.corrupt
    print(
        f"direct logit attribution of {result.metric} on {result.model} ({result.backend} "
        f"path), final position, {result.n_pairs} pair(s)"
    )
    difference = c.heads - k.heads
    n_layers, n_heads = difference.shape
    print(f"\nclean - corrupted, direct {result.metric} by layer x head:")
    for start in range(0, n_heads, 10):
        heads = range(start, min(start + 10, n_heads))
        print("      " + "".join(f"{'H' + str(h):>7}" for h in heads))
        for layer in range(n_layers):
            row = "".join(f"{float(difference[layer, h]):>+7.2f}" for h in heads)
            print(f"  L{layer:<3}{row}")
    print(f"\n  {'':<10}{'clean':>10}{'corrupted':>11}")
    for layer in range(n_layers):
        print(f"  MLP {layer:<6}{float(c.mlp[layer]):>+10.3f}{float(k.mlp[layer]):>+11.3f}")
    rows = (
        ("embed", c.embed, k.embed),
        ("biases", c.const + float(c.attn_bias.sum()), k.const + float(k.attn_bias.sum())),
        ("total", c.total, k.total),
        ("actual", c.actual, k.actual),
    )
    for name, a, b in rows:
        print(f"  {name:<10}{a:>+10.3f}{b:>+11.3f}")
    ranked = sorted(
        (
            (float(difference[layer, h]), layer, h)
            for layer in range(n_layers)
            for h in range(n_heads)
        ),
        key=lambda t: -abs(t[0]),
    )
    print(f"\ntop {top} heads by |clean - corrupted|:")
    for value, layer, h in ranked[:top]:
        print(f"  L{layer}H{h:<4} {value:+.3f}")
    print("\n" + textwrap.fill(f"note: {result.norm_note}", width=96))
