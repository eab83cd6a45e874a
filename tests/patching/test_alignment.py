"""Aligning prompts of equal and different token lengths."""

from actpatch.patching.alignment import align


def test_equal_lengths_align_position_by_position():
    a = align([1, 2, 3, 4], [1, 2, 9, 4])
    assert a.identity and a.pairs == ((0, 0), (1, 1), (2, 2), (3, 3))
    assert a.first_diff == 2


def test_different_lengths_align_prefix_and_suffix():
    # BOS Paris is the capital of  /  BOS Ber lin is the capital of
    a = align([0, 10, 20, 21, 22, 23], [0, 11, 12, 20, 21, 22, 23])
    assert not a.identity
    assert a.pairs == ((0, 0), (2, 3), (3, 4), (4, 5), (5, 6))
    assert a.first_diff == 1
    assert a.corrupt_to_clean() == {0: 0, 3: 2, 4: 3, 5: 4, 6: 5}


def test_prefix_and_suffix_never_overlap():
    a = align([0, 5, 5], [0, 5, 5, 5])
    clean_positions = [c for c, _ in a.pairs]
    assert len(set(clean_positions)) == len(clean_positions)
    assert all(c < 3 and k < 4 for c, k in a.pairs)
