"""`actpatch path`: path patching's JSON, table and errors."""

import json

from tests.cli.conftest import IOI, run


def test_path_all_senders_to_logits_json_and_files(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "path", "--model", tiny_model_dir, *IOI, "--senders", "all", "--receivers",
        "logits", "--json", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    for key in ("raw", "normalized", "clean", "corrupt", "model", "backend", "seconds", "warnings"):
        assert key in data
    assert len(data["raw"]) == 3 and len(data["raw"][0]) == 4
    assert data["model"] == str(tiny_model_dir) and data["backend"] == "fast"
    assert json.loads((tmp_path / "path.json").read_text())["receivers"] == ["logits"]
    assert (tmp_path / "path.png").stat().st_size > 1000


def test_path_to_a_heads_query_prints_a_table(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "path", "--model", tiny_model_dir, *IOI, "--receivers", "2.1.q,2.1.k",
        "--freeze-mlps",
    )  # fmt: skip
    assert code == 0
    assert "receivers: a2.h1<q>, a2.h1<k>" in out and "MLPs frozen" in out and "10 senders" in out


def test_path_bad_receiver_names_the_flag(capsys, tiny_model_dir):
    code, _, err = run(capsys, "path", "--model", tiny_model_dir, *IOI, "--receivers", "2.1")
    assert code == 2
    assert "head's input" in err and "[--receivers]" in err
