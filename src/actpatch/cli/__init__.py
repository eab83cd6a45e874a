"""The `actpatch` command line: thin wrappers that parse arguments, call the core, and print.

    actpatch info   [--model M]
    actpatch patch  --clean P --corrupt P --target T [--wrong W] --layer L --head H
    actpatch sweep  heads|resid|COMPONENT  --clean P --corrupt P --target T [--wrong W]
                    [--ablate zero|mean|resample]
    actpatch attribute --component C [--method atp|atp*] [--compare] [--verify K] ...
    actpatch serve  [--model M] [--host H] [--port N]
    actpatch runs   list | show ID | export ID FILE | delete ID     (the run history)
    actpatch path   --senders all|L.H,... --receivers logits|L.H.q,... [--freeze-mlps]
    actpatch circuit edges|evaluate  [--method eap|eap-ig] [--steps M] ...
    actpatch reproduce ioi  [--model M]
    actpatch attention --layer L --head H   (where a head attends, clean and corrupted)
    actpatch dla       (each head's and MLP's direct share of the answer)
    actpatch lens      [--sublayers]   (what each layer predicts: the logit lens)

Every command takes --model (hub name, local folder, or `demo`; default $ACTPATCH_MODEL or
gpt2), --json (machine-readable output on stdout) and --out DIR (save JSON and heatmaps).
Errors in the input print one message that says how to fix it, and exit with status 2.
Warnings about the experiment (`actpatch.patching.guardrails`) go to stderr and never stop a run.

One module per command, as `actpatch.api.routes` has one per resource: each has `add_parser(sub)`
(its arguments) and `run(args) -> int` (the command). What they share: `common` (the common
flags, the option arguments derived from `actpatch.patching.options`, loading, the experiments),
`report` (the one tail: files, history, warnings, --json or the text) and `tables`.

This package imports only the torch-free parts of actpatch at load time: `--help` and argument
errors answer at once; each command imports the engine when it runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from actpatch.cli import (
    attention,
    attribute,
    circuit,
    dla,
    export,
    info,
    lens,
    patch,
    path,
    reproduce,
    runs,
    serve,
    sweep,
)
from actpatch.cli.common import with_flag
from actpatch.errors import ActpatchError

# Each command's module, in the order `actpatch --help` lists them.
COMMANDS = {
    "info": info,
    "patch": patch,
    "sweep": sweep,
    "attribute": attribute,
    "attention": attention,
    "dla": dla,
    "lens": lens,
    "runs": runs,
    "export": export,
    "path": path,
    "circuit": circuit,
    "reproduce": reproduce,
    "serve": serve,
}


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: each command's module adds its own subcommand."""
    parser = argparse.ArgumentParser(
        prog="actpatch", description="Activation patching, exact and fast."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 bad input or model)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command].run(args)
    except ActpatchError as exc:
        print(with_flag(f"error: {exc.message}", exc.field), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`actpatch ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
