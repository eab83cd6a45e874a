"""`actpatch info`: a model's shape and next-token guesses."""

import json

from tests.cli.conftest import run


def test_info_shows_shape_and_next_tokens(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "info", "--model", tiny_model_dir)
    assert code == 0
    assert "3 layers x 4 heads" in out and "next token" in out
    code, out, _ = run(capsys, "info", "--model", tiny_model_dir, "--json")
    data = json.loads(out)
    assert data["n_layers"] == 3 and len(data["top_next_tokens"]) == 10


def test_cuda_graphs_off_a_gpu_is_refused_with_the_fix(capsys, tiny_model_dir):
    code, _, err = run(capsys, "info", "--model", tiny_model_dir, "--cuda-graphs")
    assert code != 0
    assert "--cuda-graphs" in err and "--device cuda" in err
