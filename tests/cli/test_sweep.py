"""`actpatch sweep`: sweeps and ablations, their JSON, tables and files."""

import json

import pytest
import torch

from tests.cli.conftest import IOI, PARIS, run
from tests.conftest import SWEEP_FIELDS


def test_sweep_heads_saves_json_and_heatmap(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--out", tmp_path)
    assert code == 0
    # a random model has no IOI behaviour: its 10 cells are listed as noise, not as the top
    assert "no behaviour to localize (see the warning): the 10 cells" in out and "L0" in out
    data = json.loads((tmp_path / "sweep_z.json").read_text())
    assert data["component"] == "z" and data["metric"] == "logit_diff"
    assert len(data["normalized"]) == 3 and len(data["normalized"][0]) == 4
    assert (tmp_path / "sweep_z.png").stat().st_size > 1000


def test_sweep_resid_with_different_lengths_reports_unpatched(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "sweep", "resid", "--model", tiny_model_dir, *PARIS, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["unpatched_positions"] == [1, 2]
    assert data["tokens"][1:3] == ["Ber", "lin"]
    assert data["raw"][0][1] is None
    for key in SWEEP_FIELDS:
        assert key in data


@pytest.mark.parametrize("component", ["mlp_out", "attn_out", "resid_post"])
def test_sweep_component_flag(capsys, tiny_model_dir, component):
    code, out, _ = run(
        capsys,
        "sweep",
        "resid",
        "--component",
        component,
        "--model",
        tiny_model_dir,
        *IOI,
        "--json",
        "--direction",
        "noising",
    )
    assert code == 0
    data = json.loads(out)
    assert data["component"] == component and data["direction"] == "noising"


def test_sweep_in_bfloat16_within_a_memory_budget(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--dtype",
        "bfloat16",
        "--max-memory",
        "1MB",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["backend"] == "fast" and len(data["raw"]) == 3


def test_dataset_sweep_json_prints_per_pair_and_ci(capsys) -> None:
    from actpatch.cli import main

    assert main(["sweep", "heads", "--model", "demo", "--dataset", "ioi:12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["per_pair"]) == 12 and len(out["per_pair"][0]) == len(out["raw"])
    assert out["ci"]["level"] == 0.95 and len(out["ci"]["low"]) == len(out["normalized"])


def test_batching_flag_picks_how_length_groups_run_and_the_numbers_agree(capsys) -> None:
    """ioi:12 mixes token lengths: one padded batch and one sweep per length give the same
    numbers (the grouped path is the reference), and each result says which ran."""
    from actpatch.cli import main

    out = {}
    for batching in ("grouped", "padded"):
        argv = ["sweep", "heads", "--model", "demo", "--dataset", "ioi:12", "--json"]
        assert main([*argv, "--batching", batching]) == 0
        out[batching] = json.loads(capsys.readouterr().out)
    assert len(out["grouped"]["length_groups"]) > 1
    assert out["grouped"]["batching"] == "grouped" and out["padded"]["batching"] == "padded"
    grouped = torch.tensor(out["grouped"]["per_pair"])
    padded = torch.tensor(out["padded"]["per_pair"])
    assert torch.allclose(padded, grouped, atol=1e-4)


def test_role_sweep_out_saves_a_heatmap_with_role_labels(capsys, tmp_path) -> None:
    from actpatch.cli import main

    args = ["sweep", "resid", "--model", "demo", "--dataset", "ioi:3:4", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "sweep_resid_pre.png").exists() and "S2" in out


def test_sweep_ablate_zero(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--ablate", "zero", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["ablation"] == "zero" and data["direction"] == "noising"
    assert len(data["raw"]) == 3 and len(data["raw"][0]) == 4
    code, out, _ = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--ablate",
        "mean",
        "--out",
        tmp_path,
    )
    assert code == 0 and "mean-ablation sweep" in out
    assert (tmp_path / "sweep_z_mean.png").stat().st_size > 1000


def test_sweep_ablate_refuses_a_direction(capsys, tiny_model_dir):
    code, _, err = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--ablate",
        "zero",
        "--direction",
        "denoising",
    )
    assert code == 2 and "clean run" in err


@pytest.mark.xdist_group("ray")
def test_sweep_on_two_workers_prints_the_one_process_sweep(capsys, tiny_model_dir, ray_session):
    args = ["sweep", "heads", "--model", tiny_model_dir, "--dataset", "ioi:6", "--json"]
    code, here, _ = run(capsys, *args)
    assert code == 0
    code, there, _ = run(capsys, *args, "--workers", "2")
    assert code == 0
    mine, theirs = json.loads(here), json.loads(there)
    mine.pop("seconds"), theirs.pop("seconds")
    assert theirs == mine and len(theirs["length_groups"]) > 1


def test_sweep_with_an_unreachable_ray_cluster_names_it(capsys, tiny_model_dir):
    code, _, err = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, "--dataset", "ioi:6",
        "--ray", "ray://127.0.0.1:1",
    )  # fmt: skip
    assert code != 0
    assert "ray://127.0.0.1:1" in err and "[--ray]" in err
