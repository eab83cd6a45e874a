"""The circuit commands (path, circuit edges, circuit evaluate) together."""

import json

from tests.cli.conftest import run


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
