"""The workbench's limits: pairs and prompt lengths counted before tokenizing, a bounded number
of computations at once, and the experiment cache trimmed to its bytes after each."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

import actpatch
import actpatch.api.registry as registry_module
import actpatch.api.workbench as workbench_module
from actpatch.api.registry import ModelRegistry
from actpatch.api.schemas import PatchRequest
from actpatch.api.settings import Settings
from actpatch.api.workbench import Workbench, respond
from actpatch.errors import InputError
from actpatch.models import LoadedModel

SPEC = {
    "clean_prompt": "Paris is the capital of",
    "corrupt_prompt": "Rome is the capital of",
    "target_token": " France",
    "layer": 1,
    "head": 2,
}


def _workbench(model: LoadedModel, **settings: Any) -> Workbench:
    config = Settings(**settings)
    return Workbench(ModelRegistry.from_models({"tiny": model}, config), config)


def test_too_many_pairs_are_refused_before_anything_is_tokenized(
    tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry_module, "Experiment", lambda *a, **k: pytest.fail("tokenized"))
    workbench = _workbench(tiny_model, max_pairs=64)
    many = {**SPEC, "clean_prompt": ["Paris is"] * 20_000, "corrupt_prompt": ["Rome is"] * 20_000}
    with pytest.raises(InputError) as error:
        workbench.patch(PatchRequest(**many))
    assert error.value.field == "clean_prompt"
    assert "at most 64 prompt pairs" in error.value.message
    assert "ACTPATCH_MAX_PAIRS" in error.value.message


def test_a_prompt_over_the_length_limit_is_refused(tiny_model: LoadedModel) -> None:
    workbench = _workbench(tiny_model, max_prompt_chars=30)
    with pytest.raises(InputError, match="too long: 31 characters") as error:
        workbench.patch(PatchRequest(**{**SPEC, "corrupt_prompt": "x" * 31}))
    assert error.value.field == "corrupt_prompt"


def test_at_most_max_concurrent_runs_compute_at_once(
    tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    workbench = _workbench(tiny_model, max_concurrent_runs=2)
    lock, now, peak = threading.Lock(), [0], [0]
    real_patch = actpatch.patch

    def counting_patch(*args: Any, **kwargs: Any) -> Any:
        with lock:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
        time.sleep(0.05)  # long enough for the others to pile up
        try:
            return real_patch(*args, **kwargs)
        finally:
            with lock:
                now[0] -= 1

    monkeypatch.setattr(workbench_module.actpatch, "patch", counting_patch)
    requests = [PatchRequest(**{**SPEC, "head": h % 4}) for h in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(workbench.patch, requests))
    assert len(answers) == 8 and peak[0] == 2


def test_the_cache_is_trimmed_to_its_bytes_after_each_computation(
    tiny_model: LoadedModel,
) -> None:
    roomy = _workbench(tiny_model)
    roomy.patch(PatchRequest(**SPEC))
    assert len(roomy.experiments) == 1 and roomy.experiments.nbytes > 0
    tight = _workbench(tiny_model, cache_mb=roomy.experiments.nbytes / 2**20 / 2)
    answer = tight.patch(PatchRequest(**SPEC))
    assert answer["cached"] is False
    assert len(tight.experiments) == 0  # it answered, then let the experiment go


def test_answer_lists_count_against_the_pair_limit_too(tiny_model: LoadedModel) -> None:
    workbench = _workbench(tiny_model, max_pairs=2)
    with pytest.raises(InputError, match="at most 2 prompt pairs") as error:
        workbench.patch(PatchRequest(**{**SPEC, "target_token": [" France"] * 3}))
    assert error.value.field == "target_token"


def test_a_result_is_answered_with_the_registrys_name_for_its_model(
    tiny_model: LoadedModel,
) -> None:
    answer = respond({"metric": "prob", "model": "/tmp/tiny-gpt2"}, "tiny", cached=True)
    assert answer == {"metric": "prob", "model": "tiny", "cached": True}
    assert list(answer) == ["metric", "model", "cached"]  # the model keeps its place
    assert _workbench(tiny_model).patch(PatchRequest(**SPEC))["model"] == "tiny"
    assert tiny_model.name != "tiny"  # the engine's own name for it is another


@pytest.mark.xdist_group("ray")
def test_a_dataset_sweep_runs_on_the_ray_workers_the_settings_ask_for(
    tiny_model: LoadedModel, ray_session: Any
) -> None:
    from actpatch.api.schemas import SweepRequest
    from actpatch.patching import workers

    request = SweepRequest(dataset="ioi:6", component="z")
    here = _workbench(tiny_model, keep_runs=False).sweep(request)
    pool = workers.current_pool()
    ran = pool.tasks_run if pool is not None else 0
    there = _workbench(tiny_model, keep_runs=False, workers=2).sweep(request)
    here.pop("seconds"), there.pop("seconds")
    assert there == here
    pool = workers.current_pool()
    assert pool is not None and pool.tasks_run > ran


def test_the_last_computation_in_flight_hands_freed_memory_back(
    tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    from actpatch.api import memory

    released: list[int] = []
    monkeypatch.setattr(memory, "release", lambda: released.append(1) or True)
    workbench = _workbench(tiny_model)
    with workbench.computing():
        with workbench.computing():
            pass
        assert released == []  # another computation is still in flight
    assert released == [1]


def test_memory_release_reaches_the_allocator_here() -> None:
    import sys

    from actpatch.api import memory

    assert memory.release() == sys.platform.startswith("linux")  # glibc's malloc_trim
