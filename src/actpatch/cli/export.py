"""`actpatch export`: write a model (e.g. the bundled demo) as a Hugging Face-format folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from actpatch.cli.common import load


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "export", help="write a model (e.g. the bundled demo) as a Hugging Face-format folder"
    )
    p.add_argument("folder", type=Path, help="where to write config, weights and tokenizer")
    p.add_argument("--model", default=None, help="model to export (e.g. demo)")


def run(args: argparse.Namespace) -> int:
    model = load(args.model)
    args.folder.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(str(args.folder))
    model.tokenizer.save_pretrained(str(args.folder))
    print(f"wrote {model.name} ({model.n_layers} layers x {model.n_heads} heads) to {args.folder}")
    return 0
