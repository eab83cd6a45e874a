"""Attention patterns against TransformerLens's `hook_pattern` through its bridge, on every
fast-path family (grouped-query attention and sliding windows included)."""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.errors import InputError
from actpatch.views import attention_pattern
from tests.tiny_families import FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_pattern_equals_transformer_lens(family_experiment, family):
    exp, cache, _ = family_experiment(family)
    n_heads = exp.runner.n_heads
    for layer in range(exp.runner.n_layers):
        result = attention_pattern(exp, layer, list(range(n_heads)))
        reference = cache[f"blocks.{layer}.attn.hook_pattern"][0].float()  # (head, q, k)
        torch.testing.assert_close(result.clean, reference, atol=1e-5, rtol=0)
        # every row a distribution over the keys the query may see (causal)
        torch.testing.assert_close(result.clean.sum(-1), torch.ones(reference.shape[:2]))
        assert torch.all(result.clean.triu(1) == 0)
    assert result.to_dict()["tokens"] == exp.model.to_str_tokens(exp.clean_tokens[0])


def test_grouped_query_heads_have_their_own_pattern_and_group(family_experiment):
    exp, _, _ = family_experiment("llama")
    runner = exp.runner
    assert runner.n_kv_heads < runner.n_heads  # the tiny Llama groups its heads
    result = attention_pattern(exp, 1, list(range(runner.n_heads)))
    group = runner.n_heads // runner.n_kv_heads
    assert result.kv_heads == [h // group for h in range(runner.n_heads)]
    assert not torch.allclose(result.clean[0], result.clean[1])  # same group, other query


def test_bridge_path_gives_the_same_pattern(family_experiment):
    exp, _, model = family_experiment("gpt2")
    bridge_exp = actpatch.Experiment(
        model,
        exp.clean_prompts,
        exp.corrupt_prompts,
        exp.target_strs,
        exp.wrong_strs,
        backend="bridge",
    )
    ours = attention_pattern(exp, 1, 2)
    theirs = attention_pattern(bridge_exp, 1, 2)
    assert theirs.backend == "bridge" and ours.backend == "fast"
    torch.testing.assert_close(ours.corrupt, theirs.corrupt, atol=1e-5, rtol=0)


def test_json_contract(family_experiment):
    exp, _, _ = family_experiment("gpt2")
    out = attention_pattern(exp, 0, 1).to_dict()
    for key in (
        "layer",
        "head",
        "tokens",
        "corrupt_tokens",
        "clean",
        "corrupt",
        "model",
        "backend",
        "warnings",
    ):
        assert key in out
    n = len(out["tokens"])
    assert len(out["clean"]) == n and all(len(row) == n for row in out["clean"])
    assert abs(sum(out["corrupt"][-1]) - 1) < 1e-5


@pytest.mark.parametrize(("layer", "head", "field"), [(9, 0, "layer"), (0, 99, "head")])
def test_a_missing_layer_or_head_is_refused_by_name(family_experiment, layer, head, field):
    exp, _, _ = family_experiment("gpt2")
    with pytest.raises(InputError) as caught:
        attention_pattern(exp, layer, head)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("layer", "head", "pair", "field"),
    [("1", 0, 0, "layer"), (0, "3", 0, "head"), (0, [0, 1.5], 0, "head"), (0, 0, None, "pair")],
)
def test_a_layer_head_or_pair_that_is_not_a_whole_number_is_refused_by_name(
    family_experiment, layer, head, pair, field
):
    exp, _, _ = family_experiment("gpt2")
    with pytest.raises(InputError, match="give a whole number") as caught:
        attention_pattern(exp, layer, head, pair)
    assert caught.value.field == field


def test_numpy_integers_are_the_numbers_they_are(family_experiment):
    np = pytest.importorskip("numpy")
    exp, _, _ = family_experiment("gpt2")
    by_numpy = attention_pattern(exp, np.int64(1), np.int64(2)).to_dict()
    by_int = attention_pattern(exp, 1, 2).to_dict()
    assert by_numpy["clean"] == by_int["clean"] and by_numpy["head"] == 2
