"""The one tail every command's result goes through: files, history, warnings, then the output.

    report(args, payload, file="sweep_z.json", text=lambda: print_sweep(result), ...)

In this order: the JSON saved under --out (with any plots), the run kept by --save and written
by --export, the result's warnings on stderr (each naming the option at fault), and then either
the JSON on stdout (--json) or the command's text followed by the files saved.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from actpatch.cli.common import with_flag


def report(
    args: argparse.Namespace,
    payload: dict[str, Any],
    *,
    file: str,
    text: Callable[[], None],
    kind: str | None = None,
    request: dict[str, Any] | None = None,
    warnings: Sequence[Any] = (),
    plots: Mapping[str, Callable[[Path], Path]] | None = None,
    indent: int | None = None,
    list_saved: bool = True,
    kept: dict[str, Any] | None = None,
) -> int:
    """Save, keep, warn and print a command's result; return the exit status (0).

    `payload` is the result as JSON, saved as `file` under --out and printed by --json (with
    `indent`); `text` prints it for a terminal instead. `kind` and `request` are the run as the
    history stores it (--save) and as --export writes it; `kept` is the result it keeps where
    that is not `payload` (a file in another format, such as MIB's). `plots` maps a file name
    under --out to what draws it there. `list_saved`: end the text with a `saved PATH` line per
    file.
    """
    saved = [save_json(args.out, file, payload)]
    if kind is not None:
        keep(args, kind, request or {}, payload if kept is None else kept)
    if args.out is not None:
        saved += [draw(args.out / name) for name, draw in (plots or {}).items()]
    warn(warnings)
    if args.json:
        print(json.dumps(payload, indent=indent))
        return 0
    text()
    if list_saved:
        for path in saved:
            if path is not None:
                print(f"saved {path}")
    return 0


def save_json(out: Path | None, name: str, payload: dict[str, Any]) -> Path | None:
    """Write `payload` as `out/name` (indented JSON); None when no --out was given."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def keep(args: argparse.Namespace, kind: str, request: dict[str, Any], payload: dict) -> None:
    """--save and --export: keep the run in the history, write it to a file."""
    if getattr(args, "save", False):
        from actpatch.history import History

        history = History()
        run_id = history.store(kind, request, payload)
        print(f"saved run {run_id} in {history.path}", file=sys.stderr)
    if getattr(args, "export", None) is not None:
        write_export(args.export, kind, request, payload)
        print(f"wrote {args.export}", file=sys.stderr)


def write_export(path: Path, kind: str, request: dict[str, Any], result: dict) -> None:
    """Write a run as `path`, in the format its suffix names (`actpatch.export.export`)."""
    from actpatch.export import export

    fmt = path.suffix.lstrip(".").lower()
    body = export(kind, request, result, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def warn(warnings: Sequence[Any]) -> None:
    """Print each of a result's warnings on stderr, naming the option at fault."""
    for w in warnings:
        print(with_flag(f"warning: {w.message}", w.field), file=sys.stderr)
