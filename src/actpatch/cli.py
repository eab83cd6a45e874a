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

Every command takes --model (hub name, local folder, or `demo`; default $ACTPATCH_MODEL or
gpt2), --json (machine-readable output on stdout) and --out DIR (save JSON and heatmaps).
Errors in the input print one message that says how to fix it, and exit with status 2.
Warnings about the experiment (`actpatch.patching.guardrails`) go to stderr and never stop a run.

This module imports only the torch-free parts of actpatch at load time: `--help` and argument
errors answer at once; each command imports the engine when it runs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from actpatch.datasets import DATASET_SPEC_LIST
from actpatch.dtypes import DTYPES
from actpatch.errors import ActpatchError, InputError
from actpatch.patching.components import ALIASES, COMPONENTS
from actpatch.patching.options import (
    ABLATIONS,
    ATTRIBUTION_METHODS,
    DIRECTIONS,
    METRICS,
    check_ablation_direction,
)

# The CLI's option for each input field the core's errors and warnings name.
FLAGS = {
    "clean_prompt": "--clean",
    "corrupt_prompt": "--corrupt",
    "target_token": "--target",
    "wrong_token": "--wrong",
    "model": "--model",
    "metric": "--metric",
    "direction": "--direction",
    "component": "--component",
    "layer": "--layer",
    "head": "--head",
    "pos": "--pos",
    "dataset": "--dataset",
    "backend": "--backend",
    "method": "--method",
    "verify": "--verify",
    "ablate": "--ablate",
    "dtype": "--dtype",
    "device": "--device",
    "max_memory": "--max-memory",
    "positions": "--positions",
    "batching": "--batching",
    "data_dir": "$ACTPATCH_DATA_DIR",
    "format": "FILE's suffix",
    "senders": "--senders",
    "receivers": "--receivers",
    "steps": "--steps",
    "ablation": "--ablation",
    "circuit": "--edges",
    "nodes": "--nodes",
    "curve": "--curve",
}


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=None,
        help="hub name, local Hugging Face-format folder, or 'demo' (default: $ACTPATCH_MODEL "
        "or gpt2)",
    )
    p.add_argument("--device", default="cpu", help="torch device to run on, e.g. cpu or cuda")
    p.add_argument(
        "--dtype",
        default=None,
        choices=list(DTYPES),
        help="; ".join(f"{name}: {what}" for name, what in DTYPES.items()),
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of tables")
    p.add_argument("--out", type=Path, default=None, help="folder to save JSON (and heatmaps) in")


def _add_experiment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clean", help="the clean prompt (shows the behaviour)")
    p.add_argument("--corrupt", help="the corrupted prompt (does not)")
    p.add_argument("--target", help="the clean answer, one token, e.g. ' Mary' (leading space)")
    p.add_argument("--wrong", default=None, help="the wrong answer, for logit_diff, e.g. ' John'")
    p.add_argument(
        "--dataset",
        default=None,
        help=f"prompt pairs instead of one: {DATASET_SPEC_LIST} (a seed may follow: ioi:12:3; "
        "the MIB tasks mib-ioi, add, sub and mcqa keep answers that are one token for the "
        'model) or a JSONL file of {"clean", "corrupt", "target", "wrong"}; the metric is '
        "averaged over pairs",
    )
    p.add_argument(
        "--metric",
        default=None,
        choices=list(METRICS),
        help="; ".join(f"{name}: {what}" for name, what in METRICS.items())
        + " (default: logit_diff if --wrong is given, else prob)",
    )
    p.add_argument(
        "--direction",
        default=None,
        choices=list(DIRECTIONS),
        help="; ".join(f"{name}: {what}" for name, what in DIRECTIONS.items())
        + " (default: denoising)",
    )


def _component_names() -> str:
    return ", ".join(COMPONENTS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="actpatch", description="Activation patching, exact and fast."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="load a model, show its shape and its next-token guesses")
    _add_common(info)
    info.add_argument(
        "--prompt", default=None, help="sample prompt to run (default: one the model can do)"
    )

    patch = sub.add_parser("patch", help="patch one head (or one cell) and show the effect")
    _add_common(patch)
    _add_experiment(patch)
    patch.add_argument("--layer", type=int, required=True)
    patch.add_argument("--head", type=int, default=None)
    patch.add_argument("--pos", type=int, default=None, help="position, for by-position components")
    patch.add_argument(
        "--component",
        default="z",
        help=f"what to patch (default z: a head's output); one of {_component_names()}",
    )
    patch.add_argument("--top", type=int, default=10, help="how many top tokens to show")

    sweep = sub.add_parser("sweep", help="patch every layer x head (or layer x position) cell")
    _add_common(sweep)
    _add_experiment(sweep)
    sweep.add_argument(
        "what",
        help=f"what to sweep: a component ({', '.join(COMPONENTS)}) or an alias "
        f"({', '.join(f'{a} = {t}' for a, t in ALIASES.items())})",
    )
    sweep.add_argument("--component", default=None, help="overrides WHAT, e.g. --component mlp_out")
    sweep.add_argument("--top", type=int, default=10, help="how many top cells to list")
    sweep.add_argument(
        "--max-memory",
        default=None,
        help="activations one batched run may hold, e.g. 4GB (default 1GiB); a sweep that "
        "needs more runs in several batches, slower rather than out of memory",
    )
    sweep.add_argument(
        "--positions",
        default="auto",
        choices=["auto", "index", "role"],
        help="a position-resolved sweep's columns: token positions (index), the roles the pairs "
        "name (role: IO, S1, S2, END, ... in ioi datasets), or auto (role over pairs of several "
        "token lengths, else index)",
    )
    sweep.add_argument(
        "--batching",
        default="auto",
        choices=["auto", "padded", "grouped"],
        help="a dataset of several token lengths: auto (left-pad together the length groups that "
        "recompute alike: the same numbers, never slower), padded (all groups in one batch) or "
        "grouped (one sweep per length)",
    )
    for p in (sweep, patch):
        p.add_argument(
            "--save",
            action="store_true",
            help="keep the run in the history ($ACTPATCH_DATA_DIR, else ~/.local/share/actpatch; "
            "see `actpatch runs`)",
        )
        p.add_argument(
            "--export",
            type=Path,
            default=None,
            metavar="FILE",
            help="also write the run as FILE: .csv, .json, .png, .svg or .ipynb (a notebook "
            "that reproduces it)",
        )

    sweep.add_argument(
        "--ablate",
        default=None,
        choices=list(ABLATIONS),
        help="ablate each cell in the clean run instead of patching: "
        + "; ".join(f"{name}: {what}" for name, what in ABLATIONS.items())
        + " (with --dataset, the mean and the resampling are over its pairs)",
    )
    sweep.add_argument("--seed", type=int, default=0, help="seed of --ablate resample")

    attribute = sub.add_parser(
        "attribute",
        help="estimate every cell by attribution patching (AtP, AtP*), beside the exact sweep",
    )
    _add_common(attribute)
    _add_experiment(attribute)
    attribute.add_argument(
        "--component",
        default="z",
        help=f"what to estimate (default z); one of {_component_names()} or an alias",
    )
    attribute.add_argument(
        "--method",
        default="atp",
        choices=list(ATTRIBUTION_METHODS),
        help="; ".join(f"{name}: {what}" for name, what in ATTRIBUTION_METHODS.items())
        + " (default: atp)",
    )
    attribute.add_argument(
        "--compare",
        action="store_true",
        help="also run the exact sweep of the same cells and measure the estimate against it",
    )
    attribute.add_argument(
        "--verify",
        type=int,
        default=0,
        metavar="K",
        help="patch exactly the K cells the estimate ranks first",
    )
    attribute.add_argument("--top", type=int, default=10, help="how many top cells to list")
    attribute.add_argument(
        "--max-memory",
        default=None,
        help="activations one batched run of --compare's and --verify's exact patches may hold, "
        "e.g. 4GB (default 1GiB)",
    )

    runs = sub.add_parser("runs", help="the run history: list, show, export or delete runs")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list", help="the most recent runs first")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--json", action="store_true")
    runs_show = runs_sub.add_parser("show", help="one run's request and result (JSON)")
    runs_show.add_argument("id", type=int)
    runs_export = runs_sub.add_parser("export", help="write a run as csv, json, png, svg, ipynb")
    runs_export.add_argument("id", type=int)
    runs_export.add_argument("file", type=Path, help="the file to write; its suffix is the format")
    runs_delete = runs_sub.add_parser("delete", help="delete one run")
    runs_delete.add_argument("id", type=int)

    export = sub.add_parser(
        "export", help="write a model (e.g. the bundled demo) as a Hugging Face-format folder"
    )
    export.add_argument("folder", type=Path, help="where to write config, weights and tokenizer")
    export.add_argument("--model", default=None, help="model to export (e.g. demo)")

    _add_circuit_commands(sub)

    serve = sub.add_parser("serve", help="start the web app and REST API")
    serve.add_argument("--model", default=None, help="model to serve (default: gpt2, else demo)")
    serve.add_argument("--host", default=None, help="default: $ACTPATCH_HOST or 127.0.0.1")
    serve.add_argument("--port", type=int, default=None, help="default: $ACTPATCH_PORT or 8000")
    serve.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    serve.add_argument("--dtype", default=None, choices=list(DTYPES), help="model precision")
    serve.add_argument("--max-memory", default=None, help="per-batch activation budget, e.g. 4GB")
    return parser


# -- helpers ---------------------------------------------------------------------------------


def _load(spec: str | None, device: str = "cpu", dtype: str | None = None) -> Any:
    from actpatch.models import load_model

    return load_model(spec, device=device, dtype=dtype)


def _experiments(args: argparse.Namespace, model: Any) -> list[Any]:
    from actpatch.patching.experiment import Experiment

    if args.dataset:
        if args.clean or args.corrupt:
            raise InputError(
                "Give either --dataset or --clean/--corrupt, not both.", field="dataset"
            )
        from actpatch.datasets import load_dataset
        from actpatch.patching.experiment import dataset_experiments

        data = load_dataset(args.dataset, tokenizer=model.tokenizer)
        if data.note:  # how many candidates the model's tokenizer kept
            print(f"dataset {data.name}: {data.note}", file=sys.stderr)
        return dataset_experiments(model, data)
    missing = [f"--{n}" for n in ("clean", "corrupt", "target") if getattr(args, n) is None]
    if missing:
        raise InputError(
            f"Missing {', '.join(missing)}. Example: --clean 'Paris is the capital of' "
            "--corrupt 'Berlin is the capital of' --target ' France' (or --dataset ioi:20).",
            field=missing[0].lstrip("-"),
        )
    return [Experiment(model, args.clean, args.corrupt, args.target, args.wrong)]


def _model_reference(spec: str) -> str:
    """How a stored run names its model: a local folder or file by its absolute path (so the
    run and its notebook work from any folder), anything else as given."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def _request(args: argparse.Namespace, model: Any, **extra: Any) -> dict[str, Any]:
    """What was asked, as the API's request fields (for the history and notebooks)."""
    fields = {
        "model": _model_reference(args.model or model.name),
        "dataset": args.dataset,
        "clean_prompt": args.clean,
        "corrupt_prompt": args.corrupt,
        "target_token": args.target,
        "wrong_token": args.wrong,
        "metric": args.metric,
        "direction": args.direction,
        **extra,
    }
    return {k: v for k, v in fields.items() if v is not None}


def _keep(args: argparse.Namespace, kind: str, request: dict[str, Any], payload: dict) -> None:
    """--save and --export: keep the run in the history, write it to a file."""
    if getattr(args, "save", False):
        from actpatch.history import History

        history = History()
        run_id = history.store(kind, request, payload)
        print(f"saved run {run_id} in {history.path}", file=sys.stderr)
    if getattr(args, "export", None) is not None:
        _write_export(args.export, kind, request, payload)
        print(f"wrote {args.export}", file=sys.stderr)


def _write_export(path: Path, kind: str, request: dict[str, Any], result: dict) -> None:
    from actpatch.export import export

    fmt = path.suffix.lstrip(".").lower()
    body = export(kind, request, result, fmt)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)


def _progress_bar(label: str) -> Any:
    """A progress bar on stderr for long sweeps; None when stderr is not a terminal (a file or a
    pipe would collect the bar's redraws)."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar: dict[str, Any] = {}

    def update(done: int, total: int) -> None:
        if "bar" not in bar:
            bar["bar"] = tqdm(
                total=total, desc=label, unit="cell", file=sys.stderr, delay=0.5, leave=False
            )
        bar["bar"].update(done - bar["bar"].n)
        if done >= total:
            bar["bar"].close()

    return update


def _warn(warnings: list[Any]) -> None:
    """Print each of a result's warnings on stderr, naming the option at fault."""
    for w in warnings:
        flag = FLAGS.get(w.field or "")
        print(f"warning: {w.message}" + (f" [{flag}]" if flag else ""), file=sys.stderr)


def _normalized_text(value: float) -> str:
    """A normalized value as a percentage, or why it is undefined."""
    if math.isnan(value):
        return "undefined (the clean and corrupted runs give the same value)"
    return f"{value * 100:.1f}%"


def _fmt(value: float, pct: bool = True) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "·"
    return f"{value * 100:+.1f}" if pct else f"{value:+.3g}"


def _pct(prob: float) -> str:
    """A probability as a percentage, or in scientific notation when it is below 0.1%."""
    return f"{prob * 100:5.1f}%" if prob >= 1e-3 else f"{prob:.0e}".rjust(6)


def _save_json(out: Path | None, name: str, payload: dict[str, Any]) -> Path | None:
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


# -- commands --------------------------------------------------------------------------------


def cmd_info(args: argparse.Namespace) -> int:
    import torch

    model = _load(args.model, args.device, args.dtype)
    prompt = args.prompt if args.prompt is not None else model.sample_prompt
    ids = torch.tensor([model.to_tokens(prompt)], device=model.device)
    with torch.inference_mode():
        probs = model.hf_model(ids).logits[0, -1].softmax(-1)
    values, top = probs.topk(10)
    guesses = [
        {"token": model.tokenizer.decode([int(i)]), "prob": round(float(v), 6)}
        for v, i in zip(values, top, strict=True)
    ]
    payload = {
        **model.describe(),
        "prompt": prompt,
        "prompt_tokens": model.to_str_tokens(ids[0]),
        "top_next_tokens": guesses,
    }
    _save_json(args.out, "info.json", payload)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    d = model.describe()
    print(f"model      {d['name']}  ({d['source']}, {d['architecture']})")
    print(
        f"shape      {d['n_layers']} layers x {d['n_heads']} heads, d_model {d['d_model']}, "
        f"d_head {d['d_head']}, context {d['n_ctx']}, vocabulary {d['d_vocab']}"
    )
    print(f"parameters {d['n_params']:,}")
    for note in d["notes"]:
        print(f"note       {note}")
    print(f"\nprompt     {prompt!r}")
    print(f"tokens     {payload['prompt_tokens']}")
    print("next token (top 10):")
    for g in guesses:
        print(f"  {g['token']!r:<16} {g['prob'] * 100:6.2f}%")
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    from actpatch.patching.engine import patch

    model = _load(args.model, args.device, args.dtype)
    experiments = _experiments(args, model)
    if len(experiments) > 1:
        raise InputError(
            "A single patch needs prompt pairs of one token length; this dataset has "
            f"{len(experiments)} length groups. Use a single-template dataset.",
            field="dataset",
        )
    result = patch(
        experiments[0],
        args.layer,
        args.head,
        args.pos,
        component=args.component,
        metric=args.metric,
        direction=args.direction or "denoising",
        top_k=args.top,
    )
    payload = result.to_dict()
    _save_json(args.out, "patch.json", payload)
    _keep(
        args,
        "patch",
        _request(
            args, model, component=args.component, layer=args.layer, head=args.head, pos=args.pos
        ),
        payload,
    )
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    where = ", ".join(f"{k} {v}" for k, v in result.index.items())
    print(
        f"{result.component} patch at {where} ({result.direction}) on {result.model} "
        f"({result.backend} path)"
    )
    target = experiments[0].target_strs[0]
    print(
        f"\n  P({target!r})  clean {result.clean_prob:.4g}   corrupted {result.corrupt_prob:.4g}"
        f"   patched {result.patched_prob:.4g}"
    )
    print(f"  recovery    {_normalized_text(result.recovery_pct / 100)} of P({target!r})")
    print(
        f"  rank        {result.clean_rank} (clean) -> {result.corrupt_rank} (corrupted) -> "
        f"{result.patched_rank} (patched)"
    )
    if result.metric != "prob":
        print(
            f"  {result.metric:<11} clean {result.metric_clean:+.4f}   corrupted "
            f"{result.metric_corrupt:+.4f}   patched {result.metric_patched:+.4f}"
        )
    print(
        f"  normalized  {_normalized_text(result.metric_normalized)} of {result.metric} "
        "(clean = 100%, corrupted = 0%)"
    )
    if result.note:
        print(f"  note        {result.note}")
    if result.patched_positions != list(range(len(result.tokens))):
        print(
            f"  patched     positions {result.patched_positions} of the corrupted run "
            f"{result.tokens} (aligned prefix and suffix)"
        )
    print(f"\n  {'clean':<24}{'corrupted':<24}patched")
    for c, k, p in zip(result.top_clean, result.top_corrupt, result.top_patched, strict=True):
        row = [f"{t.token!r:<15} {_pct(t.prob)}" for t in (c, k, p)]
        print(("  " + "  ".join(f"{r:<22}" for r in row)).rstrip())
    return 0


def _print_table(result: Any) -> None:
    pct = not bool(result.normalized.isnan().all())
    table = result.normalized if pct else result.raw
    axes = result.axes
    print(
        f"normalized {result.metric}, % (clean = 100, corrupted = 0)"
        if pct
        else f"raw {result.metric}",
        "by",
        " x ".join(axes),
    )
    if len(axes) == 3:  # (layer, pos, head): too big for a terminal table
        print(
            f"  ({' x '.join(axes)} is too large for a table here: the top cells follow; "
            "--json or --out keeps every cell)"
        )
        return
    if axes[1] == "head":
        rows = [f"  L{layer:<3}" for layer in range(table.shape[0])]
        _print_grid("      ", rows, [f"H{h}" for h in range(table.shape[1])], table, pct)
    else:  # positions as rows, layers as columns
        by_role = result.position_convention == "role"
        labels = result.position_labels if by_role else [repr(t) for t in result.tokens]
        rows = [f"  {pos:>3} {label:<16}" for pos, label in enumerate(labels)]
        head = f"  {'pos':>3} {'role' if by_role else 'token':<16}"
        _print_grid(head, rows, [f"L{i}" for i in range(table.shape[0])], table.T, pct)


def _print_grid(head: str, rows: list[str], columns: list[str], values: Any, pct: bool) -> None:
    """A table of 7-character cells (rows x columns of `values`), in blocks of as many columns
    as fit the terminal's width, so that a 30-layer model's table does not wrap."""
    import shutil

    width = shutil.get_terminal_size((100, 24)).columns
    per_block = max(1, (width - max(len(head), *(len(r) for r in rows))) // 7)
    for first in range(0, len(columns), per_block):
        block = range(first, min(first + per_block, len(columns)))
        if first:
            print()
        print(head + "".join(f"{columns[j]:>7}" for j in block))
        for i, row in enumerate(rows):
            print(row + "".join(f"{_fmt(float(values[i, j]), pct):>7}" for j in block))


def cmd_sweep(args: argparse.Namespace) -> int:
    from actpatch.patching.components import get_component
    from actpatch.patching.engine import sweep_many
    from actpatch.plotting import heatmap

    component = get_component(args.component or args.what).name
    check_ablation_direction(args.ablate, args.direction)
    model = _load(args.model, args.device, args.dtype)
    experiments = _experiments(args, model)
    result: Any
    if args.ablate:
        from actpatch.patching.ablation import ablate_many

        result = ablate_many(
            experiments,
            component,
            args.ablate,
            args.metric,
            seed=args.seed,
            progress=_progress_bar(f"{component} {args.ablate} ablation"),
            max_memory=args.max_memory,
        )
        stem = f"sweep_{component}_{args.ablate}"
        request = _request(args, model, component=component, ablate=args.ablate, seed=args.seed)
    else:
        result = sweep_many(
            experiments,
            component,
            args.metric,
            args.direction or "denoising",
            positions=args.positions,
            progress=_progress_bar(f"{component} sweep"),
            max_memory=args.max_memory,
            batching=args.batching,
        )
        stem = f"sweep_{component}"
        request = _request(args, model, component=component, positions=args.positions)
    payload = result.to_dict()
    saved = _save_json(args.out, f"{stem}.json", payload)
    _keep(args, "ablation" if args.ablate else "sweep", request, payload)
    png = heatmap(result, args.out / f"{stem}.png") if args.out else None
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload))
        return 0
    if args.ablate:
        print(
            f"{component} {args.ablate}-ablation sweep on {result.model} ({result.backend} "
            f"path): each cell ablated in the clean run, {result.n_pairs} pair(s), metric "
            f"{result.metric}"
        )
        print(f"ablation value: {result.reference}")
    else:
        print(
            f"{component} sweep ({result.direction}) on {result.model} ({result.backend} path): "
            f"{result.n_pairs} pair(s), metric {result.metric}"
        )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    if result.unpatched_positions:
        print(
            f"not patched (no counterpart in the other prompt): positions "
            f"{result.unpatched_positions}"
        )
    if result.note:
        print(f"note: {result.note}")
    print()
    _print_table(result)
    print(f"\ntop {args.top} cells (" + ", ".join(result.axes) + "):")
    pct = not result.normalized.isnan().all()
    roles = result.position_labels if result.position_convention == "role" else None
    for index, value in result.top(args.top):
        label = " ".join(
            (roles[i] if a == "pos" and roles else f"{a[0].upper() if a != 'pos' else 'P'}{i}")
            for a, i in zip(result.axes, index, strict=True)
        )
        shown = f"{value * 100:+.1f}%" if pct else f"{value:+.4f}"
        if pct and result.ci is not None:
            low, high = float(result.ci.low[index]), float(result.ci.high[index])
            shown += f"  [{low * 100:+.1f}, {high * 100:+.1f}]"
        print(f"  {label:<14} {shown}")
    if result.ci is not None and pct:
        print(
            f"  [{int(result.ci.level * 100)}% bootstrap interval over {result.n_pairs} pairs, "
            f"{result.ci.n_boot} resamples]"
        )
    print(f"\nsweep took {result.seconds:.2f} s")
    for path in (saved, png):
        if path is not None:
            print(f"saved {path}")
    return 0


def _cell_text(axes: Sequence[str], cell: Sequence[int]) -> str:
    return " ".join(
        f"{'P' if a == 'pos' else a[0].upper()}{i}" for a, i in zip(axes, cell, strict=True)
    )


def _effect_text(value: float | None, gap: float | None) -> str:
    """A metric change as % of clean - corrupted when defined, else raw."""
    if value is None or math.isnan(value):
        return "·"
    if gap:
        return f"{100 * value / gap:+.1f}%"
    return f"{value:+.4f}"


def _print_attribution_table(result: Any, gap: float | None) -> None:
    values = result.estimate if not gap else result.estimate / gap
    axes = result.axes
    unit = "% of clean - corrupted" if gap else f"change in {result.metric}"
    print(f"estimated effect of each patch ({unit}) by {' x '.join(axes)}")
    if len(axes) == 3:  # (layer, pos, head): too big for a terminal table
        print(
            f"  ({' x '.join(axes)} is too large for a table here: the top cells follow; "
            "--json or --out keeps every cell)"
        )
        return
    pct = bool(gap)
    if axes[1] == "head":
        rows = [f"  L{layer:<3}" for layer in range(values.shape[0])]
        _print_grid("      ", rows, [f"H{h}" for h in range(values.shape[1])], values, pct)
    else:
        rows = [f"  {pos:>3} {token!r:<16}" for pos, token in enumerate(result.tokens)]
        layers = [f"L{i}" for i in range(values.shape[0])]
        _print_grid(f"  {'pos':>3} {'token':<16}", rows, layers, values.T, pct)


def cmd_attribute(args: argparse.Namespace) -> int:
    from actpatch.patching.attribution import attribute
    from actpatch.patching.components import get_component
    from actpatch.plotting import attribution_heatmap, attribution_scatter

    component = get_component(args.component).name
    model = _load(args.model, args.device, args.dtype)
    experiments = _experiments(args, model)
    if len(experiments) > 1:
        raise InputError(
            "Attribution patching needs prompt pairs of one token length (one batch, one "
            f"gradient); this dataset has {len(experiments)} length groups. Use a single-template "
            "dataset.",
            field="dataset",
        )
    result = attribute(
        experiments[0],
        component,
        args.method,
        args.direction or "denoising",
        args.metric,
        compare=args.compare,
        verify=args.verify,
        progress=_progress_bar(f"{component} attribution"),
        max_memory=args.max_memory,
    )
    payload = result.to_dict()
    stem = f"attribute_{component}_{result.method.replace('*', '_star')}"
    saved = _save_json(args.out, f"{stem}.json", payload)
    pngs = []
    if args.out:
        pngs.append(attribution_heatmap(result, args.out / f"{stem}.png"))
        if result.exact is not None:
            pngs.append(attribution_scatter(result, args.out / f"{stem}_scatter.png"))
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload))
        return 0
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
    _print_attribution_table(result, gap)
    verified = {tuple(v["cell"]): v["exact"] for v in result.verified}
    exact = result.exact
    print(f"\ntop {args.top} cells by {result.score_kind}:")
    for cell, value in result.top(args.top):
        line = f"  {_cell_text(result.axes, cell):<14} estimate {_effect_text(value, gap):>8}"
        if exact is not None:
            line += f"   exact {_effect_text(float(exact[cell]), gap):>8}"
        elif cell in verified:
            line += f"   exact {_effect_text(verified[cell], gap):>8} (verified)"
        print(line)
    if result.verified and exact is None:
        print(f"verified: the top {len(result.verified)} cells were patched exactly")
    if result.agreement is not None:
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
                f"  {_cell_text(result.axes, miss['cell']):<14} exact "
                f"{_effect_text(miss['exact'], gap):>8}   estimate "
                f"{_effect_text(miss['estimate'], gap):>8}"
            )
    # a correction is listed only where it changes a number as printed
    scale = gap and abs(gap)
    corrections = [
        c
        for c in result.corrections
        if _effect_text(c["atp_star"], gap) != _effect_text(c["atp"], gap)
        or _effect_text(c["score"], scale) != _effect_text(abs(c["atp"]), scale)
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
                f"  {_cell_text(result.axes, c['cell']):<14} {_effect_text(c['atp'], gap):>8} -> "
                f"{_effect_text(c['atp_star'], gap):>8}   "
                f"{_effect_text(abs(c['atp']), gap and abs(gap)):>7} -> "
                f"{_effect_text(c['score'], gap and abs(gap)):>7}"
            )
            if "exact" in c:
                line += f"   exact {_effect_text(c['exact'], gap):>8}"
            print(line)
    print(f"\ntook {result.seconds:.2f} s")
    for path in (saved, *pngs):
        if path is not None:
            print(f"saved {path}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from actpatch.history import History, RunNotFoundError

    history = History()
    try:
        if args.runs_command == "list":
            runs = history.list(args.limit)
            if args.json:
                print(json.dumps([r.summary() for r in runs], indent=2))
                return 0
            if not runs:
                print(f"no runs in {history.path} (keep one with --save)")
            for r in runs:
                seconds = f"{r.seconds:.2f} s" if r.seconds is not None else ""
                partial = "" if r.complete else "  (partial)"
                print(
                    f"{r.id:>5}  {r.created_at}  {r.kind:<7} {r.model or '':<12} {seconds:>8}  "
                    f"{r.label}{partial}"
                )
        elif args.runs_command == "show":
            print(json.dumps(history.get(args.id).to_dict(), indent=2))
        elif args.runs_command == "export":
            run = history.get(args.id)
            _write_export(args.file, run.kind, run.request, run.result)
            print(f"wrote run {args.id} to {args.file}")
        else:
            history.delete(args.id)
            print(f"deleted run {args.id}")
    except RunNotFoundError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    model = _load(args.model)
    args.folder.mkdir(parents=True, exist_ok=True)
    model.hf_model.save_pretrained(str(args.folder))
    model.tokenizer.save_pretrained(str(args.folder))
    print(f"wrote {model.name} ({model.n_layers} layers x {model.n_heads} heads) to {args.folder}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from actpatch.api import serve

    serve(
        model=args.model,
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        max_memory=args.max_memory,
    )
    return 0


# -- circuits: path patching, edge attribution, circuit evaluation, the IOI reproduction -------


def _add_circuit_commands(sub: Any) -> None:
    path = sub.add_parser(
        "path", help="path patching (Wang et al. 2022): each sender's effect through receivers"
    )
    _add_common(path)
    _add_experiment(path)
    path.add_argument(
        "--senders",
        default="all",
        help="'all' (every head) or heads and MLPs, e.g. '9.9,10.0,m0' (default all)",
    )
    path.add_argument(
        "--receivers",
        default="logits",
        help="'logits', or heads' inputs and MLPs, e.g. '9.9.q,9.6.q' or '7.3.v,m8'; on a "
        "grouped-query model 'a7.kv1<k>' is key/value head 1's input (default logits)",
    )
    path.add_argument(
        "--freeze-mlps", action="store_true", help="freeze every MLP too, not only the heads"
    )
    path.add_argument("--top", type=int, default=10, help="how many top senders to list")

    circuit = sub.add_parser("circuit", help="edge attribution and circuit evaluation")
    what = circuit.add_subparsers(dest="circuit_command", required=True)
    edges = what.add_parser("edges", help="score every edge with EAP or EAP-IG")
    evaluate = what.add_parser(
        "evaluate", help="faithfulness of a circuit (or of the top-n edges, as a curve)"
    )
    for p in (edges, evaluate):
        _add_common(p)
        _add_experiment(p)
        p.add_argument(
            "--method",
            default="eap-ig",
            choices=["eap", "eap-ig", "eap-ig-act"],
            help="eap: the gradient at the base run; eap-ig: integrated gradients between the "
            "runs' embeddings (default); eap-ig-act: MIB's EAP-IG over activations, each "
            "layer's writers moved in turn",
        )
        p.add_argument("--steps", type=int, default=5, help="EAP-IG's interpolation steps (5)")
        p.add_argument(
            "--max-memory",
            default=None,
            help="what one batched gradient run may hold, e.g. 4GB (default 1GiB); EAP-IG runs "
            "its points in more batches rather than run out of memory",
        )
        p.add_argument(
            "--kv",
            default="ungrouped",
            choices=["ungrouped", "grouped"],
            help="on a grouped-query model: each query head's own <k>/<v> readers (ungrouped, "
            "MIB's convention; default) or one per key/value head, a{L}.kv{G}<k> (grouped)",
        )
    edges.add_argument("--by-pos", action="store_true", help="keep each edge's score by position")
    edges.add_argument(
        "--format",
        default="actpatch",
        choices=["actpatch", "mib"],
        help="the JSON written by --json and --out: actpatch's (default) or MIB's importance-score "
        "file (cfg, nodes, edges with score and in_graph)",
    )
    edges.add_argument(
        "--verify", type=int, default=0, help="patch the top K edges exactly to check them"
    )
    edges.add_argument("--top", type=int, default=20, help="how many top edges to list (20)")
    evaluate.add_argument(
        "--edges",
        type=Path,
        default=None,
        help="a JSON file of edges: `circuit edges --json` output, or a list of names like "
        "'a0.h1->a2.h3<v>'; default: rank every edge with --method",
    )
    evaluate.add_argument(
        "--circuit",
        type=Path,
        default=None,
        help="a circuit file: MIB's importance-score JSON (`circuit edges --format mib`, or a "
        "MIB submission) or `circuit edges --json` output; its scores rank the edges",
    )
    evaluate.add_argument(
        "--mib",
        action="store_true",
        help="MIB's evaluation: faithfulness at 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100%% of "
        "the edges (pruned top-n circuits), with CPR and CMD",
    )
    evaluate.add_argument(
        "--nodes", default=None, help="a node set instead of edges, e.g. 'a9.h9,a10.h0,m0'"
    )
    evaluate.add_argument("--top-n", type=int, default=None, help="keep the top n edges")
    evaluate.add_argument(
        "--threshold", type=float, default=None, help="keep the edges with |score| >= T"
    )
    evaluate.add_argument(
        "--curve",
        default=None,
        help="faithfulness of the top n edges for each n, e.g. '10,20,50,100' or 'auto' "
        "(the default when no circuit is given)",
    )
    evaluate.add_argument(
        "--ablation",
        default="corrupt",
        choices=["corrupt", "mean"],
        help="what replaces an ablated writer: its corrupted-run output (default) or its mean "
        "over every prompt",
    )

    reproduce = sub.add_parser(
        "reproduce", help="reproduce published findings, with our numbers beside them"
    )
    reproduce.add_argument("study", choices=["ioi"], help="ioi: TransformerLens's IOI demo")
    reproduce.add_argument(
        "--model",
        default=None,
        help="the model to run (default gpt2, GPT-2 small, the model the findings are about)",
    )
    reproduce.add_argument("--device", default="cpu")
    reproduce.add_argument(
        "--references",
        action="store_true",
        help="show GPT-2 small's published values on another model too (default: only on GPT-2 "
        "small; other models get their own findings, without reference numbers)",
    )
    reproduce.add_argument("--json", action="store_true", help="print JSON on stdout")
    reproduce.add_argument("--out", type=Path, default=None, help="folder to save JSON in")


def _role(model_name: str, name: str) -> str:
    """A head's known role (GPT-2 small only), for listings: ' (name mover)' or ''."""
    from actpatch.known_roles import for_model

    if not name.startswith("a"):
        return ""
    layer, head = (int(v) for v in name[1:].split("<")[0].split(".h"))
    role = for_model(model_name).get((layer, head))
    return f" ({role[0]})" if role else ""


def cmd_path(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import path_heatmap
    from actpatch.patching.paths import path_patch_many

    model = _load(args.model, args.device)
    result = path_patch_many(
        _experiments(args, model),
        args.senders,
        args.receivers,
        freeze_mlps=args.freeze_mlps,
        metric=args.metric,
        direction=args.direction or "denoising",
        progress=_progress_bar("path patching"),
    )
    payload = result.to_dict()
    saved = _save_json(args.out, "path.json", payload)
    png = path_heatmap(result, args.out / "path.png") if args.out and result.all_heads else None
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload))
        return 0
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
            print(f"  L{layer:<3}" + "".join(f"{_fmt(float(v), pct):>7}" for v in table[layer]))
    print(f"\ntop {args.top} senders:")
    for name, value in result.top(args.top):
        shown = f"{value * 100:+.1f}%" if pct else f"{value:+.4f}"
        print(f"  {name + _role(result.model, name):<28} {shown}")
    print(f"\npath patching took {result.seconds:.2f} s")
    for saved_path in (saved, png):
        if saved_path is not None:
            print(f"saved {saved_path}")
    return 0


def cmd_circuit(args: argparse.Namespace) -> int:
    if args.circuit_command == "edges":
        return _cmd_circuit_edges(args)
    return _cmd_circuit_evaluate(args)


def _cmd_circuit_edges(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import circuit_graph
    from actpatch.patching.edges import edge_attribution, edge_attribution_many

    model = _load(args.model, args.device)
    experiments = _experiments(args, model)
    options = {
        "steps": args.steps,
        "metric": args.metric,
        "direction": args.direction or "denoising",
        "kv": args.kv,
        "max_memory": args.max_memory,
    }
    if args.by_pos:
        if len(experiments) > 1:
            raise InputError(
                f"Scores by position need prompt pairs of one token length; this dataset has "
                f"{len(experiments)} length groups (a position means something else in each). "
                "Use a single-template dataset, or drop the position breakdown.",
                field="dataset",
            )
        result = edge_attribution(
            experiments[0], args.method, by_pos=True, verify=args.verify, **options
        )
    else:
        result = edge_attribution_many(
            experiments,
            args.method,
            verify=args.verify,
            progress=_progress_bar(args.method),
            **options,
        )
    if args.format == "mib":
        payload = _mib_payload(result, model)
        saved = _save_json(args.out, "circuit_edges_mib.json", payload)
    else:
        payload = result.to_dict()
        saved = _save_json(args.out, "circuit_edges.json", payload)
    png = (
        circuit_graph(result, args.out / "circuit.png", model.n_layers, model.n_heads)
        if args.out
        else None
    )
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload))
        return 0
    steps = f", {result.steps} steps" if result.method != "eap" else ""
    print(
        f"{result.method}{steps} ({result.direction}) on {result.model} ({result.backend} path): "
        f"{len(result.edges):,} edges, {result.n_pairs} pair(s), metric {result.metric}"
    )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    gap = result.clean - result.corrupt
    print(f"\ntop {args.top} edges (score summed over positions; clean - corrupted = {gap:+.4g}):")
    for e in result.top(args.top):
        print(f"  {e.name + _role(result.model, e.source):<34} {e.score:+.4g}")
    if result.verified:
        print(f"\nverified exactly (one edge patched alone, {result.direction}):")
        print(f"  {'edge':<34} {'score':>10} {'exact':>10}")
        scores = {e.name: e.score for e in result.edges}
        for c in result.verified:
            print(f"  {c.edge:<34} {scores[c.edge]:>+10.4g} {c.effect:>+10.4g}")
    print(f"\n{result.method} took {result.seconds:.2f} s")
    for saved_path in (saved, png):
        if saved_path is not None:
            print(f"saved {saved_path}")
    return 0


def _mib_payload(result: Any, model: Any) -> dict[str, Any]:
    """The edge scores as MIB's importance-score file (`actpatch.patching.mib.to_mib`)."""
    from actpatch.patching.mib import to_mib

    graph = result.graph
    return to_mib(
        result.names,
        result.scores,
        n_layers=graph["n_layers"],
        n_heads=graph["n_heads"],
        d_model=model.d_model,
        parallel=graph["parallel"],
        n_kv_heads=graph["n_kv_heads"],
        kv=graph["kv"],
    )


def _circuit_file(path: Path, experiment: Any, kv: str) -> tuple[list[str], list[float] | None]:
    """Edge names and scores from --circuit: MIB's JSON (read against the served model's
    shape) or actpatch's own edge JSON."""
    from actpatch.patching.circuit import shape_of
    from actpatch.patching.mib import from_mib

    try:
        text = path.read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read a circuit from {path}: {exc}.", field="circuit") from None
    if not (isinstance(data, dict) and "cfg" in data and isinstance(data.get("edges"), dict)):
        return _ranked_edges(path)
    shape = shape_of(experiment, kv)
    circuit = from_mib(
        data,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        d_model=experiment.model.d_model,
        parallel=shape.parallel,
        n_kv_heads=shape.n_kv_heads,
        kv=kv,
    )
    if circuit.scores is None:  # a circuit without scores: its in_graph edges
        return list(circuit.circuit), None
    return list(circuit.names), list(circuit.scores)


def _ranked_edges(path: Path) -> tuple[list[str], list[float] | None]:
    """Edge names (and scores, if given) from a JSON file: `circuit edges --json` output, a list
    of {"source", "target"[, "score"]}, or a list of names."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read edges from {path}: {exc}.", field="circuit") from None
    items = data.get("edges", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(
            f"{path} holds no list of edges: give `actpatch circuit edges --json` output or a "
            "list of names like 'a0.h1->a2.h3<v>'.",
            field="circuit",
        )
    names: list[str] = []
    scores: list[float] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and "source" in item and "target" in item:
            names.append(f"{item['source']}->{item['target']}")
            if "score" in item:
                scores.append(float(item["score"]))
        else:
            raise InputError(f"{path}: {item!r} is not an edge.", field="circuit")
    return names, scores if len(scores) == len(names) else None


def _print_mib(mib: dict[str, Any]) -> None:
    """MIB's table: each fraction's pruned circuits and faithfulness, both rankings; CPR, CMD."""
    print("\nMIB evaluation (circuits pruned as MIB prunes them):")
    print(f"  {'edges %':>8} {'|score| n':>10} {'faithful':>9} {'score n':>9} {'faithful':>9}")
    n, f = mib["n_edges"], mib["faithfulness"]
    for i, fraction in enumerate(mib["fractions"]):
        print(
            f"  {fraction * 100:>7.1f}% {n['absolute'][i]:>10,} {_fmt(f['absolute'][i]):>8}% "
            f"{n['signed'][i]:>9,} {_fmt(f['signed'][i]):>8}%"
        )
    print(
        f"\nCPR {mib['cpr']:.4f} (signed ranking; |score| ranking {mib['cpr_absolute']:.4f}), "
        f"CMD {mib['cmd']:.4f} (|score| ranking; signed ranking {mib['cmd_signed']:.4f})"
    )


def _evaluate_ranking(
    args: argparse.Namespace, experiments: list[Any], names: list[str], common: dict[str, Any]
) -> Any:
    """One circuit (--top-n, --threshold or a file of edges without --curve) or a curve."""
    from actpatch.patching.circuit import default_sizes, evaluate_many

    if args.top_n is not None:
        names = names[: args.top_n]
    given = (args.top_n, args.threshold, args.edges, args.circuit)
    if args.curve is None and any(v is not None for v in given):
        return evaluate_many(experiments, edges=names, **common)
    sizes = (
        default_sizes(len(names))
        if args.curve in (None, "auto")
        else [int(v) for v in args.curve.split(",") if v.strip()]
    )
    return evaluate_many(experiments, ranked=names, sizes=sizes, **common)


def _cmd_circuit_evaluate(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import faithfulness_curve
    from actpatch.patching.circuit import evaluate_many, evaluate_mib
    from actpatch.patching.edges import edge_attribution_many

    model = _load(args.model, args.device)
    experiments = _experiments(args, model)
    method = None
    result: Any
    common = {"metric": args.metric, "ablation": args.ablation, "kv": args.kv}
    if args.mib and (args.nodes or args.top_n is not None or args.threshold is not None):
        raise InputError(
            "--mib evaluates MIB's own circuits (the top 0.1% to 100% of the edges): give a "
            "ranking (--circuit FILE, --edges FILE or --method) without --nodes, --top-n or "
            "--threshold.",
            field="circuit",
        )
    if args.mib and args.kv == "grouped":
        raise InputError(
            "MIB's graph is ungrouped (every query head has its own <k> and <v> readers): "
            "leave --kv at ungrouped for --mib.",
            field="kv",
        )
    if args.nodes:
        result = evaluate_many(experiments, nodes=args.nodes.split(","), **common)
    else:
        if args.circuit is not None:
            names, scores = _circuit_file(args.circuit, experiments[0], args.kv)
            method = f"file {args.circuit.name}"
        elif args.edges is not None:
            names, scores = _ranked_edges(args.edges)
            method = f"file {args.edges.name}"
        else:
            ranking = edge_attribution_many(
                experiments,
                args.method,
                steps=args.steps,
                metric=args.metric,
                direction=args.direction or "denoising",
                kv=args.kv,
                max_memory=args.max_memory,
            )
            names = [e.name for e in ranking.edges]
            scores = [e.score for e in ranking.edges]
            method = args.method
        if args.mib:
            if scores is None:
                raise InputError(
                    f"{args.circuit or args.edges} has no scores: MIB ranks edges by score.",
                    field="circuit",
                )
            result = evaluate_mib(
                experiments, names, scores, metric=args.metric, ablation=args.ablation
            )
        elif args.threshold is not None:
            if scores is None:
                raise InputError("--threshold needs edges with scores.", field="circuit")
            names = [n for n, s in zip(names, scores, strict=True) if abs(s) >= args.threshold]
        if not args.mib:
            result = _evaluate_ranking(args, experiments, names, common)
        result.method = method
    payload = result.to_dict()
    saved = _save_json(args.out, "circuit_evaluate.json", payload)
    png = (
        faithfulness_curve(result, args.out / "faithfulness.png")
        if args.out and len(result.points) > 1
        else None
    )
    _warn(result.warnings)
    if args.json:
        print(json.dumps(payload))
        return 0
    print(
        f"circuit evaluation ({result.ablation} ablation) on {result.model} ({result.backend} "
        f"path): metric {result.metric}, {result.total_edges:,} edges in the graph"
    )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    if result.nodes:
        print(f"nodes: {', '.join(result.nodes)}")
    if method:
        print(f"edges ranked by {method}")
    if result.mib is not None:
        _print_mib(result.mib)
    else:
        print(f"\n  {'edges kept':>10} {result.metric:>12} {'faithfulness':>13}")
        for point in result.points:
            print(f"  {point.n_edges:>10,} {point.metric:>+12.4g} {_fmt(point.faithfulness):>12}%")
    print(f"\nevaluation took {result.seconds:.2f} s")
    for saved_path in (saved, png):
        if saved_path is not None:
            print(f"saved {saved_path}")
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    from actpatch.reproduce import reproduce_ioi

    report = reproduce_ioi(args.model, device=args.device, references=args.references or None)
    payload = report.to_dict()
    saved = _save_json(args.out, "reproduce_ioi.json", payload)
    if args.json:
        print(json.dumps(payload, indent=2))
        return 0
    print(report.text())
    if saved is not None:
        print(f"saved {saved}")
    return 0


COMMANDS = {
    "info": cmd_info,
    "patch": cmd_patch,
    "sweep": cmd_sweep,
    "attribute": cmd_attribute,
    "export": cmd_export,
    "serve": cmd_serve,
    "runs": cmd_runs,
    "path": cmd_path,
    "circuit": cmd_circuit,
    "reproduce": cmd_reproduce,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status (0 ok, 2 bad input or model)."""
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ActpatchError as exc:
        flag = FLAGS.get(exc.field or "")
        print(f"error: {exc.message}" + (f" [{flag}]" if flag else ""), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`actpatch ... | head`): stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
