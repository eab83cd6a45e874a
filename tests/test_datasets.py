"""Tests for actpatch.datasets: single tokens, the IOI swap convention, determinism, JSONL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from actpatch.datasets import (
    CAPITALS,
    FACTUAL_HELDOUT_TEMPLATES,
    FACTUAL_RELATIONS,
    FACTUAL_TRAIN_TEMPLATES,
    IOI_HELDOUT_NAMES,
    IOI_HELDOUT_TEMPLATES,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    IOI_ROLES,
    IOI_TEMPLATES,
    IOI_TRAIN_NAMES,
    IOI_TRAIN_TEMPLATES,
    LANGUAGES,
    PromptDataset,
    factual,
    ioi,
    load_dataset,
)
from actpatch.errors import InputError
from actpatch.tokenizer import gpt2_tokenizer


@pytest.fixture(scope="module")
def tokenize():
    tokenizer = gpt2_tokenizer()
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def test_vocabulary_is_single_gpt2_tokens(tokenize) -> None:
    words = [*IOI_NAMES, *IOI_PLACES, *IOI_OBJECTS]
    words += [w for pair in (*CAPITALS, *LANGUAGES) for w in pair]
    multi = [w for w in words if len(tokenize(" " + w)) != 1]
    assert multi == []
    assert len(set(IOI_NAMES)) == len(IOI_NAMES) >= 100
    assert len(IOI_TEMPLATES) >= 15


def test_split_is_disjoint_and_complete() -> None:
    assert set(IOI_TRAIN_NAMES).isdisjoint(IOI_HELDOUT_NAMES)
    assert set(IOI_TRAIN_NAMES) | set(IOI_HELDOUT_NAMES) == set(IOI_NAMES)
    assert set(IOI_TRAIN_TEMPLATES).isdisjoint(IOI_HELDOUT_TEMPLATES)
    heldout = ioi(200, seed=3, split="heldout")
    used = {w.strip() for w in heldout.target + (heldout.wrong or [])}
    assert used <= set(IOI_HELDOUT_NAMES)
    train = ioi(200, seed=3, split="train")
    assert {w.strip() for w in train.target} <= set(IOI_TRAIN_NAMES)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def test_ioi_swap_convention() -> None:
    data = ioi(300, seed=7)
    assert data.wrong is not None
    for clean, corrupt, target, wrong in zip(
        data.clean, data.corrupt, data.target, data.wrong, strict=True
    ):
        io, s = target.strip(), wrong.strip()
        clean_words, corrupt_words = _words(clean), _words(corrupt)
        # clean: IO once, S twice; corrupted: the subject's last mention becomes the IO
        assert io != s
        assert clean_words.count(io) == 1 and clean_words.count(s) == 2
        assert corrupt_words.count(io) == 2 and corrupt_words.count(s) == 1
        assert len(clean_words) == len(corrupt_words)
        differing = [
            i for i, (a, b) in enumerate(zip(clean_words, corrupt_words, strict=True)) if a != b
        ]
        assert len(differing) == 1
        last = differing[0]
        assert clean_words[last] == s and corrupt_words[last] == io
        assert last == max(i for i, w in enumerate(clean_words) if w in (io, s))


def test_ioi_uses_both_orders_and_hand_checked_example() -> None:
    data = ioi(
        1, seed=0, templates=["When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to"]
    )
    place_obj = re.match(
        r"When (\w+) and (\w+) went to the (\w+), (\w+) gave a (\w+) to", data.clean[0]
    )
    assert place_obj is not None
    first, second, place, subject, obj = place_obj.groups()
    io = data.target[0].strip()
    assert subject == data.wrong[0].strip() and {first, second} == {io, subject}  # type: ignore[index]
    assert data.corrupt[0] == f"When {first} and {second} went to the {place}, {io} gave a {obj} to"
    orders = ioi(100, seed=0)
    first_is_io = [
        re.findall(r"[A-Z]\w+", c.split(" and ")[0])[-1] == t.strip()
        for c, t in zip(orders.clean, orders.target, strict=True)
    ]
    assert 0 < sum(first_is_io) < 100  # ABBA and BABA both drawn


def test_clean_and_corrupt_share_token_length(tokenize) -> None:
    data = ioi(200, seed=1)
    for clean, corrupt in zip(data.clean, data.corrupt, strict=True):
        assert len(tokenize(clean)) == len(tokenize(corrupt))
    facts = factual(50, seed=1)
    for clean, corrupt in zip(facts.clean, facts.corrupt, strict=True):
        assert len(tokenize(clean)) == len(tokenize(corrupt))


def test_determinism() -> None:
    assert ioi(50, seed=4) == ioi(50, seed=4)
    assert ioi(50, seed=4) != ioi(50, seed=5)
    assert factual(20, seed=2) == factual(20, seed=2)


def test_same_length_and_group_by_length(tokenize) -> None:
    one = ioi(40, seed=2, same_length=True)
    assert len({len(tokenize(c)) for c in one.clean}) == 1
    mixed = ioi(120, seed=2)
    groups = mixed.group_by_length(tokenize)
    assert len(groups) > 1 and sum(len(g) for g in groups) == len(mixed)
    for group in groups:
        assert len({len(tokenize(c)) for c in group.clean}) == 1
        assert len({len(tokenize(c)) for c in group.corrupt}) == 1


def test_factual_pairs() -> None:
    capital = dict(CAPITALS)
    language = dict(LANGUAGES)
    data = factual(40, seed=0)
    assert data.wrong is not None
    for clean, corrupt, target, wrong in zip(
        data.clean, data.corrupt, data.target, data.wrong, strict=True
    ):
        assert target != wrong
        if clean.startswith("The city of"):
            city = clean.split()[3]
            other = corrupt.split()[3]
            assert target == " " + capital[city] and wrong == " " + capital[other]
        else:
            country = clean.removeprefix("In ").split(",")[0]
            other = corrupt.removeprefix("In ").split(",")[0]
            assert target == " " + language[country] and wrong == " " + language[other]
    assert any(c.startswith("In ") for c in data.clean)
    canonical = {template for template, _ in FACTUAL_RELATIONS.values()}
    for clean in data.clean:  # every pair in its relation's canonical wording
        assert any(
            clean == template.format(subject=subject)
            for template in canonical
            for subject, _ in (*CAPITALS, *LANGUAGES)
        )


def test_factual_wordings(tokenize) -> None:
    """Canonical wording first among the training ones; held-out wordings never trained on."""
    assert set(FACTUAL_TRAIN_TEMPLATES) == set(FACTUAL_HELDOUT_TEMPLATES) == set(FACTUAL_RELATIONS)
    for relation, (canonical, _) in FACTUAL_RELATIONS.items():
        train, heldout = FACTUAL_TRAIN_TEMPLATES[relation], FACTUAL_HELDOUT_TEMPLATES[relation]
        assert train[0] == canonical
        assert set(train).isdisjoint(heldout)
        for template in (*train, *heldout):
            assert template.count("{subject}") == 1
    # The specification's wording is trained; its subject starts the prompt, so a city can be
    # several tokens there although it is one after a space.
    assert "{subject} is the capital of" in FACTUAL_TRAIN_TEMPLATES["capital"]
    assert len(tokenize("Berlin")) == 2 and len(tokenize(" Berlin")) == 1
    assert len(tokenize("Berlin is the capital of")) == len(tokenize("Paris is the capital of")) + 1


def test_load_dataset_specs() -> None:
    assert load_dataset("ioi:12") == ioi(12, 0)
    assert load_dataset("ioi:12:3") == ioi(12, 3)
    assert load_dataset("factual:6:2") == factual(6, 2)
    for bad in ("ioi:x", "ioi:1:2:3", "factual:", "nope.jsonl"):
        with pytest.raises(InputError) as info:
            load_dataset(bad)
        assert info.value.field == "dataset" and "ioi:N" in info.value.message


def _write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def test_load_dataset_jsonl(tmp_path: Path) -> None:
    rows = [
        {"clean": "A B", "corrupt": "A C", "target": " x", "wrong": " y"},
        {"clean": "D E", "corrupt": "D F", "target": " z", "wrong": " w"},
    ]
    spec = _write(tmp_path / "pairs.jsonl", [json.dumps(r) for r in rows] + [""])
    data = load_dataset(spec)
    assert data == PromptDataset(
        ["A B", "D E"], ["A C", "D F"], [" x", " z"], [" y", " w"], "pairs"
    )
    no_wrong = [{k: v for k, v in r.items() if k != "wrong"} for r in rows]
    assert (
        load_dataset(_write(tmp_path / "nw.jsonl", [json.dumps(r) for r in no_wrong])).wrong is None
    )


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ("{not json", "line 2: not valid JSON"),
        ("[1, 2]", "line 2: expected a JSON object"),
        ('{"clean": "a", "corrupt": "b"}', "line 2: missing key(s) ['target']"),
        (
            '{"clean": "a", "corrupted": "b", "target": " c"}',
            "line 2: unknown key(s) ['corrupted']",
        ),
        ('{"clean": "a", "corrupt": "b", "target": 3}', "line 2: value(s) of ['target']"),
        ('{"clean": "a", "corrupt": "b", "target": " c"}', "line 2: 'wrong' is given on some"),
    ],
)
def test_jsonl_errors_name_the_line(tmp_path: Path, second_line: str, expected: str) -> None:
    first = json.dumps({"clean": "a", "corrupt": "b", "target": " c", "wrong": " d"})
    spec = _write(tmp_path / "bad.jsonl", [first, second_line])
    with pytest.raises(InputError) as info:
        load_dataset(spec)
    assert expected in info.value.message and info.value.field == "dataset"


def test_empty_jsonl_and_mismatched_lengths(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no pairs"):
        load_dataset(_write(tmp_path / "empty.jsonl", ["", "  "]))
    with pytest.raises(InputError, match="different lengths"):
        PromptDataset(["a"], ["b", "c"], [" d"], None, "bad")


def test_ioi_rejects_bad_templates_and_names() -> None:
    with pytest.raises(InputError, match="ABBA"):
        ioi(3, templates=["{A} gave a {OBJECT} to"])
    with pytest.raises(InputError, match=r"not one token .*'Bartholomew-Smythe'"):
        ioi(3, names=["Mary", "Bartholomew-Smythe"])
    with pytest.raises(InputError, match="split"):
        ioi(3, split="test")  # type: ignore[arg-type]


# -- roles (issue 11) --------------------------------------------------------------------------


def test_ioi_names_every_token_by_role_hand_checked(tokenize) -> None:
    data = ioi(40, seed=5)
    assert data.roles == list(IOI_ROLES)
    assert data.positions is not None and data.corrupt_positions is None
    for clean, target, wrong, roles in zip(
        data.clean, data.target, data.wrong or [], data.positions, strict=True
    ):
        tokens = ["<bos>", *(tokenizer_decode(tokenize, clean))]
        at = {role: "".join(tokens[p] for p in where) for role, where in roles.items()}
        assert at["IO"] == target and at["S1"] == wrong and at["S2"] == wrong
        assert at["and"] == " and" and at["END"] == " to" and tokens[0] == "<bos>"
        baba = roles["S1"][0] < roles["IO"][0]
        assert roles["S1+1"] == [roles["S1"][0] + 1]
        if baba:
            assert at["S1+1"] == " and"  # the documented overlap
        covered = sorted(
            p for role, where in roles.items() if role != "S1+1" or not baba for p in where
        )
        assert covered == list(range(len(tokens)))  # every token in one role


def tokenizer_decode(tokenize, text: str) -> list[str]:
    from actpatch.datasets import _gpt2

    return [_gpt2().decode([i]) for i in tokenize(text)]


def test_hand_written_ioi_roles() -> None:
    data = ioi(1, templates=["When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to"])
    roles = (data.positions or [{}])[0]
    # BOS When Mary and John went to the store , John gave a drink to  (ABBA or BABA)
    assert roles["starts"] == [0, 1] and roles["END"] == [14] and roles["S2"] == [10]
    assert roles["action2"] == [11, 12, 13] and set(roles["IO"] + roles["S1"]) == {2, 4}


def test_jsonl_positions(tmp_path: Path) -> None:
    rows = [
        {"clean": "A B", "corrupt": "A C", "target": " x", "positions": {"X": 1, "Y": [2]}},
        {"clean": "D E", "corrupt": "D F", "target": " z", "positions": {"Y": 2, "X": 1}},
    ]
    data = load_dataset(_write(tmp_path / "roles.jsonl", [json.dumps(r) for r in rows]))
    assert data.positions == [{"X": [1], "Y": [2]}, {"Y": [2], "X": [1]}]
    assert data.roles == ["X", "Y"] and data.origin(1).endswith("roles.jsonl, line 2")


@pytest.mark.parametrize(
    ("second_line", "expected"),
    [
        ('{"clean": "a", "corrupt": "b", "target": " c"}', "'positions' is given on some"),
        (
            '{"clean": "a", "corrupt": "b", "target": " c", "positions": {"IO": -1}}',
            "positions: role 'IO' must be a token position",
        ),
        (
            '{"clean": "a", "corrupt": "b", "target": " c", "positions": {"S2": 1}}',
            "positions names roles ['S2'] but line 1 names ['IO']",
        ),
    ],
)
def test_jsonl_position_errors_name_the_line(tmp_path: Path, second_line: str, expected: str):
    first = json.dumps({"clean": "a", "corrupt": "b", "target": " c", "positions": {"IO": 1}})
    with pytest.raises(InputError) as info:
        load_dataset(_write(tmp_path / "bad.jsonl", [first, second_line]))
    assert "line 2" in info.value.message and expected in info.value.message


def test_check_names_the_line_of_a_multi_token_answer_or_a_role_outside(tmp_path: Path) -> None:
    from actpatch.tokenizer import gpt2_tokenizer

    tok = gpt2_tokenizer()

    def to_tokens(text: str) -> list[int]:
        return [50256, *tok(text, add_special_tokens=False)["input_ids"]]

    def answer(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    good = {"clean": "When Mary left", "corrupt": "When John left", "target": " Mary"}
    lines = [json.dumps(good), json.dumps({**good, "target": " Bartholomew"})]
    data = load_dataset(_write(tmp_path / "a.jsonl", lines))
    with pytest.raises(InputError, match=r"a.jsonl, line 2: the target answer ' Bartholomew' is"):
        data.check(to_tokens, answer)
    lines = [
        json.dumps({**good, "positions": {"END": 3}}),
        json.dumps({**good, "positions": {"END": 9}}),
    ]
    data = load_dataset(_write(tmp_path / "b.jsonl", lines))
    with pytest.raises(InputError, match=r"b.jsonl, line 2: positions puts role 'END' at \[9\]"):
        data.check(to_tokens, answer)


# -- any tokenizer (issue 17) ------------------------------------------------------------------


def gemma_like_tokenizer() -> Any:
    """A small tokenizer in Gemma's conventions, trained here: a space becomes '▁', nothing is
    prefixed to a text's start ("Mary" is 'Mary', " Mary" is '▁Mary'), and the tokenizer adds
    its own <bos>. Trained on GPT-2-sized IOI and factual prompts with a small vocabulary, so
    rarer names stay several tokens and must be filtered out."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Metaspace(prepend_scheme="never"), pre_tokenizers.Punctuation()]
    )
    core.decoder = decoders.Metaspace(prepend_scheme="never")
    specials = ["<pad>", "<eos>", "<bos>", "<unk>"]
    trainer = trainers.BpeTrainer(vocab_size=900, special_tokens=specials, show_progress=False)
    facts = [
        template.format(subject=subject) + f" {answer}."
        for template, pairs in FACTUAL_RELATIONS.values()
        for subject, answer in pairs
    ]
    core.train_from_iterator(ioi(200, seed=9).clean + facts * 12, trainer)
    core.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", core.token_to_id("<bos>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token="<bos>",
        eos_token="<eos>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


@pytest.fixture(scope="module")
def any_tokenizer() -> dict[str, Any]:
    return {"gpt2": gpt2_tokenizer(), "gemma-like": gemma_like_tokenizer()}


def _word(tokenizer: Any, prompt: str, position: int) -> str:
    """The text of the token at `position` (BOS = 0) of `prompt`, without its space marker."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    return str(tokenizer.decode([ids[position - 1]])).strip(" ▁")


@pytest.mark.parametrize("name", ["gpt2", "gemma-like"])
def test_ioi_and_factual_fit_the_tokenizer(any_tokenizer, name) -> None:
    tokenizer = any_tokenizer[name]

    def ids(text: str) -> list[int]:
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    data = ioi(24, seed=3, tokenizer=tokenizer)
    assert data.positions is not None and data.wrong is not None
    for clean, corrupt, target, wrong, roles in zip(
        data.clean, data.corrupt, data.target, data.wrong, data.positions, strict=True
    ):
        assert len(ids(clean)) == len(ids(corrupt))
        for answer in (target, wrong):  # the token the model reads after the prompt
            assert ids(f"{clean} {answer.strip()}") == [*ids(clean), *ids(answer)]
        io, s = target.strip(), wrong.strip()
        assert [_word(tokenizer, clean, roles[r][0]) for r in ("IO", "S1", "S2")] == [io, s, s]
        assert roles["END"] == [len(ids(clean))]  # positions count BOS as 0
    facts = factual(16, seed=3, tokenizer=tokenizer)
    assert facts.wrong is not None
    for clean, corrupt, target in zip(facts.clean, facts.corrupt, facts.target, strict=True):
        assert len(ids(clean)) == len(ids(corrupt))
        assert ids(f"{clean} {target.strip()}") == [*ids(clean), *ids(target)]
    survived = int(re.match(r"(\d+) of 180 names", data.note or "").group(1))  # type: ignore[union-attr]
    if name == "gpt2":
        assert survived == 180 and data == ioi(24, seed=3)  # GPT-2's datasets are unchanged
    else:  # the small vocabulary keeps only the names it saw often enough to merge
        kept = [n for n in IOI_NAMES if len(ids(" " + n)) == 1]
        assert 2 <= survived == len(kept) < 180


def test_bos_rule_on_a_gemma_like_tokenizer(any_tokenizer, tmp_path) -> None:
    """One BOS first, then the text without special tokens: what a tokenizer that adds its own
    BOS gives, and what TransformerLens's bridge gives (tiny Gemma 2 model, this tokenizer)."""
    import actpatch
    from tests.tiny_families import build_family

    tokenizer = any_tokenizer["gemma-like"]
    build_family("gemma2").save_pretrained(str(tmp_path))
    tokenizer.save_pretrained(str(tmp_path))
    model = actpatch.load_model(str(tmp_path))
    prompt = ioi(1, seed=1, tokenizer=tokenizer).clean[0]
    ours = model.to_tokens(prompt)
    assert ours[0] == tokenizer.convert_tokens_to_ids("<bos>") and ours.count(ours[0]) == 1
    assert ours == tokenizer(prompt)["input_ids"]  # the tokenizer's own BOS, not a second one
    assert model.bridge().to_tokens(prompt)[0].tolist() == ours


def test_asking_for_more_distinct_pairs_than_the_words_make() -> None:
    template = "Then, {A} and {B} had a long argument, and afterwards {B} said to"
    # ABBA or BABA x IO x S = 2 x 2 x 1: four prompts, and no place or object to vary
    few = ioi(4, templates=[template], names=["Mary", "John"])
    assert len(set(few.clean)) == 4
    with pytest.raises(InputError, match=r"at most 4 distinct pairs .*2 of 2 names"):
        ioi(5, templates=[template], names=["Mary", "John"])
    with pytest.raises(InputError, match=r"at most 1,505 distinct pairs"):
        factual(1506)
    assert len(set(zip(*(factual(300).clean, factual(300).corrupt), strict=True))) == 300
