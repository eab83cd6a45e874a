"""`actpatch attention`: where a head attends, on the clean and corrupted prompts."""

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
        "attention", help="a head's attention pattern, clean and corrupted (top keys per query)"
    )
    add_common(p)
    add_experiment(p, metric=False, direction=False)
    p.add_argument("--layer", type=int, required=True)
    p.add_argument("--head", type=int, required=True, help="the (query) head")
    p.add_argument("--pair", type=int, default=0, help="which prompt pair of a dataset (0)")
    p.add_argument("--top", type=int, default=3, help="key positions listed per query (3)")
    add_keep(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.views import attention_pattern
    from actpatch.views.plots import attention_heatmap

    model = load_for(args)
    exp = one_experiment(args, model, "An attention pattern")
    result = attention_pattern(exp, args.layer, args.head, pair=args.pair)
    name = f"attention_L{args.layer}H{args.head}"
    return report(
        args,
        result.to_dict(),
        file=f"{name}.json",
        text=lambda: print_attention(result, args.top),
        warnings=result.warnings,
        kind="attention",
        request=request(args, model, layer=args.layer, head=args.head, pair=args.pair),
        plots={f"{name}.png": lambda p: attention_heatmap(result, p)},
    )


def print_attention(result: Any, top: int) -> None:
    """Per query position, the key positions it attends most, clean then corrupted."""
    kv = result.kv_heads[0]
    group = f" (key/value head {kv})" if kv != result.head else ""
    where = f"{result.model} ({result.backend} path)"
    print(f"attention of L{result.layer}H{result.head}{group} on {where}")
    for which, tokens in (("clean", result.tokens), ("corrupted", result.corrupt_tokens)):
        print(f"\n{which}: query -> top keys (weight)")
        rows = result.top_attended("clean" if which == "clean" else "corrupt", k=top)
        for q, row in enumerate(rows):
            keys = "  ".join(f"{k}:{tokens[k]!r} {w:.0%}" for k, w in row)
            print(f"  {q:>3}:{tokens[q]!r:<14} {keys}")
