"""The one report tail: warnings on stderr with the option at fault, never stopping a run."""

import json

from tests.cli.conftest import run


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
