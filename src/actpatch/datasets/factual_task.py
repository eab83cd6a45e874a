"""The factual-recall task: "The city of Paris is the capital of" -> " France", and
"In France, people speak" -> " French".

`factual(n, seed)` pairs a fact's prompt with the same prompt about another subject, in each
relation's canonical wording (`FACTUAL_RELATIONS`), sized to the served model's tokenizer.

At the start of a prompt a word has no leading space, and most cities are then several tokens:
"Berlin is the capital of" is 'Ber', 'lin', ' is', ... (6 tokens, BOS aside) against 5 for
"Paris is the capital of". That wording is the specification's own example and one of the
capital wordings the demo model is trained on (`FACTUAL_TRAIN_TEMPLATES`), but `factual` never
builds it: its pairs use each relation's canonical wording, whose subject follows a space, so a
clean prompt and its corrupted prompt have the same length. Pairs of different lengths are
patched with position alignment (docs/alignment.md).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from actpatch.datasets.pairs import PromptDataset
from actpatch.datasets.tokens import (
    answer_form,
    spans_are_one_token,
    tokenizer_or_gpt2,
    too_many_pairs,
)
from actpatch.errors import InputError

# (city, country): the city is the capital of the country; both one token with a leading space
# (" Berlin"), though at the start of a prompt most cities are several ("Ber", "lin").
CAPITALS: tuple[tuple[str, str], ...] = (
    ("Paris", "France"), ("Berlin", "Germany"), ("London", "England"), ("Rome", "Italy"),
    ("Madrid", "Spain"), ("Tokyo", "Japan"), ("Moscow", "Russia"), ("Cairo", "Egypt"),
    ("Dublin", "Ireland"), ("Athens", "Greece"), ("Vienna", "Austria"), ("Oslo", "Norway"),
    ("Lisbon", "Portugal"), ("Warsaw", "Poland"), ("Beijing", "China"), ("Delhi", "India"),
    ("Ottawa", "Canada"), ("Canberra", "Australia"), ("Stockholm", "Sweden"),
    ("Helsinki", "Finland"), ("Copenhagen", "Denmark"), ("Amsterdam", "Netherlands"),
    ("Brussels", "Belgium"), ("Budapest", "Hungary"), ("Bangkok", "Thailand"), ("Seoul", "Korea"),
    ("Havana", "Cuba"), ("Tehran", "Iran"), ("Baghdad", "Iraq"), ("Kabul", "Afghanistan"),
    ("Ankara", "Turkey"), ("Lima", "Peru"), ("Santiago", "Chile"), ("Manila", "Philippines"),
    ("Jakarta", "Indonesia"), ("Bern", "Switzerland"), ("Kiev", "Ukraine"), ("Damascus", "Syria"),
    ("Beirut", "Lebanon"), ("Islamabad", "Pakistan"),
)  # fmt: skip
# (country, language): the language most people speak there; both one token with a space.
LANGUAGES: tuple[tuple[str, str], ...] = (
    ("France", "French"), ("Germany", "German"), ("Italy", "Italian"), ("Spain", "Spanish"),
    ("Japan", "Japanese"), ("Russia", "Russian"), ("China", "Chinese"), ("Greece", "Greek"),
    ("Portugal", "Portuguese"), ("Poland", "Polish"), ("Sweden", "Swedish"),
    ("Norway", "Norwegian"), ("Finland", "Finnish"), ("Denmark", "Danish"),
    ("Netherlands", "Dutch"), ("Hungary", "Hungarian"), ("Turkey", "Turkish"), ("Korea", "Korean"),
    ("Iran", "Persian"), ("Egypt", "Arabic"), ("Brazil", "Portuguese"), ("England", "English"),
    ("Israel", "Hebrew"), ("Thailand", "Thai"), ("Vietnam", "Vietnamese"),
    ("Ukraine", "Ukrainian"), ("Mexico", "Spanish"), ("India", "Hindi"),
)  # fmt: skip
# relation -> (canonical prompt template with {subject}, its facts as (subject, answer)). The
# canonical wording is the one `factual` builds pairs from: its subject follows a space, so it
# is one token and a clean prompt and its corrupted prompt have the same length.
FACTUAL_RELATIONS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "capital": ("The city of {subject} is the capital of", CAPITALS),
    "language": ("In {subject}, people speak", LANGUAGES),
}
# The wordings of each relation the demo model is trained on, canonical first. The short
# capital wording is the specification's example ("Paris is the capital of"); its subject
# starts the prompt, so its token length depends on the city.
FACTUAL_TRAIN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": ("The city of {subject} is the capital of", "{subject} is the capital of"),
    "language": ("In {subject}, people speak",),
}
# Wordings held out of the demo model's training. Facts are memorized, so what can be held out
# is a wording: these sentences never appear in training, though every word in them does.
# They test whether recall reads the subject in a new context, not whether a fact is known.
FACTUAL_HELDOUT_TEMPLATES: dict[str, tuple[str, ...]] = {
    "capital": (
        "Everyone says that {subject} is the capital of",
        "Today, the city of {subject} is the capital of",
    ),
    "language": ("In {subject}, the people speak", "Today, in {subject}, people speak"),
}


def factual(
    n: int,
    seed: int = 0,
    *,
    relations: Sequence[str] = tuple(FACTUAL_RELATIONS),
    tokenizer: Any = None,
) -> PromptDataset:
    """`n` distinct factual-recall pairs: a fact's prompt, and the same prompt about another
    subject.

    "The city of Paris is the capital of" -> target " France"; its corrupted prompt names
    another city of the same relation whose answer differs, "The city of Berlin is the capital
    of", and `wrong` is that city's answer, " Germany". Relations: "capital" (city -> country)
    and "language" ("In France, people speak" -> " French"). Pairs alternate between the
    relations asked for; subjects are drawn from `random.Random(seed)`, and a draw that repeats
    an earlier pair is drawn again. Each relation's canonical wording (`FACTUAL_RELATIONS`) is
    used: its subject follows a space, so a clean prompt and its corrupted prompt have the same
    token length.

    `tokenizer` is the served model's (None: GPT-2's): a fact is kept where its subject is one
    token in the prompt and its answer one token after it (written in the tokenizer's space
    convention, `answer_form`); `note` says how many facts survived.
    """
    if n < 1:
        raise InputError(f"A factual dataset needs n >= 1 pairs, got n={n}.", field="dataset")
    unknown = [r for r in relations if r not in FACTUAL_RELATIONS]
    if unknown or not relations:
        raise InputError(
            f"Unknown factual relations {unknown}: choose from {sorted(FACTUAL_RELATIONS)}.",
            field="relations",
        )
    tokenizer = tokenizer_or_gpt2(tokenizer)
    kept: dict[str, list[tuple[str, str]]] = {}  # relation -> its facts that are one token
    forms: dict[str, str] = {}  # answer -> its answer string
    for relation in dict.fromkeys(relations):
        template, facts = FACTUAL_RELATIONS[relation]
        at = template.index("{subject}")
        kept[relation] = []
        for subject, answer in facts:
            prompt = template.format(subject=subject)
            form = answer_form(tokenizer, prompt, answer)
            if form is not None and spans_are_one_token(
                tokenizer, prompt, [(at, at + len(subject))]
            ):
                kept[relation].append((subject, answer))
                forms[answer] = form
    # A relation's pairs: each fact with each fact of another answer.
    capacity = {
        relation: sum(1 for _, a in facts for _, b in facts if a != b)
        for relation, facts in kept.items()
    }
    survivors = "; ".join(
        f"{len(kept[r])} of {len(FACTUAL_RELATIONS[r][1])} {r} facts are one token" for r in kept
    )
    # Pair i asks relation i % R, so relation number r gets ceil((n - r) / R) pairs.
    total = min(capacity[r] * len(relations) + i for i, r in enumerate(relations))
    if n > total:
        raise too_many_pairs("factual", n, total, survivors)
    rng = random.Random(seed)
    clean: list[str] = []
    corrupt, target, wrong = [], [], []
    seen: set[tuple[str, str]] = set()
    while len(clean) < n:
        relation = relations[len(clean) % len(relations)]
        template, pool = FACTUAL_RELATIONS[relation][0], kept[relation]
        subject, answer = rng.choice(pool)
        other_subject, other_answer = rng.choice([f for f in pool if f[1] != answer])
        pair = (template.format(subject=subject), template.format(subject=other_subject))
        if pair in seen:
            continue
        seen.add(pair)
        clean.append(pair[0])
        corrupt.append(pair[1])
        target.append(forms[answer])
        wrong.append(forms[other_answer])
    return PromptDataset(
        clean,
        corrupt,
        target,
        wrong,
        name=f"factual:{n}:{seed}",
        note=f"{survivors}; {total:,} distinct pairs",
    )
