"""Fixtures the dataset tests share: GPT-2's tokenizer as a function, and a Gemma-like one."""

from __future__ import annotations

from typing import Any

import pytest

from actpatch.datasets import FACTUAL_RELATIONS, ioi
from actpatch.tokenizer import gpt2_tokenizer


@pytest.fixture(scope="module")
def tokenize():
    tokenizer = gpt2_tokenizer()
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


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
