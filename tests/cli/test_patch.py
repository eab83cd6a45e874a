"""`actpatch patch`: one patch, its JSON and its table."""

import json

from tests.cli.conftest import IOI, PARIS, run
from tests.conftest import SPEC_FIELDS


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
