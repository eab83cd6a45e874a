"""`actpatch attribute`: attribution patching, its comparison with exact patching, AtP*."""

import json
import re

from tests.cli.conftest import IOI, run
from tests.conftest import ATTRIBUTE_FIELDS


def test_attribute_json_has_the_issues_fields(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "attribute", "--model", tiny_model_dir, *IOI, "--component", "z_by_pos", "--json"
    )
    assert code == 0
    data = json.loads(out)
    for key in ATTRIBUTE_FIELDS:
        assert key in data
    assert data["method"] == "atp" and data["model"] == str(tiny_model_dir)
    n_pos = len(data["tokens"])
    assert len(data["estimate"]) == 3 and len(data["estimate"][0]) == n_pos
    assert len(data["estimate"][0][0]) == 4  # [layer][pos][head]
    assert "exact" not in data


def test_attribute_compare_and_verify_save_json_and_plots(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys,
        "attribute",
        "--model",
        tiny_model_dir,
        *IOI,
        "--method",
        "atp*",
        "--compare",
        "--verify",
        3,
        "--out",
        tmp_path,
    )
    assert code == 0
    assert "agreement with exact patching" in out and "Pearson" in out
    data = json.loads((tmp_path / "attribute_z_atp_star.json").read_text())
    assert data["method"] == "atp*"
    assert len(data["exact"]) == 3 and len(data["exact"][0]) == 4
    assert {"pearson", "spearman", "sign_agreement", "top_k_overlap", "misses"} <= set(
        data["agreement"]
    )
    assert len(data["verified"]) == 3
    for name in ("attribute_z_atp_star.png", "attribute_z_atp_star_scatter.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_attribute_refuses_rank_and_says_what_to_use(capsys, tiny_model_dir):
    code, _, err = run(capsys, "attribute", "--model", tiny_model_dir, *IOI, "--metric", "rank")
    assert code == 2
    assert "logit_diff" in err and "logprob" in err and "[--metric]" in err


def test_attribute_lists_only_corrections_that_change_a_printed_number(capsys, tiny_model_dir):
    """AtP*'s corrections: every listed cell's estimate or ranking score changes as printed
    (a row 'x -> x   y -> y' says nothing); a three-axis component says why no table follows."""
    code, out, _ = run(
        capsys, "attribute", "--model", tiny_model_dir, *IOI, "--method", "atp*",
        "--component", "q",
    )  # fmt: skip
    assert code == 0
    lines = out.split("\n")
    if "cells AtP* corrects most" in out:
        start = next(i for i, line in enumerate(lines) if "cells AtP* corrects most" in line)
        for line in lines[start + 1 :]:
            if not line.startswith("  L"):
                break
            before, after, score_before, score_after = re.findall(r"[-+]\d+\.\d+%", line)[:4]
            assert (before, score_before) != (after, score_after), line
    else:
        assert "at the precision shown" in out
    code, out, _ = run(
        capsys, "attribute", "--model", tiny_model_dir, *IOI, "--component", "z_by_pos"
    )
    heading = next(i for i, line in enumerate(out.split("\n")) if "by layer x pos x head" in line)
    assert "too large for a table" in out.split("\n")[heading + 1]


def test_attribute_over_a_dataset_of_several_lengths(capsys, tiny_model_dir):
    code, out, err = run(
        capsys, "attribute", "--model", tiny_model_dir, "--dataset", "ioi:12", "--json"
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["n_pairs"] == 12 and "one left-padded batch" in data["note"]
    code, _, err = run(
        capsys,
        "attribute",
        "--model",
        tiny_model_dir,
        "--dataset",
        "ioi:12",
        "--component",
        "resid_pre",
    )
    assert code == 2 and "one length group at a time" in err
