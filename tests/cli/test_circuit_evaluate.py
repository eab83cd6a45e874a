"""`actpatch circuit evaluate`: circuits, curves, files and MIB's evaluation."""

import json

import pytest

from tests.cli.conftest import IOI, run


def test_circuit_evaluate_nodes_curve_and_file(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--nodes", "a0.h1,m1",
        "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["nodes"] == ["a0.h1", "m1"] and "faithfulness" in data
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--method", "eap",
        "--curve", "0,10,262", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    assert "edges ranked by eap" in out
    saved = json.loads((tmp_path / "circuit_evaluate.json").read_text())
    assert [p["n_edges"] for p in saved["points"]] == [0, 10, 262]
    assert abs(saved["points"][-1]["faithfulness"] - 1) < 1e-4
    assert (tmp_path / "faithfulness.png").stat().st_size > 1000
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps(["a0.h1->m0", "m0->logits"]))
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--edges", edges, "--json"
    )
    assert code == 0
    assert [p["n_edges"] for p in json.loads(out)["points"]] == [2]
    edges.write_text("{}")
    code, _, err = run(capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--edges",
                       edges)  # fmt: skip
    assert code == 2 and "no list of edges" in err


def test_mib_files_round_trip_through_evaluate(capsys, family_dir, tmp_path, tiny_model_dir):
    llama = family_dir("llama")
    code, _, _ = run(
        capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap", "--format", "mib",
        "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    mib = json.loads((tmp_path / "circuit_edges_mib.json").read_text())
    assert mib["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 64}
    assert len(mib["edges"]) == 110 and "a1.h3<k>" in {e.split("->")[1] for e in mib["edges"]}
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", llama, *IOI, "--circuit",
        tmp_path / "circuit_edges_mib.json", "--mib", "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)["mib"]
    assert summary["fractions"] == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    # int(fraction * 110) edges before pruning; all 110 at 100%, where nothing is ablated
    assert summary["n_edges"]["absolute"][-1] == 110
    assert summary["n_edges"]["absolute"][:5] == [0, 0, 0, 0, 0]
    assert summary["faithfulness"]["absolute"][-1] == pytest.approx(1.0, abs=1e-4)
    assert summary["faithfulness"]["absolute"][0] == pytest.approx(0.0, abs=1e-4)
    for key in ("cpr", "cmd", "cpr_absolute", "cmd_signed"):
        assert isinstance(summary[key], float)
    # a file made for another shape is refused, naming both
    code, _, err = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--circuit",
        tmp_path / "circuit_edges_mib.json", "--mib",
    )  # fmt: skip
    assert code == 2
    assert "2 layers x 4 heads" in err and "3 layers x 4 heads" in err


def test_edges_a_parallel_residual_model_lacks_are_refused(capsys, family_dir, tmp_path):
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps(["a1.h0->m1", "input->logits"]))
    code, _, err = run(
        capsys, "circuit", "evaluate", "--model", family_dir("gpt_neox"), *IOI, "--edges", edges
    )
    assert code == 2
    assert "parallel residual" in err and "a0.h0->m1" in err


@pytest.mark.xdist_group("ray")
def test_circuit_evaluate_on_two_workers_prints_the_one_process_curve(
    capsys, tiny_model_dir, ray_session
):
    args = ["circuit", "evaluate", "--model", tiny_model_dir, "--dataset", "ioi:6"]
    args += ["--method", "eap", "--curve", "0,10,50", "--json"]
    code, here, _ = run(capsys, *args)
    assert code == 0
    code, there, _ = run(capsys, *args, "--workers", "2")
    assert code == 0
    mine, theirs = json.loads(here), json.loads(there)
    mine.pop("seconds"), theirs.pop("seconds")
    assert theirs == mine and [p["n_edges"] for p in theirs["points"]] == [0, 10, 50]
