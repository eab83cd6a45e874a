"""`actpatch lens`: the JSON contract; the last layer is the model's own prediction."""

import csv
import json

import pytest
import torch

from tests.cli.conftest import IOI, run
from tests.conftest import IOI_CLEAN


def test_lens_json_contract(capsys, tiny_model_dir, tiny_model):
    code, out, _ = run(capsys, "lens", "--model", tiny_model_dir, *IOI, "--k", 2, "--json")
    assert code == 0
    data = json.loads(out)
    for key in ("clean", "corrupt", "tokens", "model", "backend", "warnings"):
        assert key in data
    for key in ("metric", "target_rank", "top"):
        assert len(data["clean"][key]) == tiny_model.n_layers + 1
    ids = torch.tensor([tiny_model.to_tokens(IOI_CLEAN)])
    with torch.no_grad():
        top = tiny_model.hf_model(ids).logits[0, -1].topk(2).indices
    assert data["clean"]["top"][-1] == tiny_model.to_str_tokens(top)


def test_lens_table(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "lens", "--model", tiny_model_dir, *IOI, "--sublayers")
    assert code == 0
    assert "resid_mid 0" in out and "resid_post" in out


def test_lens_export_csv_is_the_to_pandas_table(capsys, tiny_model_dir, tiny_model, tmp_path):
    import actpatch
    from actpatch.views import logit_lens
    from tests.conftest import IOI_CORRUPT

    path = tmp_path / "lens.csv"
    argv = ["lens", "--model", tiny_model_dir, *IOI, "--k", 2, "--sublayers"]
    code, _, err = run(capsys, *argv, "--export", path)
    assert code == 0 and f"wrote {path}" in err
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    frame = logit_lens(exp, k=2, sublayers=True).to_pandas()
    assert list(rows[0]) == list(frame.columns)
    assert [r["point"] for r in rows] == frame["point"].tolist()
    assert [json.loads(r["clean_top"]) for r in rows] == frame["clean_top"].tolist()
    assert [int(r["corrupt_rank"]) for r in rows] == frame["corrupt_rank"].tolist()
    assert [float(r["clean_metric"]) for r in rows] == frame["clean_metric"].tolist()


def test_lens_refuses_a_direction_it_would_ignore(capsys, tiny_model_dir):
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, "lens", "--model", tiny_model_dir, *IOI, "--direction", "noising")
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --direction" in capsys.readouterr().err
