"""The IOI task (actpatch.datasets.ioi_task): the split, the swap convention, token lengths,
determinism, bad templates and names, and the roles of every token."""

from __future__ import annotations

import re

import pytest

from actpatch.datasets import (
    IOI_HELDOUT_NAMES,
    IOI_HELDOUT_TEMPLATES,
    IOI_NAMES,
    IOI_ROLES,
    IOI_TRAIN_NAMES,
    IOI_TRAIN_TEMPLATES,
    factual,
    ioi,
    tokenizer_or_gpt2,
)
from actpatch.errors import InputError


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


def test_ioi_rejects_bad_templates_and_names() -> None:
    with pytest.raises(InputError, match="ABBA"):
        ioi(3, templates=["{A} gave a {OBJECT} to"])
    with pytest.raises(InputError, match=r"not one token .*'Bartholomew-Smythe'"):
        ioi(3, names=["Mary", "Bartholomew-Smythe"])
    with pytest.raises(InputError, match="split"):
        ioi(3, split="test")  # type: ignore[arg-type]


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
    return [tokenizer_or_gpt2().decode([i]) for i in tokenize(text)]


def test_hand_written_ioi_roles() -> None:
    data = ioi(1, templates=["When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to"])
    roles = (data.positions or [{}])[0]
    # BOS When Mary and John went to the store , John gave a drink to  (ABBA or BABA)
    assert roles["starts"] == [0, 1] and roles["END"] == [14] and roles["S2"] == [10]
    assert roles["action2"] == [11, 12, 13] and set(roles["IO"] + roles["S1"]) == {2, 4}
