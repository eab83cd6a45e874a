"""The model registry (operator-chosen models, loud fallback) and the experiment cache."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

import actpatch
import actpatch.api.registry as registry_module
from actpatch.api.registry import ExperimentCache, ModelRegistry
from actpatch.api.settings import Settings
from actpatch.errors import InputError, ModelUnavailableError
from actpatch.models import LoadedModel, load_model


def test_unavailable_default_falls_back_loudly(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(model="no-such-hub-model", fallback_model=str(tiny_model_dir))
    registry = ModelRegistry.load(settings)
    assert registry.default == str(tiny_model_dir)
    [notice] = registry.notices
    assert "'no-such-hub-model' could not be loaded, so" in notice
    assert "instead" in notice
    with pytest.raises(ModelUnavailableError) as error:
        load_model("no-such-hub-model")
    assert error.value.reason.startswith("HF_HUB_OFFLINE=1 is set")
    assert f"Why: {error.value.reason} To run" in notice  # the reason, not the fix's text


def test_without_fallback_the_error_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="could not be loaded"):
        ModelRegistry.load(Settings(model="no-such-hub-model", fallback_model=None))


def test_failed_fallback_says_both(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    settings = Settings(model="no-such-hub-model", fallback_model="also-missing-model")
    with pytest.raises(ModelUnavailableError, match="could not be loaded either"):
        ModelRegistry.load(settings)


def test_extra_models_are_loaded(tiny_model_dir: Path) -> None:
    registry = ModelRegistry.load(
        Settings(model=str(tiny_model_dir), extra_models=[str(tiny_model_dir)])
    )
    assert list(registry.models) == [str(tiny_model_dir)]  # the same folder once


def test_get_refuses_names_it_has_not_loaded(tiny_model: LoadedModel) -> None:
    registry = ModelRegistry.from_models({"tiny": tiny_model}, Settings())
    assert registry.get(None) is tiny_model
    assert registry.name_of(tiny_model) == "tiny"
    with pytest.raises(InputError) as error:
        registry.get("gpt2")
    assert error.value.field == "model"


def test_cache_reuses_and_evicts_least_recently_used(tiny_model: LoadedModel) -> None:
    cache = ExperimentCache(size=2)
    a, hit_a = cache.get(tiny_model, "A cat sat", "A dog sat", " on")
    b, _ = cache.get(tiny_model, "A cat ran", "A dog ran", " on")
    again, hit_again = cache.get(tiny_model, "A cat sat", "A dog sat", " on")
    assert (hit_a, hit_again) == (False, True)
    assert again is a
    cache.get(tiny_model, "A cow sat", "A pig sat", " on")  # evicts b, the least recent
    assert len(cache) == 2
    b_again, hit_b = cache.get(tiny_model, "A cat ran", "A dog ran", " on")
    assert not hit_b and b_again is not b


def test_cache_keys_on_answers_and_empty_wrong_is_none(tiny_model: LoadedModel) -> None:
    cache = ExperimentCache(size=4)
    first, _ = cache.get(tiny_model, "A cat sat", "A dog sat", " on", None)
    same, hit = cache.get(tiny_model, "A cat sat", "A dog sat", " on", "")
    _other, other_hit = cache.get(tiny_model, "A cat sat", "A dog sat", " in")
    assert hit and same is first
    assert not other_hit


def test_bad_input_is_not_cached(tiny_model: LoadedModel) -> None:
    cache = ExperimentCache(size=4)
    with pytest.raises(InputError):
        cache.get(tiny_model, "", "A dog sat", " on")
    assert len(cache) == 0


def _computed(cache: ExperimentCache, model: LoadedModel, word: str) -> int:
    exp, _ = cache.get(model, f"A {word} sat on the", "A dog sat on the", " mat")
    actpatch.patch(exp, 0, 0)  # computes and keeps its runs
    return exp.nbytes


def test_cache_keeps_within_its_bytes_least_recently_used_first(tiny_model: LoadedModel) -> None:
    probe = ExperimentCache(size=8)
    one = _computed(probe, tiny_model, "cat")
    cache = ExperimentCache(size=8, max_bytes=2 * one)
    for word in ("cat", "cow", "pig"):
        _computed(cache, tiny_model, word)
        cache.trim()
    assert len(cache) == 2 and cache.nbytes <= 2 * one
    _, cat_kept = cache.get(tiny_model, "A cat sat on the", "A dog sat on the", " mat")
    _, pig_kept = cache.get(tiny_model, "A pig sat on the", "A dog sat on the", " mat")
    assert (cat_kept, pig_kept) == (False, True)  # the oldest went first


def test_an_experiment_bigger_than_the_budget_goes_alone(tiny_model: LoadedModel) -> None:
    probe = ExperimentCache(size=8)
    one = _computed(probe, tiny_model, "cat")
    cache = ExperimentCache(size=8, max_bytes=int(1.5 * one))
    _computed(cache, tiny_model, "cow")
    big, _ = cache.get(tiny_model, ["A cat sat on the"] * 4, ["A dog sat on the"] * 4, " mat")
    actpatch.patch(big, 0, 0)
    cache.trim()
    _, cow_kept = cache.get(tiny_model, "A cow sat on the", "A dog sat on the", " mat")
    assert cow_kept and len(cache) == 1  # the big one went, the small one stayed


def test_building_an_experiment_never_holds_up_other_lookups(
    tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = ExperimentCache(size=4)
    cache.get(tiny_model, "A cat sat", "A dog sat", " on")
    building, release = threading.Event(), threading.Event()

    class SlowExperiment(registry_module.Experiment):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            building.set()
            release.wait(10)  # as if tokenizing 20,000 prompt pairs
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(registry_module, "Experiment", SlowExperiment)
    slow = threading.Thread(target=cache.get, args=(tiny_model, "A cow sat", "A pig sat", " on"))
    slow.start()
    assert building.wait(10)
    _, hit = cache.get(tiny_model, "A cat sat", "A dog sat", " on")
    still_building = slow.is_alive()  # it cannot finish before `release` is set
    release.set()
    slow.join(10)
    assert hit and still_building  # answered while the other was still building
    assert len(cache) == 2


def test_cuda_graphs_setting_reaches_the_loader(tiny_model_dir: Path) -> None:
    """ACTPATCH_CUDA_GRAPHS on a CPU server stops it with the reason, not a silent eager run."""
    with pytest.raises(InputError, match="need a CUDA GPU"):
        ModelRegistry.load(Settings(model=str(tiny_model_dir), cuda_graphs=True))
