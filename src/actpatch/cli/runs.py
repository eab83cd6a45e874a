"""`actpatch runs`: the run history (`actpatch.history`): list, show, export, pin or delete runs.

A pinned run is one retention never deletes (the server's HISTORY_MAX_RUNS and HISTORY_MAX_MB
bound only the unpinned ones); `runs list` marks it."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from actpatch.cli.report import write_export


def add_parser(sub: Any) -> None:
    p = sub.add_parser("runs", help="the run history: list, show, export, pin or delete runs")
    what = p.add_subparsers(dest="runs_command", required=True)
    listing = what.add_parser("list", help="the most recent runs first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--json", action="store_true")
    show = what.add_parser("show", help="one run's request and result (JSON)")
    show.add_argument("id", type=int)
    export = what.add_parser("export", help="write a run as csv, json, png, svg, ipynb")
    export.add_argument("id", type=int)
    export.add_argument("file", type=Path, help="the file to write; its suffix is the format")
    pin = what.add_parser("pin", help="pin a run: retention never deletes it")
    pin.add_argument("id", type=int)
    unpin = what.add_parser("unpin", help="unpin a run: retention may delete it again")
    unpin.add_argument("id", type=int)
    delete = what.add_parser("delete", help="delete one run")
    delete.add_argument("id", type=int)


def run(args: argparse.Namespace) -> int:
    from actpatch.history import History, RunNotFoundError, short_model_name

    history = History()
    try:
        if args.runs_command == "list":
            runs = history.list(args.limit)
            if args.json:
                print(json.dumps([r.summary() for r in runs], indent=2))
                return 0
            if not runs:
                print(f"no runs in {history.path} (keep one with --save)")
                return 0
            print(f"runs in {history.path}, most recent first (`actpatch runs show ID`: all):")
            for r in runs:
                # The title whole (kind, model's short name, what, prompts): a long one wraps.
                seconds = f"{r.seconds:.2f} s" if r.seconds is not None else ""
                model = short_model_name(r.model) if r.model else ""
                partial = "  (partial)" if not r.complete else ""
                pinned = "  (pinned)" if r.pinned else ""
                print(
                    f"{r.id:>5}  {r.created_at}  {seconds:>8}  {r.kind} · {model} · "
                    f"{r.label}{partial}{pinned}"
                )
        elif args.runs_command == "show":
            print(json.dumps(history.get(args.id).to_dict(), indent=2))
        elif args.runs_command == "export":
            stored = history.get(args.id)
            write_export(args.file, stored.kind, stored.request, stored.result)
            print(f"wrote run {args.id} to {args.file}")
        elif args.runs_command in ("pin", "unpin"):
            history.pin(args.id, args.runs_command == "pin")
            if args.runs_command == "pin":
                print(f"pinned run {args.id}: retention never deletes it")
            else:
                print(f"unpinned run {args.id}: retention may delete it again")
        else:
            history.delete(args.id)
            print(f"deleted run {args.id}")
    except RunNotFoundError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0
