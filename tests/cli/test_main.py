"""The command line's entry point: `--help` without torch, errors as one message with the
flag to fix."""

from tests.cli.conftest import IOI, run


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


def test_bad_memory_budget_names_the_flag(capsys, tiny_model_dir):
    code, _, err = run(
        capsys, "sweep", "heads", "--model", tiny_model_dir, *IOI, "--max-memory", "lots"
    )
    assert code != 0 and "--max-memory" in err
