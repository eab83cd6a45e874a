"""A model over several devices (`models.placement`): an explicit map goes through the same code
path as a split between GPU and CPU and equals the single-device result; bad maps are refused
with the names; the default batch budget follows the device."""

from __future__ import annotations

import json

import pytest
import torch

import actpatch
from actpatch.errors import InputError
from actpatch.patching.budget import DEFAULT_MAX_MEMORY, default_budget, parse_memory
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


def _block_map(hf_model) -> dict[str, str]:
    """Every top-level module and every block named on its own (all on the CPU, the only device
    here): what a GPU/CPU split names, block by block."""
    blocks = hf_model.transformer.h
    named = {f"transformer.h.{i}": "cpu" for i in range(len(blocks))}
    return {
        "transformer.wte": "cpu",
        "transformer.wpe": "cpu",
        **named,
        "transformer.ln_f": "cpu",
        "lm_head": "cpu",
    }


def test_an_explicit_map_gives_the_single_device_sweep(tiny_model_dir, tmp_path):
    plain = actpatch.load_model(str(tiny_model_dir))
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps(_block_map(plain.hf_model)))
    mapped = actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    assert mapped.device_map is not None and set(mapped.device_map.values()) == {"cpu"}
    assert mapped.describe()["devices"] == ["cpu"]
    results = []
    for model in (plain, mapped):
        exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
        results.append(actpatch.sweep(exp, "z"))
    torch.testing.assert_close(results[0].raw, results[1].raw, rtol=0, atol=0)


def test_every_result_reports_the_devices_used(tiny_model_dir, tmp_path):
    """A result names the devices its model's weights are on, as the model does; a result
    stored in the history keeps them."""
    from actpatch.patching.attribution import attribute_components
    from actpatch.patching.edges import edge_attribution
    from actpatch.patching.results.sweeps import SweepResult
    from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens

    plain = actpatch.load_model(str(tiny_model_dir))
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps(_block_map(plain.hf_model)))
    mapped = actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    exp = actpatch.Experiment(mapped, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    results = {
        "sweep": actpatch.sweep(exp, "z"),
        "patch": actpatch.patch(exp, 0, 1),
        "ablation": actpatch.ablate(exp, "z"),
        "attribution": attribute_components(exp, ["z"], "atp", "denoising", "logit_diff")[0],
        "edges": edge_attribution(exp, "eap"),
        "attention": attention_pattern(exp, 0, 1),
        "dla": direct_logit_attribution(exp),
        "lens": logit_lens(exp),
    }
    for kind, result in results.items():
        assert result.to_dict()["devices"] == mapped.devices == ["cpu"], kind
    stored = SweepResult.from_dict(results["sweep"].to_dict())
    assert stored.devices == ["cpu"]


def test_auto_places_everything_somewhere(tiny_model_dir):
    model = actpatch.load_model(str(tiny_model_dir), device_map="auto")
    assert model.device_map and all(d == "cpu" for d in model.device_map.values())


def test_a_device_that_does_not_exist_is_refused_by_name(tiny_model_dir, tmp_path):
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps({"": "cuda:7"}))
    with pytest.raises(InputError) as caught:
        actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    assert caught.value.field == "device_map" and "cuda:7" in caught.value.message


def test_an_unplaced_layer_is_refused_by_name(tiny_model_dir, tmp_path):
    plain = actpatch.load_model(str(tiny_model_dir))
    partial = _block_map(plain.hf_model)
    del partial["transformer.h.1"]
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps(partial))
    with pytest.raises(InputError) as caught:
        actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    assert "transformer.h.1." in caught.value.message and "unplaced" in caught.value.message


def test_a_map_that_is_no_map_says_what_a_map_is(tiny_model_dir):
    with pytest.raises(InputError) as caught:
        actpatch.load_model(str(tiny_model_dir), device_map="everywhere")
    assert "'auto', 'balanced' nor a JSON file" in caught.value.message


def test_the_default_budget_follows_the_device(monkeypatch):
    assert default_budget("cpu") == DEFAULT_MAX_MEMORY == parse_memory(None, "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (40 * 2**30, 80 * 2**30))
    assert default_budget("cuda:0") == 20 * 2**30  # half of the 40 GiB free
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device: (2**29, 80 * 2**30))
    assert default_budget("cuda:0") == DEFAULT_MAX_MEMORY  # never below 1 GiB
    assert parse_memory("2GiB", "cuda:0") == 2 * 2**30  # an explicit budget wins


def test_the_bridge_path_runs_a_mapped_model_too(tiny_model_dir, tmp_path):
    plain = actpatch.load_model(str(tiny_model_dir))
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps(_block_map(plain.hf_model)))
    mapped = actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    ids = torch.tensor([plain.to_tokens(IOI_CLEAN)])
    with torch.no_grad():  # accelerate's hooks on the Hugging Face forward change nothing here
        torch.testing.assert_close(mapped.hf_model(ids).logits, plain.hf_model(ids).logits)
    exp = actpatch.Experiment(mapped, IOI_CLEAN, IOI_CORRUPT, " Mary", " John", backend="bridge")
    ref = actpatch.Experiment(plain, IOI_CLEAN, IOI_CORRUPT, " Mary", " John", backend="fast")
    torch.testing.assert_close(
        actpatch.sweep(exp, "z").raw, actpatch.sweep(ref, "z").raw, atol=1e-4, rtol=1e-4
    )


def test_a_map_that_splits_a_block_is_refused(tiny_model_dir, tmp_path):
    plain = actpatch.load_model(str(tiny_model_dir))
    split = {**_block_map(plain.hf_model), "transformer.h.0.mlp": "cpu"}
    spec = tmp_path / "map.json"
    spec.write_text(json.dumps(split))
    with pytest.raises(InputError) as caught:
        actpatch.load_model(str(tiny_model_dir), device_map=str(spec))
    assert "transformer.h.0.mlp" in caught.value.message
