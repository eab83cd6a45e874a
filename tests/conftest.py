"""Shared fixtures: tiny random-weight GPT-2-shaped models in Hugging Face-format folders.

No test touches the network: HF_HUB_OFFLINE is forced on before anything imports the hub.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The run history (actpatch.history) of every test goes to a temporary folder, never the user's.
import tempfile

os.environ["ACTPATCH_DATA_DIR"] = tempfile.mkdtemp(prefix="actpatch-test-data-")

from pathlib import Path
from typing import Any

import pytest
import torch

# One torch thread per test process: the tests' models are tiny, where threads only wait on
# each other, and `make test` runs two processes (pytest-xdist) to use both cores.
torch.set_num_threads(1)

IOI_CLEAN = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT = "When Mary and John went to the store, Mary gave a drink to"
# What a sweep's JSON must carry (issue 2: the CLI's --json; issue 4: the API's /sweep).
SWEEP_FIELDS = (
    "component",
    "metric",
    "direction",
    "clean",
    "corrupt",
    "raw",
    "normalized",
    "tokens",
    "patched_positions",
    "model",
    "seconds",
)
# What an attribution's JSON must carry (issue 9: the CLI's attribute --json, the API's
# /attribute, the library's to_dict).
ATTRIBUTE_FIELDS = (
    "method",
    "component",
    "metric",
    "direction",
    "clean",
    "corrupt",
    "estimate",
    "normalized",
    "tokens",
    "model",
    "backend",
    "seconds",
    "warnings",
)
# The specification's /patch response fields, in its order (shared/spec/000_*.txt).
SPEC_FIELDS = [
    "clean_prob",
    "corrupt_prob",
    "patched_prob",
    "recovery_pct",
    "clean_rank",
    "corrupt_rank",
    "patched_rank",
    "top_clean",
    "top_corrupt",
    "top_patched",
]


def make_random_gpt2(
    folder: Path,
    *,
    n_layer: int = 3,
    n_head: int = 4,
    n_embd: int = 64,
    seed: int = 0,
    initializer_range: float = 0.3,
) -> Path:
    """Write a GPT-2-architecture model with random weights and GPT-2's tokenizer to `folder`."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from actpatch.tokenizer import save_gpt2_tokenizer

    torch.manual_seed(seed)
    config = GPT2Config(
        n_layer=n_layer,
        n_head=n_head,
        n_embd=n_embd,
        n_positions=64,
        initializer_range=initializer_range,
    )
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    save_gpt2_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-layer, 4-head, d_model 64 GPT-2 with random weights, as a local model folder."""
    return make_random_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    """The tiny model, loaded through actpatch's own loader."""
    import actpatch

    return actpatch.load_model(str(tiny_model_dir))


@pytest.fixture(scope="session")
def family_model(tmp_path_factory: pytest.TempPathFactory):
    """`family_model(name)`: the tiny random-weight model of a Hugging Face family
    (tests/tiny_families.py), loaded through actpatch's loader, built once per session."""
    from tests.tiny_families import load_family

    root = tmp_path_factory.mktemp("tiny-families")
    return lambda name, seed=None: load_family(name, root, seed)


@pytest.fixture(scope="module")
def bridge(tiny_model: Any) -> Any:
    """TransformerLens's bridge over the tiny GPT-2: the reference the engine is tested against."""
    return tiny_model.bridge()


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance with two CPU workers, started once per test process and shut down
    after (the tests that use it share one pytest-xdist process: `xdist_group("ray")`)."""
    import ray

    from actpatch.patching.workers import release_workers

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    release_workers()
    ray.shutdown()
