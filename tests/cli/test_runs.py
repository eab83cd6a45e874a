"""`actpatch runs`: the history of runs kept with --save."""

import json

import pytest

from tests.cli.conftest import IOI, run
from tests.conftest import IOI_CLEAN


def test_save_then_runs_list_show_export(capsys, tmp_path, monkeypatch) -> None:
    from actpatch.cli import main

    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    args = ["sweep", "resid", "--model", "demo", "--dataset", "ioi:4:3", "--json", "--save"]
    assert main(args) == 0
    swept = json.loads(capsys.readouterr().out)
    assert swept["position_convention"] == "role" and "S2" in swept["position_labels"]
    assert main(["runs", "list", "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert run["kind"] == "sweep" and run["model"] == "demo"
    assert main(["runs", "show", str(run["id"])]) == 0
    assert json.loads(capsys.readouterr().out)["result"]["normalized"] == swept["normalized"]
    assert main(["runs", "export", str(run["id"]), str(tmp_path / "run.csv")]) == 0
    assert (tmp_path / "run.csv").read_text().startswith("layer,pos,pos_label,raw")
    assert main(["runs", "show", "12345"]) == 2


@pytest.mark.parametrize(
    ("argv", "kind", "what"),
    [
        (["path", "--receivers", "a3.h4<v>"], "path", "senders all → a3.h4<v>"),
        (["circuit", "edges", "--method", "eap"], "edges", "eap"),
        (
            ["circuit", "evaluate", "--method", "eap", "--curve", "0,10"],
            "evaluation",
            "faithfulness",
        ),
        (["attribute", "--method", "atp"], "attribution", "atp z"),
        (["attention", "--layer", "3", "--head", "4"], "attention", "attention of L3H4"),
        (["dla"], "dla", "direct logit_diff attribution"),
        (["lens"], "lens", "logit lens of logit_diff"),
    ],
)
def test_every_kind_of_run_is_kept_with_save(capsys, tmp_path, monkeypatch, argv, kind, what):
    """`--save` keeps circuit and attribution runs too, as the --json output; `runs list` shows
    the title whole: the kind, the model's short name, what ran and the prompts (the IOI prompt
    is 58 characters, not cut at 40)."""
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    code, out, _ = run(capsys, *argv, "--model", "demo", *IOI, "--json", "--save")
    assert code == 0
    printed = json.loads(out)
    code, out, _ = run(capsys, "runs", "list")
    assert code == 0 and str(tmp_path / "data") in out
    line = out.splitlines()[1]
    assert f"{kind} · demo · {what}" in line and repr(IOI_CLEAN) in line
    code, out, _ = run(capsys, "runs", "show", "1")
    stored = json.loads(out)
    assert stored["kind"] == kind and stored["result"] == printed
    assert stored["request"]["clean_prompt"] == IOI_CLEAN


def test_a_circuit_run_exports_as_json_not_as_a_wrong_notebook(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    assert run(capsys, "circuit", "edges", "--model", "demo", *IOI, "--save")[0] == 0
    code, _, err = run(capsys, "runs", "export", "1", tmp_path / "edges.ipynb")
    assert code == 2 and "export it as json" in err and not (tmp_path / "edges.ipynb").exists()
    assert run(capsys, "runs", "export", "1", tmp_path / "edges.json")[0] == 0
    assert json.loads((tmp_path / "edges.json").read_text())["method"] == "eap-ig"
