"""Input checks: each error names the field and says how to fix it."""

import pytest
import torch

import actpatch
from actpatch.errors import InputError
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


def test_multi_token_answer_shows_its_tokens_and_suggests_the_space(tiny_model):
    with pytest.raises(InputError) as err:
        actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, "Marylebone")
    assert err.value.field == "target_token"
    assert "tokens" in str(err.value) and "single token" in str(err.value)
    with pytest.raises(InputError, match="leading space"):
        actpatch.Experiment(tiny_model, "The capital is", "The capital was", "Berlin")


def test_empty_and_too_long_prompts(tiny_model):
    with pytest.raises(InputError, match="empty") as err:
        actpatch.Experiment(tiny_model, "  ", IOI_CORRUPT, " Mary")
    assert err.value.field == "clean_prompt"
    with pytest.raises(InputError, match="at most 64") as err:
        actpatch.Experiment(tiny_model, IOI_CLEAN, "word " * 80, " Mary")
    assert err.value.field == "corrupt_prompt"


def test_pairs_must_match_in_number_and_length(tiny_model):
    with pytest.raises(InputError, match="one corrupted prompt per clean"):
        actpatch.Experiment(tiny_model, [IOI_CLEAN, IOI_CLEAN], [IOI_CORRUPT], " Mary")
    with pytest.raises(InputError, match="different token lengths"):
        actpatch.Experiment(
            tiny_model, [IOI_CLEAN, "Short one"], [IOI_CORRUPT, "Short two"], " Mary"
        )


def test_logit_diff_needs_a_wrong_answer(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary")
    with pytest.raises(InputError, match="wrong answer"):
        actpatch.sweep(exp, "z", metric="logit_diff")
    assert actpatch.sweep(exp, "z").metric == "prob"  # the default without a wrong answer


def test_caches_are_reused(tiny_model):
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    first = exp.run("clean")
    assert exp.run("clean") is first
    assert ("z", 0) in exp.run("clean", ["z"]).cache


def test_nbytes_counts_the_cached_runs_and_logits_once(tiny_model):
    clean = [IOI_CLEAN] * 3
    corrupt = [IOI_CORRUPT] * 3
    exp = actpatch.Experiment(tiny_model, clean, corrupt, " Mary")
    assert exp.nbytes == 0  # nothing computed yet
    logits = exp.logits("clean")
    runs = [exp.run("clean"), exp.run("corrupt")]
    config = tiny_model.hf_model.config
    n_pos = exp.clean_tokens.shape[1]
    logits_bytes = 3 * config.vocab_size * 4  # (pairs, d_vocab) float32
    resid_bytes = 2 * 3 * n_pos * config.n_embd * 4  # both runs' resid_pre at one layer
    assert logits.nbytes == logits_bytes
    # One unembedding gave both runs' logits: the corrupted ones are already there, in the
    # same storage, and each run's equal its own final residual's unembedding.
    assert exp.logits("corrupt").untyped_storage().data_ptr() == logits.untyped_storage().data_ptr()
    for which, run in zip(("clean", "corrupt"), runs, strict=True):
        own = tiny_model.hf_model.lm_head(tiny_model.hf_model.transformer.ln_f(run.final))
        assert torch.allclose(exp.logits(which), own, atol=1e-4)
    logits_bytes *= 2  # both runs'
    assert exp.nbytes >= logits_bytes + resid_bytes * config.n_layer
    # The clean and corrupted halves of one batched forward share memory: counted once.
    each_run = sum(
        t.untyped_storage().nbytes() for run in runs for t in (run.final, *run.cache.values())
    )
    assert exp.nbytes < logits_bytes + each_run


def test_a_model_name_instead_of_a_loaded_model_says_to_load_it(tiny_model_dir):
    with pytest.raises(InputError, match=r"model is a str.*actpatch\.load_model\('demo'\)"):
        actpatch.Experiment("demo", IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    with pytest.raises(InputError, match=r"model is a PosixPath"):
        actpatch.Experiment(tiny_model_dir, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": None}, "target token is a NoneType"),
        ({"clean": 5}, "clean prompt is a int"),
        ({"target": [" Mary", 3]}, "Item 1 of the target tokens is a int"),
        ({"corrupt": [IOI_CORRUPT, None]}, "Item 1 of the corrupt prompts is a NoneType"),
    ],
)
def test_prompts_and_answers_must_be_text(tiny_model, kwargs, message):
    given = {"clean": IOI_CLEAN, "corrupt": IOI_CORRUPT, "target": " Mary", "wrong": " John"}
    if isinstance(kwargs.get("corrupt"), list):
        given["clean"] = [IOI_CLEAN, IOI_CLEAN]
    with pytest.raises(InputError, match=message):
        actpatch.Experiment(tiny_model, **{**given, **kwargs})


def test_a_list_of_experiments_where_one_is_expected_points_to_the_many_forms(tiny_model):
    from actpatch.patching.circuit import evaluate
    from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens

    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    calls = [
        lambda e: actpatch.sweep(e, "z"),
        lambda e: actpatch.patch(e, layer=0, head=0),
        lambda e: actpatch.ablate(e, "z", "mean"),
        lambda e: actpatch.attribute(e, "z"),
        lambda e: actpatch.patching.path_patch(e),
        lambda e: actpatch.patching.edge_attribution(e),
        lambda e: actpatch.patching.verify_edges(e, ["m0->logits"]),
        lambda e: evaluate(e, nodes=["m0"]),
        lambda e: attention_pattern(e, 0, 0),
        lambda e: direct_logit_attribution(e),
        lambda e: logit_lens(e),
    ]
    for call in calls:
        with pytest.raises(InputError, match=r"a list of 2 was given.*sweep_many"):
            call([exp, exp])
        with pytest.raises(InputError, match="Expected an Experiment, got a str"):
            call("When Mary and John went to the store")


def test_group_by_length_reads_one_string_as_one_prompt_or_every_pair_s_answer(tiny_model):
    """Strings where lists are expected: one pair, and an answer shared by every pair (as
    `Experiment` reads them), never a list of the string's letters."""
    (one,) = actpatch.group_by_length(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    assert one.n_pairs == 1
    assert one.clean_prompts == [IOI_CLEAN]
    assert one.target_strs == [" Mary"] and one.wrong_strs == [" John"]
    (two,) = actpatch.group_by_length(
        tiny_model, [IOI_CLEAN] * 2, [IOI_CORRUPT] * 2, " Mary", [" John", " Mary"]
    )
    assert two.target_strs == [" Mary", " Mary"] and two.wrong_strs == [" John", " Mary"]


def test_an_experiment_prints_its_model_pairs_and_first_prompts(tiny_model):
    exp = actpatch.Experiment(tiny_model, [IOI_CLEAN] * 3, [IOI_CORRUPT] * 3, " Mary", " John")
    n_tokens = len(tiny_model.tokenizer(IOI_CLEAN)["input_ids"]) + 1  # and the BOS token
    shown = repr(exp)
    assert shown.startswith(f"Experiment({tiny_model.name!r}, fast, 3 pair(s) of ")
    assert f"{n_tokens}/{n_tokens} tokens" in shown
    assert f"clean={IOI_CLEAN!r}" in shown and "wrong=' John'" in shown
