"""`actpatch runs`: the history of runs kept with --save."""

import json


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
