"""The command line: each command on a local model folder, its JSON, and its errors."""

import json
import re

import pytest
import torch

from actpatch.cli import main
from tests.conftest import ATTRIBUTE_FIELDS, IOI_CLEAN, IOI_CORRUPT, SPEC_FIELDS, SWEEP_FIELDS

PARIS = [
    "--clean",
    "Paris is the capital of",
    "--corrupt",
    "Berlin is the capital of",
    "--target",
    " France",
]
IOI = ["--clean", IOI_CLEAN, "--corrupt", IOI_CORRUPT, "--target", " Mary", "--wrong", " John"]


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_info_shows_shape_and_next_tokens(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "info", "--model", tiny_model_dir)
    assert code == 0
    assert "3 layers x 4 heads" in out and "next token" in out
    code, out, _ = run(capsys, "info", "--model", tiny_model_dir, "--json")
    data = json.loads(out)
    assert data["n_layers"] == 3 and len(data["top_next_tokens"]) == 10


def test_patch_json_has_the_spec_fields_and_the_model(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "patch", "--model", tiny_model_dir, *PARIS, "--layer", 1, "--head", 2, "--json"
    )
    assert code == 0
    data = json.loads(out)
    spec = SPEC_FIELDS
    assert list(data)[: len(spec)] == spec
    assert data["model"] == str(tiny_model_dir)
    assert data["top_patched"][0].keys() == {"token", "prob"}


def test_patch_table(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "patch", "--model", tiny_model_dir, *IOI, "--layer", 0, "--head", 1)
    assert code == 0
    assert "recovery" in out and "rank" in out and "corrupted" in out
    assert str(tiny_model_dir) in out


def test_sweep_heads_saves_json_and_heatmap(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--out", tmp_path)
    assert code == 0
    assert "top 10 cells" in out and "L0" in out
    data = json.loads((tmp_path / "sweep_z.json").read_text())
    assert data["component"] == "z" and data["metric"] == "logit_diff"
    assert len(data["normalized"]) == 3 and len(data["normalized"][0]) == 4
    assert (tmp_path / "sweep_z.png").stat().st_size > 1000


def test_sweep_resid_with_different_lengths_reports_unpatched(capsys, tiny_model_dir):
    code, out, _ = run(capsys, "sweep", "resid", "--model", tiny_model_dir, *PARIS, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["unpatched_positions"] == [1, 2]
    assert data["tokens"][1:3] == ["Ber", "lin"]
    assert data["raw"][0][1] is None
    for key in SWEEP_FIELDS:
        assert key in data


@pytest.mark.parametrize("component", ["mlp_out", "attn_out", "resid_post"])
def test_sweep_component_flag(capsys, tiny_model_dir, component):
    code, out, _ = run(
        capsys,
        "sweep",
        "resid",
        "--component",
        component,
        "--model",
        tiny_model_dir,
        *IOI,
        "--json",
        "--direction",
        "noising",
    )
    assert code == 0
    data = json.loads(out)
    assert data["component"] == component and data["direction"] == "noising"


def test_errors_print_a_message_not_a_trace(capsys, tiny_model_dir):
    code, _, err = run(
        capsys,
        "patch",
        "--model",
        tiny_model_dir,
        "--clean",
        "Paris is",
        "--corrupt",
        "Rome is",
        "--target",
        " Marylebone",
        "--layer",
        0,
        "--head",
        0,
    )
    assert code == 2 and err.startswith("error: ") and "Traceback" not in err
    code, _, err = run(capsys, "sweep", "heads", "--model", tiny_model_dir, "--clean", "x")
    assert code == 2 and "--corrupt" in err
    code, _, err = run(capsys, "info", "--model", "gpt2")
    assert code == 2 and "'demo'" in err and err.rstrip().endswith("[--model]")


def test_export_writes_a_folder_that_loads_back(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(capsys, "export", tmp_path / "copy", "--model", tiny_model_dir)
    assert code == 0 and "wrote" in out
    code, out, _ = run(capsys, "info", "--model", tmp_path / "copy", "--json")
    assert code == 0 and json.loads(out)["n_layers"] == 3


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


def test_warnings_go_to_stderr_with_the_option_at_fault(capsys, tiny_model_dir):
    args = ["--clean", "Paris is the capital of", "--corrupt", "Berlin is the capital of"]
    code, out, err = run(
        capsys,
        "patch",
        "--model",
        tiny_model_dir,
        *args,
        "--target",
        "France",
        "--layer",
        0,
        "--head",
        0,
        "--json",
    )
    assert code == 0  # a warning never blocks the run
    assert "did you mean ' France'?" in err and "[--target]" in err
    assert json.loads(out)["warnings"][0]["code"] == "leading_space"


def test_no_progress_bar_when_stderr_is_not_a_terminal(capsys, tiny_model_dir):
    code, _, err = run(capsys, "sweep", "resid", "--model", tiny_model_dir, *IOI)
    assert code == 0 and "cell/s" not in err and "\r" not in err


def test_help_and_argument_errors_load_no_torch():
    """`--help` must answer at once: the CLI module imports neither torch nor transformers."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from actpatch.cli import build_parser\n"
        "build_parser().format_help()\n"
        "heavy = [m for m in ('torch', 'transformers', 'transformer_lens') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    bad = subprocess.run(
        [sys.executable, "-m", "actpatch.cli", "sweep", "--metric", "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "invalid choice" in bad.stderr


def test_sweep_in_bfloat16_within_a_memory_budget(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--dtype",
        "bfloat16",
        "--max-memory",
        "1MB",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert data["backend"] == "fast" and len(data["raw"]) == 3


def test_bad_memory_budget_names_the_flag(capsys, tiny_model_dir):
    code, _, err = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--max-memory", "lots"
    )
    assert code != 0 and "--max-memory" in err


# -- datasets with statistics, history, export (issue 11) --------------------------------------


def test_dataset_sweep_json_prints_per_pair_and_ci(capsys) -> None:
    from actpatch.cli import main

    assert main(["sweep", "heads", "--model", "demo", "--dataset", "ioi:12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["per_pair"]) == 12 and len(out["per_pair"][0]) == len(out["raw"])
    assert out["ci"]["level"] == 0.95 and len(out["ci"]["low"]) == len(out["normalized"])


def test_batching_flag_picks_how_length_groups_run_and_the_numbers_agree(capsys) -> None:
    """ioi:12 mixes token lengths: one padded batch and one sweep per length give the same
    numbers (the grouped path is the reference), and each result says which ran."""
    from actpatch.cli import main

    out = {}
    for batching in ("grouped", "padded"):
        argv = ["sweep", "heads", "--model", "demo", "--dataset", "ioi:12", "--json"]
        assert main([*argv, "--batching", batching]) == 0
        out[batching] = json.loads(capsys.readouterr().out)
    assert len(out["grouped"]["length_groups"]) > 1
    assert out["grouped"]["batching"] == "grouped" and out["padded"]["batching"] == "padded"
    grouped = torch.tensor(out["grouped"]["per_pair"])
    padded = torch.tensor(out["padded"]["per_pair"])
    assert torch.allclose(padded, grouped, atol=1e-4)


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


def test_role_sweep_out_saves_a_heatmap_with_role_labels(capsys, tmp_path) -> None:
    from actpatch.cli import main

    args = ["sweep", "resid", "--model", "demo", "--dataset", "ioi:3:4", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "sweep_resid_pre.png").exists() and "S2" in out


# -- attribution patching and ablation ----------------------------------------------------------


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


def test_sweep_ablate_zero(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--ablate", "zero", "--json"
    )
    assert code == 0
    data = json.loads(out)
    assert data["ablation"] == "zero" and data["direction"] == "noising"
    assert len(data["raw"]) == 3 and len(data["raw"][0]) == 4
    code, out, _ = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--ablate",
        "mean",
        "--out",
        tmp_path,
    )
    assert code == 0 and "mean-ablation sweep" in out
    assert (tmp_path / "sweep_z_mean.png").stat().st_size > 1000


def test_sweep_ablate_refuses_a_direction(capsys, tiny_model_dir):
    code, _, err = run(
        capsys,
        "sweep",
        "heads",
        "--model",
        tiny_model_dir,
        *IOI,
        "--ablate",
        "zero",
        "--direction",
        "denoising",
    )
    assert code == 2 and "clean run" in err


# -- circuits: path patching, edge attribution, circuit evaluation, reproduction ----------------


def test_path_all_senders_to_logits_json_and_files(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "path", "--model", tiny_model_dir, *IOI, "--senders", "all", "--receivers",
        "logits", "--json", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    for key in ("raw", "normalized", "clean", "corrupt", "model", "backend", "seconds", "warnings"):
        assert key in data
    assert len(data["raw"]) == 3 and len(data["raw"][0]) == 4
    assert data["model"] == str(tiny_model_dir) and data["backend"] == "fast"
    assert json.loads((tmp_path / "path.json").read_text())["receivers"] == ["logits"]
    assert (tmp_path / "path.png").stat().st_size > 1000


def test_path_to_a_heads_query_prints_a_table(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "path", "--model", tiny_model_dir, *IOI, "--receivers", "2.1.q,2.1.k",
        "--freeze-mlps",
    )  # fmt: skip
    assert code == 0
    assert "receivers: a2.h1<q>, a2.h1<k>" in out and "MLPs frozen" in out and "top 10" in out


def test_path_bad_receiver_names_the_flag(capsys, tiny_model_dir):
    code, _, err = run(capsys, "path", "--model", tiny_model_dir, *IOI, "--receivers", "2.1")
    assert code == 2
    assert "head's input" in err and "[--receivers]" in err


def test_circuit_edges_json_verify_and_graph(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", tiny_model_dir, *IOI, "--method", "eap",
        "--verify", 2, "--json", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    for key in ("edges", "clean", "corrupt", "metric", "model", "seconds"):
        assert key in data
    assert data["n_edges"] == len(data["edges"]) == 262
    assert set(data["edges"][0]) == {"source", "target", "score"}
    assert len(data["verified"]) == 2
    assert (tmp_path / "circuit.png").stat().st_size > 1000


def test_circuit_edges_table(capsys, tiny_model_dir):
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", tiny_model_dir, *IOI, "--steps", 2, "--top", 5
    )
    assert code == 0
    assert "eap-ig, 2 steps" in out and "top 5 edges" in out and "->" in out


def test_circuit_evaluate_nodes_curve_and_file(capsys, tiny_model_dir, tmp_path):
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--nodes", "a0.h1,m1",
        "--json",
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    assert data["nodes"] == ["a0.h1", "m1"] and "faithfulness" in data
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--method", "eap",
        "--curve", "0,10,262", "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    assert "edges ranked by eap" in out
    saved = json.loads((tmp_path / "circuit_evaluate.json").read_text())
    assert [p["n_edges"] for p in saved["points"]] == [0, 10, 262]
    assert abs(saved["points"][-1]["faithfulness"] - 1) < 1e-4
    assert (tmp_path / "faithfulness.png").stat().st_size > 1000
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps(["a0.h1->m0", "m0->logits"]))
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--edges", edges, "--json"
    )
    assert code == 0
    assert [p["n_edges"] for p in json.loads(out)["points"]] == [2]
    edges.write_text("{}")
    code, _, err = run(capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--edges",
                       edges)  # fmt: skip
    assert code == 2 and "no list of edges" in err


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


def test_circuit_commands_take_a_dataset_of_several_lengths(capsys, tiny_model_dir):
    from actpatch.datasets import load_dataset
    from actpatch.tokenizer import gpt2_tokenizer

    tokenizer = gpt2_tokenizer()
    groups = load_dataset("ioi:6").group_by_length(lambda text: tokenizer(text)["input_ids"])
    assert len(groups) > 1  # the point of the test
    for argv in (
        ["path", "--receivers", "2.1.v"],
        ["circuit", "edges", "--method", "eap", "--verify", 1],
        ["circuit", "evaluate", "--nodes", "a0.h1,m1"],
    ):
        code, out, err = run(capsys, *argv, "--model", tiny_model_dir, "--dataset", "ioi:6",
                             "--json")  # fmt: skip
        assert code == 0, err
        assert json.loads(out)["n_pairs"] == 6
    code, _, err = run(capsys, "circuit", "edges", "--model", tiny_model_dir, "--dataset",
                       "ioi:6", "--by-pos")  # fmt: skip
    assert code == 2 and "one token length" in err and "[--dataset]" in err


# -- circuits on grouped-query and parallel-residual models; MIB's files and evaluation ---------


@pytest.fixture(scope="module")
def family_dir(tmp_path_factory):
    from tests.tiny_families import save_family

    made: dict[str, object] = {}

    def get(name: str):
        if name not in made:
            made[name] = save_family(name, tmp_path_factory.mktemp(name))
        return made[name]

    return get


def test_circuit_edges_grouped_names_key_value_heads(capsys, family_dir, tmp_path):
    llama = family_dir("llama")  # 2 layers, 4 query heads sharing 2 key/value heads
    code, out, _ = run(
        capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap", "--kv", "grouped",
        "--json", "--out", tmp_path, "--verify", 1,
    )  # fmt: skip
    assert code == 0
    data = json.loads(out)
    # per layer 4 <q> + 2 <k> + 2 <v> readers; layer 0's read 1 writer, layer 1's 6; each MLP
    # reads those and its layer's 4 heads; the logits read all 11: 13 + 58 + 11
    assert data["n_edges"] == 82 and data["kv"] == "grouped"
    assert data["graph"] == {
        "n_layers": 2, "n_heads": 4, "n_kv_heads": 2, "kv": "grouped", "parallel": False,
    }  # fmt: skip
    targets = {e["target"] for e in data["edges"]}
    assert {"a1.kv0<k>", "a1.kv1<v>"} <= targets and "a1.h3<k>" not in targets
    assert (tmp_path / "circuit.png").stat().st_size > 1000
    code, out, _ = run(capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap")
    assert code == 0 and "110 edges" in out  # ungrouped: a multi-head model's graph


def test_mib_files_round_trip_through_evaluate(capsys, family_dir, tmp_path, tiny_model_dir):
    llama = family_dir("llama")
    code, _, _ = run(
        capsys, "circuit", "edges", "--model", llama, *IOI, "--method", "eap", "--format", "mib",
        "--out", tmp_path,
    )  # fmt: skip
    assert code == 0
    mib = json.loads((tmp_path / "circuit_edges_mib.json").read_text())
    assert mib["cfg"] == {"n_layers": 2, "n_heads": 4, "parallel_attn_mlp": False, "d_model": 64}
    assert len(mib["edges"]) == 110 and "a1.h3<k>" in {e.split("->")[1] for e in mib["edges"]}
    code, out, _ = run(
        capsys, "circuit", "evaluate", "--model", llama, *IOI, "--circuit",
        tmp_path / "circuit_edges_mib.json", "--mib", "--json",
    )  # fmt: skip
    assert code == 0
    summary = json.loads(out)["mib"]
    assert summary["fractions"] == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    # int(fraction * 110) edges before pruning; all 110 at 100%, where nothing is ablated
    assert summary["n_edges"]["absolute"][-1] == 110
    assert summary["n_edges"]["absolute"][:5] == [0, 0, 0, 0, 0]
    assert summary["faithfulness"]["absolute"][-1] == pytest.approx(1.0, abs=1e-4)
    assert summary["faithfulness"]["absolute"][0] == pytest.approx(0.0, abs=1e-4)
    for key in ("cpr", "cmd", "cpr_absolute", "cmd_signed"):
        assert isinstance(summary[key], float)
    # a file made for another shape is refused, naming both
    code, _, err = run(
        capsys, "circuit", "evaluate", "--model", tiny_model_dir, *IOI, "--circuit",
        tmp_path / "circuit_edges_mib.json", "--mib",
    )  # fmt: skip
    assert code == 2
    assert "2 layers x 4 heads" in err and "3 layers x 4 heads" in err


def test_edges_a_parallel_residual_model_lacks_are_refused(capsys, family_dir, tmp_path):
    edges = tmp_path / "edges.json"
    edges.write_text(json.dumps(["a1.h0->m1", "input->logits"]))
    code, _, err = run(
        capsys, "circuit", "evaluate", "--model", family_dir("gpt_neox"), *IOI, "--edges", edges
    )
    assert code == 2
    assert "parallel residual" in err and "a0.h0->m1" in err


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


def test_a_wide_table_comes_in_blocks_that_fit_the_terminal(capsys, tmp_path, monkeypatch):
    """12 layers as columns (22 + 12 x 7 characters) in an 80-column terminal: two blocks of
    columns, every line within 80 characters, every layer shown once."""
    from tests.conftest import make_random_gpt2

    folder = make_random_gpt2(tmp_path / "wide", n_layer=12, n_head=2, n_embd=32)
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = run(capsys, "sweep", "resid_pre", "--model", folder, *IOI)
    assert code == 0
    table = out.split("by layer x pos")[1].split("top")[0]
    assert max(len(line) for line in table.split("\n")) <= 80
    headers = [line for line in table.split("\n") if line.strip().startswith("pos")]
    assert len(headers) == 2
    shown = [c for h in headers for c in h.split() if c.startswith("L")]
    assert shown == [f"L{i}" for i in range(12)]


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
