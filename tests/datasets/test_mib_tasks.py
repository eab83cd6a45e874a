"""MIB's tasks as generated datasets (actpatch.datasets.mib_tasks), on GPT-2's tokenizer and on
two tiny SentencePiece-convention tokenizers built here: one that reads " Mary" as '▁Mary', and
one in the "legacy" style of Llama's, which prefixes '▁' to a text's start and so reads " Mary"
as '▁', '▁Mary' (its answers are written "Mary"). Every expected value is computed here from the
prompt text or the tokenizer, never read from the generator."""

from __future__ import annotations

import itertools
import re
from typing import Any

import pytest

from actpatch.datasets import IOI_NAMES, ioi, load_dataset
from actpatch.datasets.mib_tasks import (
    MCQA_COLORS,
    MIB_IOI_TEMPLATES,
    answer_form,
    arithmetic,
    mcqa,
    mib_ioi,
)
from actpatch.errors import InputError

TINY_NAMES = ("Mary", "John", "Anna", "Tom", "Kate", "Paul", "Sarah", "Jack")
TINY_COLORS = ("red", "blue", "green", "white")


def _corpus() -> list[str]:
    """A few sentences in the three tasks' shapes: their words become the tiny vocabulary."""
    lines = [
        f"When {a} and {b} went to the store, {b} gave a drink to {a}"
        for a, b in itertools.permutations(TINY_NAMES, 2)
    ]
    lines += [
        f"{a} {sign} {b} = {r}"
        for a in range(10)
        for b in range(10)
        for sign, r in (("+", a + b), ("-", a - b))
        if r >= 0
    ]
    lines += [
        f"Question: The ball is {color}. What color is the ball?\n"
        + "\n".join(f"{label}. {c}" for label, c in zip(labels, TINY_COLORS, strict=True))
        + f"\nAnswer: {labels[TINY_COLORS.index(color)]}"
        for color in TINY_COLORS
        for labels in ("ABCD", "EFGH", "IJKL")
    ]
    return lines * 3


def _sentencepiece_like(legacy: bool) -> Any:
    """A tiny BPE with the '▁' convention, a BOS added by default, trained in-process."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    split = [pre_tokenizers.Split("\n", "isolated"), pre_tokenizers.Punctuation("isolated")]
    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="first"), *split]
    )
    core.decoder = decoders.Metaspace(prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False
    )
    core.train_from_iterator(_corpus(), trainer)
    if legacy:  # Llama's legacy tokenizer: '▁' before the text, every space a '▁'
        core.normalizer = normalizers.Sequence(
            [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
        )
        core.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(prepend_scheme="never"), *split]
        )
    bos = ("<s>", core.token_to_id("<s>"))
    core.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[bos])
    return PreTrainedTokenizerFast(
        tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Any]:
    from actpatch.tokenizer import gpt2_tokenizer

    return {
        "gpt2": gpt2_tokenizer(),
        "sentencepiece": _sentencepiece_like(legacy=False),
        "legacy": _sentencepiece_like(legacy=True),
    }


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _word_at(tokenizer: Any, prompt: str, position: int) -> str:
    """The text of the token at `position` of `prompt` (BOS = 0), spaces and '▁' stripped."""
    return str(tokenizer.decode([_ids(tokenizer, prompt)[position - 1]])).strip(" ▁")


def _check_answers(tokenizer: Any, data: Any) -> None:
    """Each answer is one token, and the one the model reads after its prompt and a space."""
    for prompts, answers in ((data.clean, data.target), (data.corrupt, data.wrong)):
        for prompt, answer in zip(prompts, answers, strict=True):
            (answer_id,) = _ids(tokenizer, answer)
            after = _ids(tokenizer, f"{prompt} {answer.strip()}")
            assert after == [*_ids(tokenizer, prompt), answer_id], (prompt, answer)


def test_answer_forms_follow_each_tokenizers_space_convention(tokenizers):
    assert answer_form(tokenizers["gpt2"], "to", "Mary") == " Mary"
    assert answer_form(tokenizers["sentencepiece"], "to", "Mary") == " Mary"
    assert answer_form(tokenizers["legacy"], "to", "Mary") == "Mary"
    assert _ids(tokenizers["legacy"], " Mary") != _ids(tokenizers["legacy"], "Mary")
    assert answer_form(tokenizers["gpt2"], "to", "Nikankin") is None  # several GPT-2 tokens
    assert answer_form(tokenizers["sentencepiece"], "to", "Michael") is None  # not in its vocab


@pytest.mark.parametrize("name", ["gpt2", "sentencepiece", "legacy"])
@pytest.mark.parametrize("counterfactual", ["s2_io_flip", "abc"])
def test_mib_ioi(tokenizers, name, counterfactual):
    tokenizer = tokenizers[name]
    data = mib_ioi(12, 3, tokenizer=tokenizer, counterfactual=counterfactual)
    _check_answers(tokenizer, data)
    if name != "gpt2":
        assert {a.strip() for a in data.target + (data.wrong or [])} <= set(TINY_NAMES)
    assert data.positions is not None and data.corrupt_positions is None
    for clean, corrupt, io, s, roles in zip(
        data.clean, data.corrupt, data.target, data.wrong or [], data.positions, strict=True
    ):
        io, s = io.strip(), s.strip()
        # One word differs, the subject's second mention: it becomes the IO (MIB's
        # s2_io_flip) or a third name (abc).
        changed = [(a, b) for a, b in zip(clean.split(), corrupt.split(), strict=True) if a != b]
        assert len(changed) == 1 and changed[0][0] == s
        if counterfactual == "s2_io_flip":
            assert changed[0][1] == io
        else:
            assert changed[0][1] not in (io, s)
        assert clean.split().count(s) == 2 and clean.split().count(io) == 1
        words = {role: _word_at(tokenizer, clean, where[0]) for role, where in roles.items()}
        assert (words["IO"], words["S1"], words["S2"]) == (io, s, s)
        assert roles["END"] == [len(_ids(tokenizer, clean))]
        assert len(_ids(tokenizer, corrupt)) == len(_ids(tokenizer, clean))


@pytest.mark.parametrize("name", ["gpt2", "sentencepiece", "legacy"])
@pytest.mark.parametrize("op", ["add", "sub"])
def test_arithmetic_answers_are_right_and_one_operand_changes(tokenizers, name, op):
    tokenizer = tokenizers[name]
    data = arithmetic(30, 1, op=op, tokenizer=tokenizer)
    _check_answers(tokenizer, data)
    compute = (lambda a, b: a + b) if op == "add" else (lambda a, b: a - b)
    sign = "+" if op == "add" else "-"
    assert data.positions is not None
    for clean, corrupt, target, wrong, roles in zip(
        data.clean, data.corrupt, data.target, data.wrong or [], data.positions, strict=True
    ):
        a, b = map(int, re.fullmatch(rf"(\d+) \{sign} (\d+) =", clean).groups())
        a2, b2 = map(int, re.fullmatch(rf"(\d+) \{sign} (\d+) =", corrupt).groups())
        assert int(target) == compute(a, b) >= 0 and int(wrong) == compute(a2, b2) >= 0
        assert (a == a2) != (b == b2)  # exactly one operand changed
        assert _word_at(tokenizer, clean, roles["op1"][0]) == str(a)
        assert _word_at(tokenizer, clean, roles["op2"][0]) == str(b)
        assert len(_ids(tokenizer, corrupt)) == len(_ids(tokenizer, clean))


def test_arithmetic_makes_every_distinct_pair_and_no_more(tokenizers):
    """With operands 0-3 the pairs can be listed by hand: every problem, with one operand
    replaced by another value. Asking for all of them gives exactly that set."""
    expected = {
        (f"{a} + {b} =", f"{a2} + {b2} =")
        for a, b, a2, b2 in itertools.product(range(4), repeat=4)
        if (a == a2) != (b == b2)
    }
    data = arithmetic(len(expected), 5, max_operand=3)
    assert set(zip(data.clean, data.corrupt, strict=True)) == expected
    with pytest.raises(InputError) as info:
        arithmetic(len(expected) + 1, 5, max_operand=3)
    assert info.value.field == "dataset"
    assert f"at most {len(expected)} distinct pairs" in info.value.message
    assert "4 of 4 operands" in info.value.message


def test_too_many_ioi_pairs_says_how_many_it_can_make(tokenizers):
    tokenizer = tokenizers["sentencepiece"]
    k = sum(len(_ids(tokenizer, " " + name)) == 1 for name in IOI_NAMES)
    assert k == len(TINY_NAMES)  # the tiny vocabulary knows its eight names, no others
    # Distinct prompts: per template, the ordered (IO, S) pairs in both orders, times its
    # places and objects (8 each, where it has them).
    total = sum(
        2 * k * (k - 1) * (8 if "{place}" in t else 1) * (8 if "{object}" in t else 1)
        for t in MIB_IOI_TEMPLATES
    )
    with pytest.raises(InputError) as info:
        mib_ioi(total + 1, tokenizer=tokenizer)
    assert f"at most {total:,} distinct pairs" in info.value.message
    assert f"{k} of {len(IOI_NAMES)} names" in info.value.message
    assert f"{k} of {len(IOI_NAMES)} names" in (mib_ioi(3, tokenizer=tokenizer).note or "")


def _mcqa_answer(prompt: str) -> tuple[str, list[str], list[str]]:
    """The label of the choice whose colour the question states, all labels, all colours."""
    color = re.search(r"The \w+ is (\w+)\.", prompt).group(1)
    lines = re.findall(r"\n(\w)\. (\w+)", prompt)
    return (
        next(label for label, c in lines if c == color),
        [x for x, _ in lines],
        [c for _, c in lines],
    )


@pytest.mark.parametrize("name", ["gpt2", "sentencepiece", "legacy"])
@pytest.mark.parametrize("counterfactual", ["symbol", "position"])
def test_mcqa(tokenizers, name, counterfactual):
    tokenizer = tokenizers[name]
    data = mcqa(10, 2, tokenizer=tokenizer, counterfactual=counterfactual)
    _check_answers(tokenizer, data)
    assert data.positions is not None and data.corrupt_positions is not None
    for i, (clean, corrupt) in enumerate(zip(data.clean, data.corrupt, strict=True)):
        label, labels, colors = _mcqa_answer(clean)
        new_label, new_labels, new_colors = _mcqa_answer(corrupt)
        assert labels == ["A", "B", "C", "D"] and set(colors) <= set(MCQA_COLORS)
        assert (data.target[i].strip(), data.wrong[i].strip()) == (label, new_label)
        assert label != new_label
        if counterfactual == "symbol":  # same choices, four other letters
            assert new_colors == colors and not set(new_labels) & set(labels)
        else:  # same letters; the right colour swapped with one other
            assert new_labels == labels and sorted(new_colors) == sorted(colors)
            assert sum(a != b for a, b in zip(colors, new_colors, strict=True)) == 2
        for prompt, roles, expected in (
            (clean, data.positions[i], label),
            (corrupt, data.corrupt_positions[i], new_label),
        ):
            assert _word_at(tokenizer, prompt, roles["correct_symbol"][0]) == expected
            assert roles["END"] == [len(_ids(tokenizer, prompt))]


def test_same_seed_same_dataset_and_pairs_are_distinct(tokenizers):
    for make in (
        lambda seed: mib_ioi(40, seed),
        lambda seed: arithmetic(40, seed, op="sub"),
        lambda seed: mcqa(40, seed),
    ):
        first, again, other = make(7), make(7), make(8)
        assert first == again and first != other
        assert len(set(zip(first.clean, first.corrupt, strict=True))) == 40


def test_load_dataset_specs_pass_the_tokenizer(tokenizers):
    tokenizer = tokenizers["sentencepiece"]
    assert load_dataset("mib-ioi:5:1", tokenizer=tokenizer) == mib_ioi(5, 1, tokenizer=tokenizer)
    assert load_dataset("add:4") == arithmetic(4)
    assert load_dataset("sub:4:2", tokenizer=tokenizer) == arithmetic(
        4, 2, op="sub", tokenizer=tokenizer
    )
    assert load_dataset("mcqa:3", tokenizer=tokenizer) == mcqa(3, tokenizer=tokenizer)
    # ioi and factual are sized to the tokenizer too (issue 17): its 8 names, not GPT-2's 180
    assert load_dataset("ioi:4", tokenizer=tokenizer) == ioi(4, tokenizer=tokenizer)
    assert load_dataset("ioi:4", tokenizer=tokenizer) != load_dataset("ioi:4")
    with pytest.raises(InputError) as info:
        load_dataset("mcqa:x")
    assert "'mib-ioi:N'" in info.value.message and "'mcqa:N'" in info.value.message


def test_bad_arguments_teach(tokenizers):
    with pytest.raises(InputError, match="choose one of"):
        mib_ioi(2, counterfactual="s1_io_flip")
    with pytest.raises(InputError, match="'add' or 'sub'"):
        arithmetic(2, op="mul")
    with pytest.raises(InputError, match="n >= 1"):
        mcqa(0)


@pytest.mark.parametrize("spec", ["mib-ioi:4:1", "add:4:1"])
def test_a_generated_dataset_sweeps_on_the_tiny_model(tiny_model, spec):
    import math

    import actpatch
    from actpatch.patching.experiment import dataset_experiments

    data = load_dataset(spec, tokenizer=tiny_model.tokenizer)
    result = actpatch.sweep_many(dataset_experiments(tiny_model, data), "z", "logit_diff")
    assert tuple(result.normalized.shape) == (tiny_model.n_layers, tiny_model.n_heads)
    assert result.per_pair is not None and result.per_pair.shape[0] == 4
    assert all(math.isfinite(v) for v in result.per_pair.flatten().tolist())


def test_the_cli_sweeps_a_mib_dataset(capsys, tiny_model_dir):
    import json

    from actpatch.cli import main

    argv = ["sweep", "heads", "--model", str(tiny_model_dir), "--dataset", "sub:3:2", "--json"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["n_pairs"] == 3
