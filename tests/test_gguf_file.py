"""GGUF files (actpatch.gguf_file, and load_model's GGUF path): what a header says, and the
teaching errors for files that cannot be loaded. The files are small ones written here with the
gguf package's own writer, and read back with its own reader as the reference; no model is
loaded (tests/test_real_model.py loads a real one)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import actpatch
from actpatch.errors import InputError, ModelUnavailableError
from actpatch.gguf_file import read_header

gguf = pytest.importorskip("gguf")


def write_gguf(path: Path, arch: str = "llama", quantized: str = "Q8_0") -> Path:
    """A GGUF file with a few metadata keys (a string array among them) and two tensors: one
    float32, one quantized as `quantized` (its bytes zero when gguf cannot quantize it)."""
    kind = gguf.GGMLQuantizationType[quantized]
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_name("tiny")
    writer.add_block_count(1)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
    writer.add_array("tokenizer.ggml.tokens", ["<s>", "a", "b", "ab"])
    writer.add_tensor("output_norm.weight", np.arange(8, dtype=np.float32))
    block, width = gguf.GGML_QUANT_SIZES[kind]
    try:
        data = gguf.quants.quantize(np.linspace(-1, 1, 4 * block, dtype=np.float32), kind)
    except NotImplementedError:
        data = np.zeros(4 * width, dtype=np.uint8)
    writer.add_tensor("token_embd.weight", data.reshape(4, width), raw_dtype=kind)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_header_says_architecture_quantization_and_tensors(tmp_path):
    path = write_gguf(tmp_path / "tiny.gguf")
    header = read_header(path)
    assert (header.architecture, header.name, header.version) == ("llama", "tiny", 3)
    assert header.quantization == "Q8_0" and header.tensor_types == {"F32": 1, "Q8_0": 1}
    # the tensors' bytes end where the file ends, but for the writer's alignment padding
    assert header.size == path.stat().st_size
    assert header.size - 32 < header.needed_bytes <= header.size
    assert "tiny.gguf" in header.describe() and "Q8_0" in header.describe()
    reference = gguf.GGUFReader(str(path))  # the gguf package's own (slow, complete) reader
    assert [(t.name, t.type, t.offset, t.n_bytes) for t in header.tensors] == [
        (t.name, t.tensor_type.name, int(t.data_offset), int(t.n_bytes)) for t in reference.tensors
    ]


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        (lambda data: b"PK\x03\x04" + data[4:], "does not start with GGUF's magic bytes"),
        (lambda data: data[:-64], "cut short: its tensors need"),
        (lambda data: data[:60], "ends inside its own header"),
        (lambda data: b"", "only 0 bytes long"),
    ],
    ids=["not-gguf", "truncated-data", "truncated-header", "empty"],
)
def test_damaged_files_are_refused_by_name(tmp_path, cut, expected):
    whole = write_gguf(tmp_path / "whole.gguf").read_bytes()
    damaged = tmp_path / "damaged.gguf"
    damaged.write_bytes(cut(whole))
    with pytest.raises(ModelUnavailableError) as info:
        actpatch.load_model(str(damaged))
    message = str(info.value)
    assert expected in message and str(damaged) in message
    assert "download or copy it again" in message and info.value.field == "model"


def test_unsupported_architecture_and_quantization_are_named(tmp_path):
    with pytest.raises(InputError) as info:
        actpatch.load_model(str(write_gguf(tmp_path / "rwkv.gguf", arch="rwkv7")))
    assert "'rwkv7'" in str(info.value) and "llama" in str(info.value)
    assert "Supported architectures" in str(info.value)
    with pytest.raises(InputError) as info:
        actpatch.load_model(str(write_gguf(tmp_path / "q8k.gguf", quantized="Q8_K")))
    assert "Q8_K" in str(info.value) and "Q4_1" in str(info.value)
    assert "Supported quantization types" in str(info.value)


def test_a_file_transformers_cannot_read_is_named(tmp_path):
    """A whole, supported-looking file without a tokenizer: refused, naming the file."""
    path = write_gguf(tmp_path / "no-tokenizer.gguf")
    with pytest.raises(ModelUnavailableError) as info:
        actpatch.load_model(str(path))
    assert str(path) in str(info.value) and "tokenizer" in str(info.value)


def test_gguf_paths(tmp_path):
    with pytest.raises(InputError, match=r"GGUF file '.*missing\.gguf' does not exist"):
        actpatch.load_model(str(tmp_path / "missing.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(InputError, match="not a GGUF file"):
        actpatch.load_model(str(tmp_path / "weights.bin"))
    two = tmp_path / "two"
    two.mkdir()
    write_gguf(two / "a.gguf")
    write_gguf(two / "b.gguf")
    with pytest.raises(InputError, match=r"2 GGUF files \(a\.gguf, b\.gguf\)"):
        actpatch.load_model(str(two))
