"""`actpatch dla`: the JSON contract, its sums against the model's own logit difference."""

import csv
import json

import pytest
import torch

from tests.cli.conftest import IOI, run
from tests.conftest import IOI_CLEAN


def test_dla_json_contract_and_sum(capsys, tiny_model_dir, tiny_model):
    code, out, _ = run(capsys, "dla", "--model", tiny_model_dir, *IOI, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["metric"] == "logit_diff"
    for key in ("heads", "mlp", "embed", "total", "actual"):
        assert key in data["clean"] and key in data["corrupt"]
    ids = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)])
    with torch.no_grad():
        logits = tiny_model.hf_model(ids).logits[0, -1]
    mary = tiny_model.to_tokens(" Mary", prepend_bos=False)[0]
    john = tiny_model.to_tokens(" John", prepend_bos=False)[0]
    assert data["clean"]["actual"] == pytest.approx(float(logits[mary] - logits[john]), abs=1e-4)
    assert data["clean"]["total"] == pytest.approx(data["clean"]["actual"], abs=1e-3)


def test_dla_table(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(capsys, "dla", "--model", tiny_model_dir, *IOI, "--out", tmp_path)
    assert code == 0
    assert "by layer x head" in out and "top 10 heads" in out and "actual" in out
    assert (tmp_path / "dla.png").exists()


def test_dla_export_csv_is_the_to_pandas_table(capsys, tiny_model_dir, tiny_model, tmp_path):
    import actpatch
    from actpatch.views import direct_logit_attribution
    from tests.conftest import IOI_CORRUPT

    path = tmp_path / "dla.csv"
    code, _, err = run(capsys, "dla", "--model", tiny_model_dir, *IOI, "--export", path)
    assert code == 0 and f"wrote {path}" in err
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    frame = direct_logit_attribution(exp).to_pandas()
    assert list(rows[0]) == list(frame.columns)
    assert [r["name"] for r in rows] == frame["name"].tolist()
    for run_name in ("clean", "corrupt"):
        ours = [float(r[run_name]) for r in rows]
        assert ours == pytest.approx(frame[run_name].tolist(), rel=1e-5, abs=1e-6)
    assert [r["layer"] for r in rows][:2] == ["", "0"]  # embed has no layer, L0H0 has


def test_flags_dla_does_not_read_are_refused(capsys, tiny_model_dir):
    """DLA attributes logit_diff (with --wrong) or the target's logit, and has no direction:
    --metric and --direction would be ignored, so they are refused instead."""
    for flag in (["--metric", "prob"], ["--direction", "noising"]):
        with pytest.raises(SystemExit) as exit_info:
            run(capsys, "dla", "--model", tiny_model_dir, *IOI, *flag)
        assert exit_info.value.code == 2
        assert f"unrecognized arguments: {flag[0]}" in capsys.readouterr().err
