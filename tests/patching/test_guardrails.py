"""Guardrails: each warning fires where the set-up makes the numbers meaningless, and only there.

Expectations come from the models' construction: a planted-circuit model, whose clean run puts
its answer at logit 25 and every non-name token at exactly 0, and tiny random models whose
unembedding rows the test sets by hand. Probabilities quoted in messages are checked against
Hugging Face's own forward pass.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from transformers import GPT2LMHeadModel

import actpatch
from actpatch.datasets import load_dataset
from actpatch.patching.ablation import ablate_many
from actpatch.patching.experiment import dataset_experiments
from actpatch.patching.guardrails import BARELY_DIFFERENT, check
from actpatch.planted import PlantedModel, build_head_circuit
from tests.conftest import IOI_CLEAN, IOI_CORRUPT, make_random_gpt2
from tests.patching.conftest import MIXED, MIXED_IDENTICAL, MIXED_UNSPACED, mixed_groups


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> PlantedModel:
    return build_head_circuit(tmp_path_factory.mktemp("planted-guardrails"))


@pytest.fixture(scope="module")
def planted_model(planted: PlantedModel):
    return actpatch.load_model(str(planted.folder))


def codes(warnings) -> list[str]:
    return [w.code for w in warnings]


def hf_prob(folder: Path, model, prompt: str, token: str) -> float:
    """P(token) at the final position, from Hugging Face's forward pass (not actpatch's)."""
    hf = GPT2LMHeadModel.from_pretrained(str(folder))
    ids = torch.tensor([model.to_tokens(prompt)])
    (token_id,) = model.tokenizer(token, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        return float(hf(ids).logits[0, -1].softmax(-1)[token_id])


def test_a_sound_experiment_has_no_warnings(planted: PlantedModel, planted_model) -> None:
    exp = actpatch.Experiment(planted_model, **planted.prompts())
    assert actpatch.sweep(exp, "z").warnings == []
    assert actpatch.patch(exp, 1, 2).warnings == []
    assert actpatch.patch(exp, 1, 2).to_dict()["warnings"] == []


def test_identical_prompts(planted: PlantedModel, planted_model) -> None:
    p = planted.pairs[0]
    exp = actpatch.Experiment(planted_model, p.clean, p.clean, p.target, p.wrong)
    result = actpatch.sweep(exp, "z")
    assert "identical_prompts" in codes(result.warnings)
    # the runs are the same, so the metric cannot differ either
    assert "no_behaviour" in codes(result.warnings)


def test_answer_without_its_leading_space(planted: PlantedModel, planted_model) -> None:
    p = planted.pairs[0]
    bare = p.target.strip()  # "Mary": another token than " Mary"
    exp = actpatch.Experiment(planted_model, p.clean, p.corrupt, bare, p.wrong)
    result = actpatch.patch(exp, 1, 2)
    (warning,) = [w for w in result.warnings if w.code == "leading_space"]
    assert warning.field == "target_token"
    assert f"did you mean {p.target!r}?" in warning.message
    numbers = re.findall(r"= (\d[\d.]*(?:e[+-]?\d+)?)", warning.message)
    spaced, typed = (float(x.rstrip(".")) for x in numbers)
    assert spaced == pytest.approx(hf_prob(planted.folder, planted_model, p.clean, p.target), 1e-3)
    assert typed == pytest.approx(hf_prob(planted.folder, planted_model, p.clean, bare), 1e-3)
    assert spaced > 0.99 and typed < 1e-4


def test_answers_the_model_cannot_tell_apart(planted: PlantedModel, planted_model) -> None:
    p = planted.pairs[0]
    same = actpatch.Experiment(planted_model, p.clean, p.corrupt, p.target, p.target)
    assert "indistinguishable_answers" in codes(actpatch.sweep(same, "z").warnings)
    # Every non-name token of a planted model has the zero embedding (tied unembedding), so
    # " someone" shares its row with all of them.
    someone = actpatch.Experiment(planted_model, p.clean, p.corrupt, " someone")
    (warning,) = [
        w for w in actpatch.sweep(someone, "z").warnings if w.code == "indistinguishable_answers"
    ]
    weight = GPT2LMHeadModel.from_pretrained(str(planted.folder)).lm_head.weight
    zero_rows = int((weight == 0).all(dim=1).sum())
    assert f"with {zero_rows - 1} other tokens" in warning.message


def test_identical_unembedding_rows(tmp_path: Path) -> None:
    folder = make_random_gpt2(tmp_path / "tied-names")
    hf = GPT2LMHeadModel.from_pretrained(str(folder))
    model = actpatch.load_model(str(folder))
    (mary,) = model.to_tokens(" Mary", prepend_bos=False)
    (john,) = model.to_tokens(" John", prepend_bos=False)
    clean_exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    assert "indistinguishable_answers" not in codes(actpatch.sweep(clean_exp, "z").warnings)
    with torch.no_grad():
        hf.transformer.wte.weight[john] = hf.transformer.wte.weight[mary]  # tied: both sides
    hf.save_pretrained(str(folder))
    model = actpatch.load_model(str(folder))
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    result = actpatch.sweep(exp, "z")
    messages = [w.message for w in result.warnings if w.code == "indistinguishable_answers"]
    assert any("identical unembedding rows" in m for m in messages)
    assert result.clean == result.corrupt == 0.0  # the reason: logit_diff is 0 in every run


def test_clean_run_without_the_behaviour(planted: PlantedModel, planted_model) -> None:
    p = planted.pairs[0]
    # The clean run answers p.target; asking for p.wrong there measures nothing.
    exp = actpatch.Experiment(planted_model, p.clean, p.corrupt, p.wrong, p.target)
    (warning, *_) = [w for w in actpatch.patch(exp, 1, 2).warnings if w.code == "no_behaviour"]
    assert f"its top token is {p.target!r}" in warning.message


@pytest.mark.parametrize("metric", ["prob", "logprob"])
def test_clean_and_corrupted_barely_differ(planted: PlantedModel, planted_model, metric) -> None:
    p = planted.pairs[0]
    # " Bob" is in neither prompt: its logit is 0 in both runs, so every metric barely moves.
    exp = actpatch.Experiment(planted_model, p.clean, p.corrupt, " Bob")
    result = actpatch.sweep(exp, "z", metric)
    assert abs(result.clean - result.corrupt) < BARELY_DIFFERENT[metric]
    barely = [w for w in result.warnings if "barely differ" in w.message]
    assert len(barely) == 1 and barely[0].field == "corrupt_prompt"


def test_threshold_is_on_the_metrics_own_scale(planted: PlantedModel, planted_model) -> None:
    exp = actpatch.Experiment(planted_model, **planted.prompts())
    # The planted clean/corrupted logit_diff is +-50: far above 1, no warning.
    assert check(exp, "logit_diff", 50.0, -50.0) == []
    assert codes(check(exp, "logit_diff", 0.4, -0.4)) == ["no_behaviour"]
    assert codes(check(exp, "rank", 1.0, 1.5)) == ["no_behaviour"]
    assert check(exp, "rank", 1.0, 3.0) == []


def test_a_dataset_counts_pairs_over_the_whole_dataset_not_per_length_group(tiny_model):
    """ioi:16 runs as several length groups; a warning that counts pairs counts all 16, as a
    direct count of the clean runs' top tokens over every group does."""
    import actpatch
    from actpatch.datasets import load_dataset
    from actpatch.patching.experiment import dataset_experiments

    data = load_dataset("ioi:16", tokenizer=tiny_model.tokenizer)
    experiments = dataset_experiments(tiny_model, data)
    assert len(experiments) > 1
    missed = sum(int((e.logits("clean").argmax(-1) != e.target_ids).sum()) for e in experiments)
    result = actpatch.sweep_many(experiments, "z", "logit_diff")
    counted = [w.message for w in result.warnings if " of " in w.message and "pairs" in w.message]
    if 2 * missed >= 16:
        assert any(f"in {missed} of 16 pairs" in m for m in counted), counted
    assert not any(
        f"of {e.n_pairs} pairs" in m for m in counted for e in experiments if e.n_pairs != 16
    )


def named(pairs: tuple[int, ...], n_pairs: int) -> str:
    """How a warning counts and names `pairs` of `n_pairs` (the first five, then '...')."""
    shown = ", ".join(map(str, pairs[:5])) + (", ..." if len(pairs) > 5 else "")
    return f"{len(pairs)} of {n_pairs} pairs ({'pair' if len(pairs) == 1 else 'pairs'} {shown})"


@pytest.mark.parametrize("batching", ["auto", "grouped"])
def test_a_problem_of_some_pairs_is_one_warning_naming_them(
    tiny_model, tiny_model_dir: Path, batching: str
) -> None:
    """Pairs 1, 3 and 6 of MIXED have identical prompts and pairs 2 and 4 an unspaced target,
    by construction, across two length groups: one warning each, counting and naming exactly
    those pairs, whether the groups run apart or padded into one batch."""
    result = actpatch.sweep_many(mixed_groups(tiny_model), "z", batching=batching)
    assert [w.code for w in result.warnings].count("identical_prompts") == 1
    assert [w.code for w in result.warnings].count("leading_space") == 1
    (same,) = [w for w in result.warnings if w.code == "identical_prompts"]
    (space,) = [w for w in result.warnings if w.code == "leading_space"]
    assert same.pairs == MIXED_IDENTICAL == (1, 3, 6)
    assert f"In {named(MIXED_IDENTICAL, len(MIXED))} the clean" in same.message
    assert space.pairs == MIXED_UNSPACED == (2, 4) and space.field == "target_token"
    assert f"In {named(MIXED_UNSPACED, len(MIXED))} the target token 'Mary'" in space.message
    # its probabilities are pair 2's (the first such pair), as Hugging Face computes them
    first = MIXED[MIXED_UNSPACED[0]][0]
    quoted = re.search(
        rf"clean run of pair {MIXED_UNSPACED[0]} P\(' Mary'\) = (\S+) but", space.message
    )
    assert quoted is not None, space.message
    assert float(quoted[1]) == pytest.approx(
        hf_prob(tiny_model_dir, tiny_model, first, " Mary"), 1e-2
    )
    as_json = {w["code"]: w for w in result.to_dict()["warnings"]}
    assert as_json["identical_prompts"]["pairs"] == [1, 3, 6]
    assert as_json["leading_space"]["pairs"] == [2, 4]
    back = type(result).from_dict(json.loads(json.dumps(result.to_dict())))
    assert back.warnings == result.warnings


def test_an_ablation_over_length_groups_names_the_pairs_too(tiny_model) -> None:
    result = ablate_many(mixed_groups(tiny_model), "z", method="mean")
    (same,) = [w for w in result.warnings if w.code == "identical_prompts"]
    assert same.pairs == MIXED_IDENTICAL


def test_a_dataset_where_every_pair_warns_gives_one_warning_per_kind() -> None:
    """The demo model never learned arithmetic: its numbers' unembedding rows are identical
    (read here from the weights), so each of add:12's pairs has a target and wrong answer it
    cannot tell apart, and a target that shares its row. Two warnings, not one per pair."""
    model = actpatch.load_model("demo")
    data = load_dataset("add:12:1", tokenizer=model.tokenizer)
    weight = model.hf_model.get_output_embeddings().weight.detach()

    def token(text: str) -> int:
        (only,) = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        return only

    assert data.wrong is not None
    targets = [token(t) for t in data.target]
    wrongs = [token(w) for w in data.wrong]
    tied = tuple(
        i
        for i, (t, w) in enumerate(zip(targets, wrongs, strict=True))
        if torch.equal(weight[t], weight[w])
    )
    sharing = tuple(i for i, t in enumerate(targets) if int((weight == weight[t]).all(1).sum()) > 1)
    assert tied == sharing == tuple(range(12))  # every pair: what the demo model is
    result = actpatch.sweep_many(dataset_experiments(model, data), "z")
    kinds = [(w.code, w.field) for w in result.warnings]
    assert len(kinds) == len(set(kinds)) == 4, [w.message for w in result.warnings]
    indistinct = {w.field: w for w in result.warnings if w.code == "indistinguishable_answers"}
    assert indistinct["wrong_token"].pairs == tied and indistinct["target_token"].pairs == sharing
    n_targets = len(set(targets))
    assert f"In {named(tied, 12)} the target shares" in indistinct["target_token"].message
    assert f"({n_targets} different targets)" in indistinct["target_token"].message
    assert (
        f"({len(set(zip(targets, wrongs, strict=True)))} different answer pairs)"
        in indistinct["wrong_token"].message
    )
