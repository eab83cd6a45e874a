"""`actpatch attention`: the JSON contract, numbers equal to the library's, the table and PNG."""

import csv
import json

import pytest

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
    assert code == 2 and "--head" in err and "head 99 is out of range" in err


def test_attention_export_csv_is_the_to_pandas_table(capsys, tiny_model_dir, tiny_model, tmp_path):
    path = tmp_path / "pattern.csv"
    argv = ["attention", "--model", tiny_model_dir, *IOI, "--layer", 1, "--head", 3]
    code, _, err = run(capsys, *argv, "--export", path)
    assert code == 0 and f"wrote {path}" in err
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    frame = attention_pattern(exp, 1, 3).to_pandas()
    assert list(rows[0]) == list(frame.columns) and len(rows) == len(frame)
    assert [r["key_token"] for r in rows] == frame["key_token"].tolist()
    weights = [float(r["weight"]) for r in rows]
    assert weights == pytest.approx(frame["weight"].tolist(), rel=1e-5, abs=1e-7)
