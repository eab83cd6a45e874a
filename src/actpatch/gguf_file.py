"""A GGUF file's header: which model it holds, how it is quantized, and whether it is whole.

GGUF is llama.cpp's file format: the magic bytes "GGUF", a version, key/value metadata (the
architecture, its hyper-parameters, the tokenizer's vocabulary), one record per tensor (name,
shape, quantization type, offset), then the tensors' bytes. transformers loads such a file with
the `gguf` package, de-quantizing every tensor, which takes seconds and fails late and vaguely
on a file it cannot use. `read_header` reads only the header, through a memory map, in a
fraction of a second, so that `check_loadable` can refuse first, by name and with what is
supported: a file that is not GGUF or is cut short (its tensors reach past its end), an
architecture transformers does not convert, a quantization type `gguf` cannot de-quantize.
"""

from __future__ import annotations

import mmap
import struct
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from actpatch.errors import InputError, ModelUnavailableError

# Scalar value types of GGUF metadata, by their code: struct format.
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q"}
_SCALARS[12] = "d"
_STRING, _ARRAY = 8, 9
# The header keys kept (everything else, the tokenizer's arrays above all, is skipped).
_KEPT = ("general.architecture", "general.name", "general.file_type", "general.alignment")
# Architectures transformers reads from GGUF that are not causal language models.
_NOT_CAUSAL = ("t5", "umt5", "t5encoder")


class _Truncated(Exception):
    """The header claims more bytes than the file has."""


@dataclass(frozen=True)
class GGUFTensor:
    """One tensor's record: its name, quantization type, shape and where its bytes are."""

    name: str
    type: str  # e.g. "Q4_1", "F32"
    shape: tuple[int, ...]  # GGUF's order: the fastest-varying dimension first
    offset: int  # from the start of the file
    n_bytes: int


@dataclass(frozen=True)
class GGUFHeader:
    """What a GGUF file's header says: architecture, quantization, tensors, and its extent."""

    path: Path
    version: int
    architecture: str
    name: str | None
    file_type: str | None  # llama.cpp's name for the whole file's quantization, e.g. "Q4_1"
    tensor_types: dict[str, int]  # quantization type -> how many tensors have it
    tensors: tuple[GGUFTensor, ...]
    needed_bytes: int  # where the last tensor's bytes end
    size: int  # the file's size in bytes

    @property
    def quantization(self) -> str:
        """The file's quantization ("Q4_1"): its declared file type, else its commonest
        non-float32 tensor type, else "F32"."""
        if self.file_type:
            return self.file_type
        quantized = [t for t in self.tensor_types if t != "F32"]
        return max(quantized, key=self.tensor_types.__getitem__) if quantized else "F32"

    def describe(self) -> str:
        """One line: the file, its architecture, its quantization and its tensor types."""
        types = ", ".join(f"{n} {t}" for t, n in sorted(self.tensor_types.items()))
        return (
            f"GGUF file {self.path.name} ({self.architecture}, quantization {self.quantization}; "
            f"tensors: {types})"
        )


def read_header(path: str | Path) -> GGUFHeader:
    """The header of the GGUF file at `path`; a teaching error if it is not a whole GGUF file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size < 24:
                raise _corrupt(path, f"it is only {size} bytes long, shorter than a GGUF header")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
                if data[:4] != b"GGUF":
                    raise _corrupt(
                        path,
                        f"it does not start with GGUF's magic bytes (it starts {data[:4]!r})",
                    )
                try:
                    return _parse(path, data, size)
                except (_Truncated, struct.error):
                    raise _corrupt(path, "it ends inside its own header") from None
    except OSError as exc:
        raise ModelUnavailableError(
            f"Cannot read the GGUF file {str(path)!r}: {exc.strerror or exc}.", field="model"
        ) from None


def _parse(path: Path, data: mmap.mmap, size: int) -> GGUFHeader:
    """The header of `data` (a whole GGUF file, mapped), after its magic bytes."""
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, LlamaFileType

    offset = 4

    def take(fmt: str) -> int | float | bool:
        nonlocal offset
        width = struct.calcsize("<" + fmt)
        if offset + width > size:
            raise _Truncated
        (value,) = struct.unpack_from("<" + fmt, data, offset)
        offset += width
        return value  # type: ignore[no-any-return]

    def string() -> str:
        nonlocal offset
        length = int(take("Q"))
        if offset + length > size:
            raise _Truncated
        text = bytes(data[offset : offset + length]).decode("utf-8", errors="replace")
        offset += length
        return text

    def skip(kind: int) -> None:
        nonlocal offset
        if kind == _STRING:
            length = int(take("Q"))  # read before adding: take() moves the offset
            offset += length
        elif kind == _ARRAY:
            item, count = int(take("I")), int(take("Q"))
            if count > size:
                raise _Truncated  # more items than the file has bytes
            if item in _SCALARS:
                offset += count * struct.calcsize("<" + _SCALARS[item])
            else:
                for _ in range(count):
                    skip(item)
        elif kind in _SCALARS:
            offset += struct.calcsize("<" + _SCALARS[kind])
        else:
            raise _corrupt(path, f"its header has a value of unknown type {kind}")
        if offset > size:
            raise _Truncated

    version = int(take("I"))
    if version not in (2, 3):
        hint = " (a big-endian file?)" if version > 0xFFFF else ""
        raise _corrupt(path, f"its GGUF version is {version}{hint}; versions 2 and 3 are read")
    n_tensors, n_keys = int(take("Q")), int(take("Q"))
    if n_tensors > size or n_keys > size:
        raise _corrupt(path, f"its header claims {n_tensors:,} tensors and {n_keys:,} keys")
    meta: dict[str, object] = {}
    for _ in range(n_keys):
        key, kind = string(), int(take("I"))
        if key in _KEPT and kind == _STRING:
            meta[key] = string()
        elif key in _KEPT and kind in _SCALARS:
            meta[key] = take(_SCALARS[kind])
        else:
            skip(kind)
    tensors = []
    for _ in range(n_tensors):
        name = string()
        dims = [int(take("Q")) for _ in range(int(take("I")))]
        tensors.append((name, dims, int(take("I")), int(take("Q"))))
    alignment = int(meta.get("general.alignment", 32))  # type: ignore[call-overload]
    start = -(-offset // alignment) * alignment  # the tensors' bytes begin aligned
    records = []
    for name, dims, code, where in tensors:
        try:
            kind = GGMLQuantizationType(code)
        except ValueError:
            raise _corrupt(path, f"tensor {name!r} has unknown type code {code}") from None
        block, width = GGML_QUANT_SIZES[kind]
        elements = 1
        for d in dims:
            elements *= d
        records.append(
            GGUFTensor(name, kind.name, tuple(dims), start + where, elements // block * width)
        )
    needed = max([start] + [t.offset + t.n_bytes for t in records])
    if "general.architecture" not in meta:
        raise _corrupt(path, "its header names no architecture (general.architecture)")
    file_type = meta.get("general.file_type")
    type_name = None
    if isinstance(file_type, int) and file_type in {t.value for t in LlamaFileType}:
        type_name = LlamaFileType(file_type).name.removeprefix("MOSTLY_")
    header = GGUFHeader(
        path=path,
        version=version,
        architecture=str(meta["general.architecture"]),
        name=str(meta["general.name"]) if "general.name" in meta else None,
        file_type=type_name if type_name not in (None, "GUESSED") else None,
        tensor_types=dict(Counter(t.type for t in records)),
        tensors=tuple(records),
        needed_bytes=needed,
        size=size,
    )
    if needed > size:
        raise _corrupt(
            path,
            f"it is cut short: its tensors need {needed:,} bytes but the file has {size:,}",
        )
    return header


def _corrupt(path: Path, why: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"The GGUF file {str(path)!r} cannot be loaded: {why}. The file is damaged or was not "
        "fully downloaded: download or copy it again (and compare its size with the source's).",
        field="model",
        reason=f"the GGUF file {path.name} is damaged ({why})",
    )


def gguf_architectures() -> list[str]:
    """The GGUF architectures transformers converts to a causal language model."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(
        a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer", *_NOT_CAUSAL)
    )


def dequantizable(type_name: str) -> bool:
    """Whether the `gguf` package de-quantizes tensors of this type (tried on one zero block)."""
    import numpy as np
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, dequantize

    kind = GGMLQuantizationType[type_name]
    width = GGML_QUANT_SIZES[kind][1]  # bytes per block
    try:
        dequantize(np.zeros((1, width), dtype=np.uint8), kind)
    except (NotImplementedError, ValueError, TypeError):
        return False
    return True


def check_loadable(header: GGUFHeader) -> None:
    """Raise an InputError naming what transformers cannot load in this GGUF file, if anything."""
    from gguf import GGMLQuantizationType

    supported = gguf_architectures()

    # llama.cpp writes some names without transformers' underscores ("qwen2moe", "gpt-oss")
    def plain(name: str) -> str:
        return name.replace("_", "").replace("-", "")

    if plain(header.architecture) not in {plain(a) for a in supported}:
        raise InputError(
            f"The GGUF file {header.path.name!r} holds a {header.architecture!r} model, which "
            "transformers cannot load from GGUF. Supported architectures: "
            + ", ".join(supported)
            + ". Use a GGUF file of one of these, or the model's Hugging Face-format folder.",
            field="model",
        )
    bad = sorted(t for t in header.tensor_types if not dequantizable(t))
    if bad:
        types = [t.name for t in GGMLQuantizationType if dequantizable(t.name)]
        raise InputError(
            f"The GGUF file {header.path.name!r} has tensors quantized as {', '.join(bad)}, which "
            "the gguf package cannot de-quantize. Supported quantization types: "
            + ", ".join(types)
            + ". Use a file quantized with one of these (e.g. Q8_0, Q4_K), or an unquantized one.",
            field="model",
        )


__all__ = [
    "GGUFHeader",
    "GGUFTensor",
    "check_loadable",
    "dequantizable",
    "gguf_architectures",
    "read_header",
]
