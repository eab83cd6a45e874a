"""`actpatch export`: a model written as a folder that loads back."""

import json

from tests.cli.conftest import run


def test_export_writes_a_folder_that_loads_back(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(capsys, "export", tmp_path / "copy", "--model", tiny_model_dir)
    assert code == 0 and "wrote" in out
    code, out, _ = run(capsys, "info", "--model", tmp_path / "copy", "--json")
    assert code == 0 and json.loads(out)["n_layers"] == 3
