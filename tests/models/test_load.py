"""Loading (actpatch.models.load): local folders, the hub's errors offline, the model asked for by
ACTPATCH_MODEL, dtypes and devices checked first, and a mistyped folder named as one."""

import json
import shutil

import pytest

import actpatch
from actpatch.errors import InputError, ModelUnavailableError


def test_local_folder_loads_with_its_name_and_source(tiny_model, tiny_model_dir):
    assert tiny_model.name == str(tiny_model_dir)
    assert tiny_model.source == "local folder"
    d = tiny_model.describe()
    assert (d["n_layers"], d["n_heads"], d["d_model"], d["d_vocab"]) == (3, 4, 64, 50257)


def test_hub_model_offline_fails_with_a_message_that_teaches():
    with pytest.raises(ModelUnavailableError) as err:
        actpatch.load_model("gpt2")
    message = str(err.value)
    assert "'gpt2'" in message and "HF_HUB_OFFLINE" in message
    assert "'demo'" in message and "folder" in message
    assert "--" not in message  # the core names no CLI flags; the CLI adds its own


def test_missing_folder_and_folder_without_config(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        actpatch.load_model(str(tmp_path / "nowhere"))
    with pytest.raises(InputError, match=r"config\.json"):
        actpatch.load_model(str(tmp_path))


def test_gpt2_folder_without_tokenizer_files_says_which_tokenizer(tiny_model_dir, tmp_path):
    folder = tmp_path / "no-tokenizer"
    folder.mkdir()
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        if (tiny_model_dir / name).exists():
            shutil.copy(tiny_model_dir / name, folder / name)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "gpt2"
    model = actpatch.load_model(str(folder))
    assert model.to_tokens(" France") == [50256, 4881]
    assert any("GPT-2's tokenizer" in note for note in model.notes)


def test_environment_variable_picks_the_model(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("ACTPATCH_MODEL", str(tiny_model_dir))
    assert actpatch.load_model().name == str(tiny_model_dir)


def test_dtype_loads_the_weights_in_it(tiny_model_dir):
    import torch

    model = actpatch.load_model(str(tiny_model_dir), dtype="bfloat16")
    assert model.dtype == torch.bfloat16
    assert model.describe()["dtype"] == "bfloat16"
    assert actpatch.load_model(str(tiny_model_dir)).dtype == torch.float32  # the default


def test_unknown_dtype_and_missing_device_teach(tiny_model_dir):
    with pytest.raises(InputError, match="bfloat16") as err:
        actpatch.load_model(str(tiny_model_dir), dtype="float8")
    assert err.value.field == "dtype"
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA") as err:
            actpatch.load_model(str(tiny_model_dir), device="cuda")
        assert err.value.field == "device"


def test_a_dtype_the_device_cannot_run_is_refused(monkeypatch):
    import torch

    from actpatch.models import check_device

    def fails(*args, **kwargs):
        raise RuntimeError('"addmm_impl_cpu_" not implemented for this dtype')

    monkeypatch.setattr(torch.nn.functional, "layer_norm", fails)
    with pytest.raises(InputError, match="cannot compute in float16") as err:
        check_device("cpu", torch.float16)
    assert err.value.field == "dtype"


def test_a_mistyped_relative_folder_is_no_such_folder_not_a_hub_name(tmp_path, monkeypatch):
    """'models/dem' beside 'models/demo': the folder is named, with the near miss; a hub name
    'org/name' with no such local folder is still read as a hub name."""
    import actpatch

    (tmp_path / "models" / "demo").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(actpatch.InputError) as err:
        actpatch.load_model("models/dem")
    message = err.value.message
    assert f"No such folder: {tmp_path / 'models' / 'dem'}" in message
    assert "'models/demo'" in message and "hub" in message
    from actpatch.models import missing_local_folder

    assert missing_local_folder("openai-community/gpt2") is None


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_model_name_is_refused_not_read_as_the_default(name, monkeypatch):
    monkeypatch.setenv("ACTPATCH_MODEL", "demo")  # the default would load, offline
    with pytest.raises(InputError, match="name is empty") as caught:
        actpatch.load_model(name)
    assert caught.value.field == "model"
    assert actpatch.load_model(None).name == "demo"  # leaving it out still means the default


def test_a_path_of_three_parts_that_does_not_exist_is_no_such_folder(tmp_path, monkeypatch):
    """'path/to/llama' (the docs' placeholder) cannot be a hub name, which has at most two
    parts: it is refused as a missing folder, not sent to the hub cache as a repo id."""
    import actpatch

    monkeypatch.chdir(tmp_path)
    with pytest.raises(actpatch.InputError) as err:
        actpatch.load_model("path/to/llama")
    message = err.value.message
    assert f"No such folder: {tmp_path / 'path' / 'to' / 'llama'}" in message
    assert "'path' is not a folder here" in message and "download" not in message
    assert err.value.field == "model"
