"""What every command shares: the common flags, the option arguments, loading, the experiments.

The option arguments (`add_option`) take their choices, their default and their help from
`actpatch.patching.options`, where every option list is written once. The core's errors and
warnings name input *fields* (`clean_prompt`, `metric`); `FLAGS` says which option of this
command line each field is, so a message can end with the flag to fix (`[--clean]`).

Nothing here imports torch at load time: `--help` and argument errors must answer at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from actpatch.datasets import DATASET_SPEC_LIST
from actpatch.dtypes import DTYPES
from actpatch.errors import InputError
from actpatch.patching.options import DEFAULT_DIRECTION, OPTIONS

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
    "device_map": "--device-map",
    "cuda_graphs": "--cuda-graphs",
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
    "kv": "--kv",
    "scores": "--circuit",
    "pair": "--pair",
    "k": "--k",
    "workers": "--workers",
    "ray_address": "--ray",
}


def with_flag(message: str, field: str | None) -> str:
    """`message`, followed by the option to fix (` [--clean]`) when the field has one here."""
    flag = FLAGS.get(field or "")
    return message + (f" [{flag}]" if flag else "")


# -- arguments -------------------------------------------------------------------------------


def option_help(option: str) -> str:
    """`OPTIONS[option]`'s choices and default in one line, escaped for argparse's % format."""
    return OPTIONS[option].help().replace("%", "%%")


def add_option(
    p: argparse.ArgumentParser,
    flag: str,
    option: str,
    *,
    what: str = "",
    none_when_left_out: bool = False,
) -> None:
    """An argument whose choices, default and help come from `OPTIONS[option]`, `what` first.

    With `none_when_left_out`, a flag left out reads None instead of the option's default, for
    a command that must tell the two apart (a direction given with an ablation is refused); the
    help still shows the default the command then uses.
    """
    p.add_argument(
        flag,
        default=None if none_when_left_out else OPTIONS[option].default,
        choices=list(OPTIONS[option].choices),
        help=what + option_help(option),
    )


def add_common(p: argparse.ArgumentParser) -> None:
    """--model, --device, --dtype, --json and --out: what every model-running command takes."""
    p.add_argument(
        "--model",
        default=None,
        help="hub name, local Hugging Face-format folder, or 'demo' (default: $ACTPATCH_MODEL "
        "or gpt2)",
    )
    p.add_argument("--device", default="cpu", help="torch device to run on, e.g. cpu or cuda")
    p.add_argument(
        "--device-map",
        default=None,
        metavar="MAP",
        help="spread the model over several devices instead of --device: auto (fill the GPUs in "
        "order, then the CPU), balanced (the blocks evenly over the GPUs) or a JSON file of "
        'module -> device, e.g. {"model.layers.0": "cuda:0", "lm_head": "cpu"}',
    )
    p.add_argument(
        "--dtype",
        default=None,
        choices=list(DTYPES),
        help="; ".join(f"{name}: {what}" for name, what in DTYPES.items()),
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on one CUDA GPU, replay each batch of patched cells from a recorded CUDA graph "
        "(fewer kernel launches; pays when the same prompt lengths come back)",
    )
    p.add_argument("--json", action="store_true", help="print JSON on stdout instead of tables")
    p.add_argument("--out", type=Path, default=None, help="folder to save JSON (and heatmaps) in")


def add_experiment(
    p: argparse.ArgumentParser, *, metric: bool = True, direction: bool = True
) -> None:
    """The experiment: one prompt pair (--clean, --corrupt, --target, --wrong) or --dataset,
    with --metric and --direction where the command reads them (a command that does not
    refuses them, rather than ignoring them)."""
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
    if metric:
        add_option(p, "--metric", "metric")  # default: chosen from --wrong
    if direction:
        add_option(p, "--direction", "direction", none_when_left_out=True)  # see direction()


def add_workers(p: argparse.ArgumentParser) -> None:
    """--workers N and --ray ADDRESS: a dataset's length groups on Ray workers, each holding the
    model once (`actpatch.patching.workers`; needs `pip install 'actpatch[ray]'`)."""
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="compute a --dataset's length groups on N Ray workers (processes started here, or "
        "on --ray's cluster), each loading the model once; the same numbers as one process. "
        "Needs `pip install 'actpatch[ray]'`",
    )
    p.add_argument(
        "--ray",
        dest="ray_address",
        default=None,
        metavar="ADDRESS",
        help="run the workers on this Ray cluster: ray://HOST:10001 (Ray Client), HOST:6379, "
        "or auto (the cluster this machine belongs to); default one worker per CPU (per GPU "
        "with --device cuda) unless --workers says",
    )


def spread(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments that send a dataset's length groups to --workers / --ray."""
    return {"workers": args.workers, "ray_address": args.ray_address}


def add_keep(p: argparse.ArgumentParser) -> None:
    """--save and --export FILE: keep the run in the history, write it to a file."""
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


def direction(args: argparse.Namespace) -> str:
    """The direction asked for, else the default. --direction reads None when left out: an
    ablation refuses a direction given (`options.check_ablation_direction`), and a stored run's
    request keeps only the fields that were given."""
    return str(args.direction or DEFAULT_DIRECTION)


# -- running -----------------------------------------------------------------------------------


def load(
    spec: str | None,
    device: str = "cpu",
    dtype: str | None = None,
    device_map: str | None = None,
    cuda_graphs: bool = False,
) -> Any:
    """The model `--model` names (`actpatch.models.load_model`), on `--device` in `--dtype` (or
    spread by `--device-map`), with `--cuda-graphs`."""
    from actpatch.models import load_model

    return load_model(
        spec, device=device, dtype=dtype, device_map=device_map, cuda_graphs=cuda_graphs
    )


def load_for(args: argparse.Namespace) -> Any:
    """The model a command's --model, --device, --dtype, --device-map and --cuda-graphs ask
    for."""
    return load(args.model, args.device, args.dtype, args.device_map, args.cuda_graphs)


def experiments(args: argparse.Namespace, model: Any) -> list[Any]:
    """The experiments asked for: one per token length of --dataset, or one prompt pair."""
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


def one_experiment(args: argparse.Namespace, model: Any, what: str) -> Any:
    """The one experiment `what` needs: pairs of one token length."""
    pairs = experiments(args, model)
    if len(pairs) > 1:
        raise InputError(
            f"{what} needs prompt pairs of one token length; this dataset has "
            f"{len(pairs)} length groups. Use a single-template dataset.",
            field="dataset",
        )
    return pairs[0]


def model_reference(spec: str) -> str:
    """How a stored run names its model: a local folder or file by its absolute path (so the
    run and its notebook work from any folder), anything else as given."""
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


def request(args: argparse.Namespace, model: Any, **extra: Any) -> dict[str, Any]:
    """What was asked, as the API's request fields (for the history and notebooks)."""
    fields = {
        "model": model_reference(args.model or model.name),
        "dataset": args.dataset,
        "clean_prompt": args.clean,
        "corrupt_prompt": args.corrupt,
        "target_token": args.target,
        "wrong_token": args.wrong,
        "metric": getattr(args, "metric", None),
        "direction": getattr(args, "direction", None),
        **extra,
    }
    return {k: v for k, v in fields.items() if v is not None}


def progress_bar(label: str) -> Any:
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
