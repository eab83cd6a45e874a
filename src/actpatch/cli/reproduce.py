"""`actpatch reproduce`: reproduce published findings (`actpatch.reproduce`), ours beside them."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from actpatch.cli.report import report


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "reproduce", help="reproduce published findings, with our numbers beside them"
    )
    p.add_argument("study", choices=["ioi"], help="ioi: TransformerLens's IOI demo")
    p.add_argument(
        "--model",
        default=None,
        help="the model to run (default gpt2, GPT-2 small, the model the findings are about)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--references",
        action="store_true",
        help="show GPT-2 small's published values on another model too (default: only on GPT-2 "
        "small; other models get their own findings, without reference numbers)",
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout")
    p.add_argument("--out", type=Path, default=None, help="folder to save JSON in")


def run(args: argparse.Namespace) -> int:
    from actpatch.reproduce import reproduce_ioi

    found = reproduce_ioi(args.model, device=args.device, references=args.references or None)
    return report(
        args, found.to_dict(), file="reproduce_ioi.json", text=lambda: print(found.text()), indent=2
    )
