"""Shared by the command line's tests: the prompt pairs, `run` (a command's exit status, stdout
and stderr), and the tiny models of other families."""

import pytest

from actpatch.cli import main
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

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


@pytest.fixture(scope="session")
def family_dir(tmp_path_factory):
    """`family_dir(name)`: a folder holding the tiny random model of a Hugging Face family
    (tests/tiny_families.py), written once per session."""
    from tests.tiny_families import save_family

    made: dict[str, object] = {}

    def get(name: str):
        if name not in made:
            made[name] = save_family(name, tmp_path_factory.mktemp(name))
        return made[name]

    return get
