"""A result warning: written as JSON and read back."""


def test_warnings_read_back_are_the_frozen_warnings_they_were():
    from actpatch.patching.results.warning import ResultWarning, read_warnings

    kept = ResultWarning("no_behaviour", "In 2 of 3 pairs ...", "target_token", (0, 2))
    again = read_warnings({"warnings": [kept.to_dict()]})
    assert again == [kept] and hash(again[0]) == hash(kept)  # pairs a tuple again, not a list
    old = read_warnings({"warnings": [{"code": "c", "message": "m", "field": None}]})
    assert old[0].pairs is None  # written before pairs existed
