"""`actpatch runs`: the history of runs kept with --save."""

import csv
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
    is 58 characters, not cut at 40), after the time it took (a dla, lens or attention run had
    none: their results carried no seconds)."""
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    code, out, _ = run(capsys, *argv, "--model", "demo", *IOI, "--json", "--save")
    assert code == 0
    printed = json.loads(out)
    code, out, _ = run(capsys, "runs", "list")
    assert code == 0 and str(tmp_path / "data") in out
    line = out.splitlines()[1]
    assert f"{kind} · demo · {what}" in line and repr(IOI_CLEAN) in line
    # the time column: how long the run took, as its own JSON says (a view's too)
    assert isinstance(printed["seconds"], float) and printed["seconds"] > 0
    assert f"{printed['seconds']:.2f} s  {kind}" in line
    code, out, _ = run(capsys, "runs", "show", "1")
    stored = json.loads(out)
    assert stored["kind"] == kind and stored["result"] == printed
    assert stored["request"]["clean_prompt"] == IOI_CLEAN


def test_a_circuit_run_exports_as_json_or_csv_not_as_a_wrong_notebook(
    capsys, tmp_path, monkeypatch
):
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    assert run(capsys, "circuit", "edges", "--model", "demo", *IOI, "--save")[0] == 0
    code, _, err = run(capsys, "runs", "export", "1", tmp_path / "edges.ipynb")
    assert code == 2 and "export it as json or csv" in err
    assert not (tmp_path / "edges.ipynb").exists()
    assert run(capsys, "runs", "export", "1", tmp_path / "edges.json")[0] == 0
    stored = json.loads((tmp_path / "edges.json").read_text())
    assert stored["method"] == "eap-ig"
    assert run(capsys, "runs", "export", "1", tmp_path / "edges.csv")[0] == 0
    with (tmp_path / "edges.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    # one row per stored edge, strongest first, with the stored score
    assert [(r["source"], r["target"]) for r in rows] == [
        (e["source"], e["target"]) for e in stored["edges"]
    ]
    assert [float(r["score"]) for r in rows] == [e["score"] for e in stored["edges"]]


@pytest.mark.parametrize(
    ("argv", "first"),
    [
        (["patch", "--layer", "3", "--head", "4"], "run"),
        (["path", "--senders", "a3.h4,m0"], "sender"),
        (["circuit", "evaluate", "--method", "eap", "--curve", "0,10"], "n_edges"),
    ],
)
def test_a_command_writes_its_table_with_export_csv(capsys, tmp_path, argv, first):
    """--export x.csv on a patch, path patching or circuit evaluation: its tidy table, whose
    numbers are the run's own (its --json output)."""
    code, out, _ = run(
        capsys, *argv, "--model", "demo", *IOI, "--json", "--export", tmp_path / "x.csv"
    )
    assert code == 0
    printed = json.loads(out)
    with (tmp_path / "x.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert next(iter(rows[0])) == first
    if first == "run":
        assert [float(r["target_prob"]) for r in rows] == [
            printed[f"{run}_prob"] for run in ("clean", "corrupt", "patched")
        ]
    elif first == "sender":
        assert [r["sender"] for r in rows] == printed["senders"] == ["a3.h4", "m0"]
        assert [float(r["raw"]) for r in rows] == printed["raw"]
    else:
        assert [int(r["n_edges"]) for r in rows] == [p["n_edges"] for p in printed["points"]]
        assert [float(r["faithfulness"]) for r in rows] == [
            p["faithfulness"] for p in printed["points"]
        ]


def test_runs_pin_and_unpin_keep_a_run_from_retention(capsys, tmp_path, monkeypatch) -> None:
    """`runs pin ID` keeps a run for good (retention deletes the oldest unpinned runs, never a
    pinned one), `runs list` marks it, `runs unpin ID` gives it back to retention."""
    from actpatch.history import History

    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    history = History()
    first, second = (
        history.store("patch", {"clean_prompt": f"run {i}"}, {"model": "demo"}) for i in (1, 2)
    )
    history.close()
    code, out, _ = run(capsys, "runs", "pin", first)
    assert code == 0 and f"pinned run {first}" in out
    code, out, _ = run(capsys, "runs", "list")
    lines = {int(line.split()[0]): line for line in out.splitlines()[1:]}
    assert lines[first].endswith("(pinned)") and "(pinned)" not in lines[second]
    code, out, _ = run(capsys, "runs", "list", "--json")
    assert {r["id"]: r["pinned"] for r in json.loads(out)} == {first: True, second: False}

    # retention to one unpinned run: a third run deletes the second, never the pinned first
    kept = History(max_runs=1)
    third = kept.store("patch", {"clean_prompt": "run 3"}, {"model": "demo"})
    assert [r.id for r in kept.list()] == [third, first]
    kept.close()

    code, out, _ = run(capsys, "runs", "unpin", first)
    assert code == 0 and f"unpinned run {first}" in out
    code, out, _ = run(capsys, "runs", "list", "--json")
    assert [r["pinned"] for r in json.loads(out)] == [False, False]
    code, _, err = run(capsys, "runs", "pin", "12345")
    assert code == 2 and "There is no run 12345" in err
