"""PromptDataset (actpatch.datasets.pairs): groups of one token length."""

from __future__ import annotations

from actpatch.datasets import ioi


def test_same_length_and_group_by_length(tokenize) -> None:
    one = ioi(40, seed=2, same_length=True)
    assert len({len(tokenize(c)) for c in one.clean}) == 1
    mixed = ioi(120, seed=2)
    groups = mixed.group_by_length(tokenize)
    assert len(groups) > 1 and sum(len(g) for g in groups) == len(mixed)
    for group in groups:
        assert len({len(tokenize(c)) for c in group.clean}) == 1
        assert len({len(tokenize(c)) for c in group.corrupt}) == 1
