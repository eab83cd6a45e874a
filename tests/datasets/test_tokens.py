"""The tokenizer's view (actpatch.datasets.tokens): every word one GPT-2 token; on any
tokenizer, the words that are one token in it, its space convention, its positions; how many
distinct pairs the surviving words make."""

from __future__ import annotations

import re
from typing import Any

import pytest

from actpatch.datasets import (
    CAPITALS,
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    IOI_TEMPLATES,
    LANGUAGES,
    factual,
    ioi,
)
from actpatch.errors import InputError


def test_vocabulary_is_single_gpt2_tokens(tokenize) -> None:
    words = [*IOI_NAMES, *IOI_PLACES, *IOI_OBJECTS]
    words += [w for pair in (*CAPITALS, *LANGUAGES) for w in pair]
    multi = [w for w in words if len(tokenize(" " + w)) != 1]
    assert multi == []
    assert len(set(IOI_NAMES)) == len(IOI_NAMES) >= 100
    assert len(IOI_TEMPLATES) >= 15


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
