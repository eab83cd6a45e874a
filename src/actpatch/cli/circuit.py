"""`actpatch circuit edges|evaluate`: edge attribution and circuit evaluation.

Each subcommand is its own module (`circuit_edges`, `circuit_evaluate`); this one gathers them
under `circuit`.
"""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli import circuit_edges, circuit_evaluate

SUBCOMMANDS = {"edges": circuit_edges, "evaluate": circuit_evaluate}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("circuit", help="edge attribution and circuit evaluation")
    what = p.add_subparsers(dest="circuit_command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(what)


def run(args: argparse.Namespace) -> int:
    return SUBCOMMANDS[args.circuit_command].run(args)
