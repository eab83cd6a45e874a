"""`actpatch reproduce ioi`: the IOI reproduction's errors and its report."""

import json

from tests.cli.conftest import run


def test_reproduce_ioi_without_gpt2_fails_with_a_teaching_error(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    code, out, err = run(capsys, "reproduce", "ioi")
    assert code == 2 and out == ""
    assert "GPT-2 small" in err and "could not be loaded" in err and "[--model]" in err


def test_reproduce_ioi_on_another_model(capsys):
    code, out, _ = run(capsys, "reproduce", "ioi", "--model", "demo", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["model"] == "demo" and data["is_reference_model"] is False
    assert data["findings"][0]["name"] == "clean logit difference"
    assert "not GPT-2 small" in data["notes"][0]
    assert data["has_references"] is False and data["findings"][0]["reference"] == "-"
    code, out, _ = run(capsys, "reproduce", "ioi", "--model", "demo", "--references")
    assert code == 0 and "3.5519" in out and "findings are about GPT-2 small" in out
