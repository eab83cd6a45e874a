"""`actpatch attention`: the JSON contract, numbers equal to the library's, the table and PNG."""

import json

import actpatch
from actpatch.views import attention_pattern
from tests.cli.conftest import IOI, run
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


def test_attention_json_contract_and_numbers(capsys, tiny_model_dir, tiny_model):
    code, out, _ = run(
        capsys, "attention", "--model", tiny_model_dir, *IOI, "--layer", 1, "--head", 3, "--json"
    )
    assert code == 0
    data = json.loads(out)
    for key in (
        "layer",
        "head",
        "tokens",
        "corrupt_tokens",
        "clean",
        "corrupt",
        "model",
        "backend",
        "warnings",
    ):
        assert key in data
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    expected = attention_pattern(exp, 1, 3).clean[0]
    assert abs(data["clean"][-1][0] - float(expected[-1, 0])) < 1e-5
    assert all(abs(sum(row) - 1) < 1e-4 for row in data["corrupt"])


def test_attention_table_and_png(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys,
        "attention",
        "--model",
        tiny_model_dir,
        *IOI,
        "--layer",
        0,
        "--head",
        0,
        "--out",
        tmp_path,
    )
    assert code == 0
    assert "query -> top keys" in out and "corrupted" in out
    assert (tmp_path / "attention_L0H0.png").stat().st_size > 1000


def test_a_missing_head_is_refused_by_flag(capsys, tiny_model_dir):
    code, _, err = run(
        capsys, "attention", "--model", tiny_model_dir, *IOI, "--layer", 0, "--head", 99
    )
    assert code == 2 and "--head" in err and "does not exist" in err
