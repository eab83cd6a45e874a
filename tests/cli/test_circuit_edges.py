"""`actpatch circuit edges`: edge scores, their JSON, graph and verification."""

import json

from tests.cli.conftest import IOI, run


def test_circuit_edges_json_verify_and_graph(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", tiny_model_dir, *IOI, "--method", "eap",
        "--verify", 2, "--json", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    for key in ("edges", "clean", "corrupt", "metric", "model", "seconds"):
        assert key in data
    assert data["n_edges"] == len(data["edges"]) == 262
    assert set(data["edges"][0]) == {"source", "target", "score"}
    assert len(data["verified"]) == 2
    assert (tmp_path / "circuit.png").stat().st_size > 1000


def test_circuit_edges_table(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", tiny_model_dir, *IOI, "--steps", 2, "--top", 5
    )
    assert code == 0
    assert "eap-ig, 2 steps" in out and "top 5 edges" in out and "->" in out


def test_circuit_edges_grouped_names_key_value_heads(capsys, family_dir, tmp_path):
    llama = family_dir("llama")  # 2 layers, 4 query heads sharing 2 key/value heads
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap", "--kv", "grouped",
        "--json", "--out", tmp_path, "--verify", 1,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    # per layer 4 <q> + 2 <k> + 2 <v> readers; layer 0's read 1 writer, layer 1's 6; each MLP
    # reads those and its layer's 4 heads; the logits read all 11: 13 + 58 + 11
    assert data["n_edges"] == 82 and data["kv"] == "grouped"
    assert data["graph"] == {
        "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "kv": "grouped", "parallel": False,
    }  # fmt: skip
    targets = {e["target"] for e in data["edges"]}
    assert {"a1.kv0<k>", "a1.kv1<v>"} <= targets and "a1.h3<k>" not in targets
    assert (tmp_path / "circuit.png").stat().st_size > 1000
    code, out, _ = run(capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap")
    assert code == 0 and "110 edges" in out  # ungrouped: a multi-head model's graph
