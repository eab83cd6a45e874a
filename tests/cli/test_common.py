"""What the commands share: the experiments (--dataset or a prompt pair), the progress bar, the
request a saved run keeps."""

import json

import pytest

from tests.cli.conftest import IOI, run
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


def test_sweep_over_a_dataset_averages_pairs(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, "--dataset", "ioi:6", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["n_pairs"] == 6 and data["metric"] == "logit_diff"
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text(
        json.dumps(
            {"clean": IOI_CLEAN, "corrupt": IOI_CORRUPT, "target": " Mary", "wrong": " John"}
        )
        + "\n"
    )
    code, out, _ = run(
        capsys, "sweep", "resid", "--model", tiny_model_dir, "--dataset", pairs, "--json"
    )
    assert code == 0 and json.loads(out)["n_pairs"] == 1
    code, _, err = run(
        capsys, "sweep", "resid", "--model", tiny_model_dir, "--dataset", "ioi:6", "--clean", "x"
    )
    assert code == 2 and "not both" in err


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys, tiny_model_dir):
    code, _, err = run(capsys, "sweep", "resid", "--model", tiny_model_dir, *IOI)
    assert code == 0 and "cell/s" not in err and "\r" not in err


def test_a_saved_run_names_a_local_model_by_its_absolute_path(
    capsys, tiny_model_dir, tmp_path, monkeypatch
):
    """`--model models/demo --save` from one folder: the history and the exported notebook name
    the folder absolutely, so the notebook runs from anywhere."""
    import shutil

    from actpatch.history import History

    shutil.copytree(tiny_model_dir, tmp_path / "models" / "tiny")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ACTPATCH_DATA_DIR", str(tmp_path / "data"))
    code, _, err = run(capsys, "sweep", "heads", "--model", "models/tiny", *IOI, "--save")
    assert code == 0 and "saved run 1" in err
    (stored,) = History().list(1)
    request = History().get(stored.id).request
    assert request["model"] == str(tmp_path / "models" / "tiny")
    code, _, _ = run(capsys, "runs", "export", stored.id, tmp_path / "rerun.ipynb")
    assert code == 0 and str(tmp_path / "models" / "tiny") in (tmp_path / "rerun.ipynb").read_text()


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (
            '{"clean": ' + "[" * 3_000 + "]" * 3_000 + ', "corrupt": "b", "target": " c"}',
            "lists or objects nested 3001 levels deep",
        ),
        (
            r'{"clean": "When Mary and \ud800 went", "corrupt": "b", "target": " c"}',
            "'clean' holds text that is not valid Unicode: an unpaired surrogate",
        ),
    ],
)
def test_a_dataset_line_nested_too_deep_or_not_unicode_is_refused(
    capsys, tiny_model_dir, tmp_path, line, says
):
    """--dataset refuses what the API refuses in a body, naming the file and the line and how
    to fix it: no RecursionError, no crash when the text is encoded later."""
    pairs = tmp_path / "pairs.jsonl"
    first = {"clean": IOI_CLEAN, "corrupt": IOI_CORRUPT, "target": " Mary"}
    pairs.write_text(json.dumps(first) + "\n" + line + "\n", encoding="utf-8")
    for command in (["dla"], ["sweep", "heads"]):
        code, out, err = run(capsys, *command, "--model", tiny_model_dir, "--dataset", pairs)
        assert code == 2 and out == ""
        assert err.startswith(f"error: {pairs}, line 2: {says}")
        assert err.rstrip().endswith("[--dataset]")
