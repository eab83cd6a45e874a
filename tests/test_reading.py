"""`actpatch.read_result`: the files the CLI writes (--out, `runs show`), read back into the
result objects they were written from; JSON that is no result is refused, saying why."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import actpatch
from actpatch.cli import main
from actpatch.patching.results import SweepResult
from actpatch.views.results import DLAResult, LensResult
from tests.cli.conftest import IOI


def test_a_sweep_saved_by_the_cli_reads_back_as_the_sweep(tmp_path: Path, capsys) -> None:
    assert main(["sweep", "z", "--model", "demo", *IOI, "--out", str(tmp_path), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    file = tmp_path / "sweep_z.json"
    sweep = actpatch.read_result(file)
    assert isinstance(sweep, SweepResult)
    assert sweep.to_dict() == json.loads(file.read_text()) == printed
    # the numbers are the file's: the demo model's 4 layers x 8 heads, and its top head
    assert tuple(sweep.raw.shape) == (4, 8) and sweep.axes == ("layer", "head")
    (layer, head), value = sweep.top(1)[0]
    assert value == printed["normalized"][layer][head]
    assert actpatch.read_result(str(file)).to_dict() == printed  # a path as text
    assert actpatch.read_result(file.read_text()).to_dict() == printed  # the JSON text


def test_a_dla_saved_by_the_cli_reads_back(tmp_path: Path, capsys) -> None:
    assert main(["dla", "--model", "demo", *IOI, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    written = json.loads((tmp_path / "dla.json").read_text())
    dla = actpatch.read_result(tmp_path / "dla.json")
    assert isinstance(dla, DLAResult) and dla.to_dict() == written
    assert dla.clean.heads[0].tolist() == written["clean"]["heads"][0]


def test_a_stored_run_reads_back_as_its_result(tmp_path: Path, capsys, monkeypatch) -> None:
    """What `actpatch runs show N` prints (the API's GET /runs/{id} too): the run's request
    beside its result; the result is read."""
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    assert main(["patch", "--model", "demo", *IOI, "--layer", "3", "--head", "4", "--save"]) == 0
    capsys.readouterr()
    assert main(["runs", "show", "1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["kind"] == "patch" and "request" in shown
    patch = actpatch.read_result(shown)
    assert isinstance(patch, actpatch.PatchResult)
    assert patch.to_dict() == shown["result"] and patch.index == {"layer": 3, "head": 4}
    # a run stored before results named their kind: the run's kind says it
    del shown["result"]["result"]
    assert actpatch.read_result(shown).to_dict() == {**shown["result"], "result": "patch"}


def test_a_file_written_before_the_result_field_is_known_by_its_fields(
    tmp_path: Path, capsys
) -> None:
    assert main(["lens", "--model", "demo", *IOI, "--out", str(tmp_path)]) == 0
    capsys.readouterr()
    old = json.loads((tmp_path / "lens.json").read_text())
    del old["result"]
    lens = actpatch.read_result(old)
    assert isinstance(lens, LensResult) and lens.labels == old["labels"]


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ({"name": "Mary", "age": 3}, "This JSON is not an actpatch result: it names no result"),
        ('[{"raw": [1.0]}]', "This JSON is not an actpatch result: it is a list"),
        ('{"raw": [1.0', "The text given is not JSON"),
        ({"result": "mystery"}, "its result kind 'mystery' is none of sweep, ablation"),
        ({"result": "sweep", "model": "demo"}, "not a whole actpatch sweep result: it lacks"),
        ({"cfg": {}, "nodes": {}, "edges": {}}, "it is a MIB importance-score file"),
    ],
)
def test_json_that_is_no_result_is_refused_saying_why(source: object, says: str) -> None:
    with pytest.raises(actpatch.InputError) as caught:
        actpatch.read_result(source)  # type: ignore[arg-type]
    assert says in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(actpatch.InputError, match="does not exist: give the path of a JSON file"):
        actpatch.read_result(tmp_path / "nowhere.json")
    with pytest.raises(actpatch.InputError, match="is a folder"):
        actpatch.read_result(tmp_path)
