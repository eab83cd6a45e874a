"""The factual-recall task (actpatch.datasets.factual_task): pairs and wordings."""

from __future__ import annotations

from actpatch.datasets import (
    CAPITALS,
    FACTUAL_HELDOUT_TEMPLATES,
    FACTUAL_RELATIONS,
    FACTUAL_TRAIN_TEMPLATES,
    LANGUAGES,
    factual,
)


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
