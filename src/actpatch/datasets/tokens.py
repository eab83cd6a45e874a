"""The tokenizer's view of a generated dataset: which words are one token, and where they sit.

Any tokenizer. The word lists were chosen as one GPT-2 token each *with the leading space*
(" Mary", " Berlin"). Given another tokenizer, a generator keeps only the words that are one
token in it (`answer_form`: 'ĠMary' in GPT-2's byte-level BPE, '▁Mary' in SentencePiece's),
writes the answers in its space convention, counts role positions in its tokens
(`token_offsets`, `span_positions`), and says in the dataset's `note` how many candidates
survived. Pairs are distinct; asking for more than the surviving words make is an InputError
that says how many can be made (`too_many_pairs`). Without a tokenizer, GPT-2's is used
(`tokenizer_or_gpt2`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from actpatch.errors import InputError

Span = tuple[int, int]  # characters [start, end) of a prompt


@functools.cache
def _gpt2() -> Any:
    """GPT-2's tokenizer, loaded once (what the generators size to when given none)."""
    from actpatch.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()


def tokenizer_or_gpt2(tokenizer: Any = None) -> Any:
    """`tokenizer`, or GPT-2's (loaded once) when None: the tokenizer a generator sizes to."""
    return _gpt2() if tokenizer is None else tokenizer


def _ids(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def answer_form(tokenizer: Any, context: str, word: str) -> str | None:
    """The answer string for `word` after `context` and a space, if the model reads it as one token.

    The token is the one `context + " " + word` adds to `context`'s tokens. The answer string
    is " word" if it tokenizes on its own to that token (GPT-2's 'ĠMary'; '▁Mary' where a space
    becomes '▁'), else "word" if that does (SentencePiece tokenizers that prefix '▁' to a
    text's start), else None: the word is not one token there, or no string gives its token.
    """
    before = _ids(tokenizer, context)
    after = _ids(tokenizer, f"{context} {word}")
    if len(after) != len(before) + 1 or after[: len(before)] != before:
        return None
    for form in (" " + word, word):
        if _ids(tokenizer, form) == after[-1:]:
            return form
    return None


def token_offsets(tokenizer: Any, text: str) -> list[tuple[int, int]]:
    """The character span of each token of `text` (no special tokens)."""
    try:
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:  # a slow (pure Python) tokenizer has no offsets
        raise InputError(
            "Datasets sized to a tokenizer need a fast tokenizer (one with offset mappings) to "
            f"find each role's token position; {type(tokenizer).__name__} has none.",
            field="dataset",
        ) from exc
    return [tuple(span) for span in encoded["offset_mapping"]]


def span_positions(offsets: list[tuple[int, int]], span: Span) -> list[int]:
    """The positions (BOS = 0) of the tokens that overlap the characters `span`."""
    a, b = span
    return [i + 1 for i, (x, y) in enumerate(offsets) if x < b and y > a]


def spans_are_one_token(tokenizer: Any, text: str, spans: Sequence[Span]) -> bool:
    """Whether each of the character `spans` of `text` is exactly one token."""
    offsets = token_offsets(tokenizer, text)
    return all(len(span_positions(offsets, span)) == 1 for span in spans)


def one_token_forms(tokenizer: Any, context: str, words: Sequence[str]) -> dict[str, str]:
    """`answer_form` of each word after `context`, for the words that are one token there."""
    forms = {word: answer_form(tokenizer, context, word) for word in dict.fromkeys(words)}
    return {word: form for word, form in forms.items() if form is not None}


def too_many_pairs(task: str, n: int, total: int, survivors: str) -> InputError:
    article = "An" if task[0] in "aeiou" else "A"
    if total == 0:
        return InputError(
            f"{article} '{task}:N' dataset cannot be made with this tokenizer: too few of its "
            f"words are one token in it ({survivors}).",
            field="dataset",
        )
    return InputError(
        f"{article} '{task}:N' dataset can have at most {total:,} distinct pairs with this "
        f"tokenizer ({survivors}), and {n:,} were asked for: ask for {total:,} or fewer.",
        field="dataset",
    )
