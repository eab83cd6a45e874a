"""The IOI task: indirect object identification pairs, their word lists and their roles.

Wang et al. 2022, "Interpretability in the Wild": "When Mary and John went to the store, John
gave a drink to" -> " Mary". The name said twice is the subject (S); the name said once is the
indirect object (IO), the answer. `ioi(n, seed)` draws pairs from the templates, names, places
and objects here, sized to the served model's tokenizer (`actpatch.datasets.tokens`).

Token lengths. Every kept word is one token after a space, so all prompts that `ioi` builds
from one template have the same token length, and a clean prompt and its corrupted prompt
always have the same length. Different templates have different lengths: ask
`ioi(..., same_length=True)` for one template.

Roles. `ioi` names every token of its prompts by the roles of the IOI paper and its successors
(`IOI_ROLES`): 'starts' (BOS and any words before the first name), 'IO', 'and', 'S1', 'S1+1'
(the token after S1, where previous-token heads write), 'action1' (the rest of the first
clause), 'S2', 'action2' (S2's verb phrase) and 'END' (the final token, where the answer is
read). Its positions are the tokenizer's token positions (`ioi_positions`, which MIB's IOI task
shares).
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Any, Literal

from actpatch.datasets.pairs import Positions, PromptDataset
from actpatch.datasets.tokens import (
    one_token_forms,
    span_positions,
    token_offsets,
    tokenizer_or_gpt2,
    too_many_pairs,
)
from actpatch.errors import InputError

Split = Literal["train", "heldout", "all"]


# Templates are written in ABBA order: {A} is the indirect object (the answer), {B} the subject,
# said twice. The BABA variant of a template swaps the first {A} with the first {B}
# ("When {B} and {A} went ..., {B} gave ... to"); `ioi` draws both orders. The first sixteen are
# Wang et al.'s templates; the last five are new wordings, held out from the demo model's
# training.
IOI_TRAIN_TEMPLATES: tuple[str, ...] = (
    "When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "Then, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {A} and {B} had a lot of fun at the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {A} and {B} were working at the {PLACE}. {B} decided to give a {OBJECT} to",
    "Then, {A} and {B} were thinking about going to the {PLACE}. {B} wanted to give a {OBJECT} to",
    "Then, {A} and {B} had a long argument, and afterwards {B} said to",
    "After {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {B} decided to give it to",
    "When {A} and {B} got a {OBJECT} at the {PLACE}, {B} decided to give the {OBJECT} to",
    "While {A} and {B} were working at the {PLACE}, {B} gave a {OBJECT} to",
    "While {A} and {B} were commuting to the {PLACE}, {B} gave a {OBJECT} to",
    "After the lunch, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Afterwards, {A} and {B} went to the {PLACE}. {B} gave a {OBJECT} to",
    "Then, {A} and {B} had a long argument. Afterwards {B} said to",
    "The {PLACE} {A} and {B} went to had a {OBJECT}. {B} gave it to",
    "Friends {A} and {B} found a {OBJECT} at the {PLACE}. {B} gave it to",
)
IOI_HELDOUT_TEMPLATES: tuple[str, ...] = (
    "Yesterday, {A} and {B} went to the {PLACE}, and {B} gave a {OBJECT} to",
    "At the {PLACE}, {A} and {B} found a {OBJECT}. {B} gave it to",
    "When {A} and {B} were at the {PLACE}, {B} handed a {OBJECT} to",
    "Later, {A} and {B} had fun at the {PLACE}, and then {B} gave the {OBJECT} to",
    "After {A} and {B} had a long argument at the {PLACE}, {B} said to",
)
IOI_TEMPLATES: tuple[str, ...] = IOI_TRAIN_TEMPLATES + IOI_HELDOUT_TEMPLATES

# First names that are one GPT-2 token with a leading space (" Mary"). Names that are also
# common words (Grace, Rose, Will, Mark as a verb...) are left out where we noticed them.
IOI_NAMES: tuple[str, ...] = (
    "Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Paul",
    "Anna", "Jack", "Kate", "Sarah", "David", "Michael", "Robert", "William", "Richard",
    "Joseph", "Thomas", "Charles", "Chris", "Daniel", "Matthew", "Anthony", "Steven", "Andrew",
    "Joshua", "Kevin", "Brian", "George", "Edward", "Ryan", "Jacob", "Gary", "Eric",
    "Stephen", "Larry", "Justin", "Scott", "Frank", "Brandon", "Raymond", "Gregory", "Samuel",
    "Patrick", "Alexander", "Jerry", "Dennis", "Peter", "Henry", "Carl", "Arthur", "Adam",
    "Harry", "Nathan", "Kyle", "Walter", "Roger", "Keith", "Jeremy", "Terry", "Sean",
    "Christian", "Ethan", "Joe", "Jesse", "Bruce", "Albert", "Billy", "Louis", "Alan",
    "Victor", "Bobby", "Johnny", "Roy", "Ralph", "Russell", "Philip", "Howard", "Randy",
    "Vincent", "Eugene", "Fred", "Lisa", "Nancy", "Karen", "Betty", "Helen", "Sandra",
    "Donna", "Carol", "Ruth", "Sharon", "Michelle", "Laura", "Emily", "Kimberly", "Deborah",
    "Jessica", "Jennifer", "Linda", "Susan", "Margaret", "Dorothy", "Rebecca", "Amanda", "Martha",
    "Emma", "Julie", "Heather", "Diane", "Joyce", "Victoria", "Kelly", "Christina", "Lauren",
    "Joan", "Judith", "Megan", "Cheryl", "Andrea", "Hannah", "Olivia", "Alice", "Teresa",
    "Sara", "Janet", "Catherine", "Maria", "Frances", "Ann", "Kathryn", "Ashley", "Jane",
    "Tim", "Mike", "Bob", "Jim", "Ben", "Sam", "Max", "Alex", "Ted",
    "Leo", "Ray", "Ken", "Ian", "Luke", "Ross", "Ron", "Greg", "Jeff",
    "Matt", "Nick", "Rick", "Phil", "Joel", "Lucy", "Jenny", "Ellen", "Eva",
    "Nina", "Lily", "Tony", "Marco", "Carlos", "Juan", "Jose", "Luis", "Pedro",
    "Hugo", "Oscar", "Felix", "Otto", "Ivan", "Igor", "Omar", "Ali", "Ahmed",
)  # fmt: skip
# Every fifth name is held out of the demo model's IOI training (it still sees those names in
# simple sentences such as "My friend Amy is very kind.", so their embeddings are trained).
IOI_HELDOUT_NAMES: tuple[str, ...] = IOI_NAMES[4::5]
IOI_TRAIN_NAMES: tuple[str, ...] = tuple(n for n in IOI_NAMES if n not in IOI_HELDOUT_NAMES)

IOI_PLACES: tuple[str, ...] = (
    "store", "garden", "restaurant", "school", "hospital", "office", "house", "station",
    "park", "beach", "library", "market", "church", "kitchen", "museum", "theater",
    "cafe", "bank", "hotel", "airport", "zoo", "farm", "lake", "mall", "gym",
)  # fmt: skip
# Objects take the article "a", so none starts with a vowel sound.
IOI_OBJECTS: tuple[str, ...] = (
    "ring", "kiss", "bone", "basketball", "computer", "necklace", "drink", "snack", "book",
    "letter", "gift", "flower", "cake", "hat", "key", "bag", "ball", "phone", "watch", "pen",
    "card", "ticket", "cookie", "toy", "coin", "map", "box", "cup", "shirt", "candle", "bottle",
)  # fmt: skip

_PLACEHOLDER = re.compile(r"\{([A-Z]+)\}")

# The roles `ioi` names, in the order of an ABBA prompt (after Wang et al. 2022's position
# names and the spans of Haklay et al. 2025's IOI data): every token of a prompt is in one of
# them, except that in BABA order ("When John and Mary ...") 'S1+1' is the ' and' token.
IOI_ROLES: tuple[str, ...] = (
    "starts", "IO", "and", "S1", "S1+1", "action1", "S2", "action2", "END",
)  # fmt: skip


def _check_template(template: str) -> None:
    """Raise an InputError unless `template` is a usable ABBA IOI template."""
    found = _PLACEHOLDER.findall(template)
    unknown = sorted(set(found) - {"A", "B", "PLACE", "OBJECT"})
    if (
        unknown
        or found.count("A") != 1
        or found.count("B") != 2
        or found.index("A") > found.index("B")
    ):
        raise InputError(
            f"IOI template {template!r} is not usable: a template names the indirect object "
            "{A} once and the subject {B} twice, {A} before the first {B} (ABBA order), and "
            "may use {PLACE} and {OBJECT}; it ends just before the answer, e.g. "
            "'When {A} and {B} went to the {PLACE}, {B} gave a {OBJECT} to'.",
            field="templates",
        )


def _fill_ioi(
    template: str, io: str, s: str, place: str, obj: str, *, baba: bool, corrupted: bool
) -> str:
    """The IOI prompt `template` with IO `io` and subject `s` (BABA order if `baba`).

    `corrupted` replaces the subject's second mention with the IO, which flips the answer.
    """
    return _fill_ioi_spans(template, io, s, place, obj, baba=baba, corrupted=corrupted)[0]


def _fill_ioi_spans(
    template: str, io: str, s: str, place: str, obj: str, *, baba: bool, corrupted: bool
) -> tuple[str, list[tuple[int, int]]]:
    """`_fill_ioi`'s prompt and the character spans of its three names, in order of mention."""
    head, _, tail = template.rpartition("{B}")  # tail follows the subject's second mention
    if baba:  # swap the first mentions: "{A} and {B}" -> "{B} and {A}"
        head = head.replace("{A}", "\0", 1).replace("{B}", "{A}", 1).replace("\0", "{B}", 1)
    filled = head + ("{A}" if corrupted else "{B}") + tail
    values = {"A": io, "B": s, "PLACE": place, "OBJECT": obj}
    text, names, last = "", [], 0
    for match in _PLACEHOLDER.finditer(filled):
        text += filled[last : match.start()]
        value = values[match.group(1)]
        if match.group(1) in ("A", "B"):
            names.append((len(text), len(text) + len(value)))
        text += value
        last = match.end()
    return text + filled[last:], names


def ioi_positions(
    prompt: str, names: list[tuple[int, int]], baba: bool, tokenizer: Any = None
) -> Positions:
    """The `IOI_ROLES` of an IOI prompt as token positions (BOS = 0) of `tokenizer` (GPT-2's).

    `names` are the character spans of the three name mentions, in order (`baba`: the subject
    is mentioned first). Each role is the tokens that overlap its characters.
    """
    offsets = token_offsets(tokenizer_or_gpt2(tokenizer), prompt)
    n = len(offsets) + 1  # with BOS

    def token_at(span: tuple[int, int]) -> int:
        hits = span_positions(offsets, span)
        if len(hits) != 1:
            a, b = span
            raise InputError(
                f"IOI prompt {prompt!r}: the name at characters {a}-{b} is not one token "
                "for this tokenizer, so its role has no single position.",
                field="names",
            )
        return hits[0]

    first, second, s2 = (token_at(span) for span in names)
    io, s1 = (second, first) if baba else (first, second)
    end = n - 1
    s1_next = s1 + 1
    roles: Positions = {
        "starts": list(range(0, first)),
        "IO": [io],
        "and": list(range(first + 1, second)),
        "S1": [s1],
        "S1+1": [s1_next],
        "action1": [p for p in range(second + 1, s2) if p != s1_next],
        "S2": [s2],
        "action2": list(range(s2 + 1, end)),
        "END": [end],
    }
    empty = [role for role, where in roles.items() if not where]
    if empty:
        raise InputError(
            f"IOI prompt {prompt!r} has no tokens for the role(s) {empty}: a template needs "
            "words before the first name, between the names, after them and after the "
            "repeated subject.",
            field="templates",
        )
    return {role: roles[role] for role in IOI_ROLES}


def ioi(
    n: int,
    seed: int = 0,
    *,
    split: Split = "all",
    templates: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    same_length: bool = False,
    tokenizer: Any = None,
) -> PromptDataset:
    """`n` distinct indirect-object-identification pairs: the answer flips when the subject is
    swapped.

    Convention (TransformerLens's IOI demo): the clean prompt
    "When Mary and John went to the store, John gave a drink to" has target " Mary" (the IO)
    and wrong " John" (the subject S). The corrupted prompt is the same sentence with the
    repeated subject replaced by the other name,
    "When Mary and John went to the store, Mary gave a drink to", whose answer is " John" (the
    `wrong` of the pair). So `logit(target) - logit(wrong)` is positive on clean prompts and
    negative on corrupted ones, and the two prompts have the same token length.

    Each pair draws a template, two distinct names, a place, an object and the order of the
    first two names (ABBA or BABA) from `random.Random(seed)`: the same arguments give the
    same dataset; a draw that repeats an earlier pair is drawn again. `split` picks the
    templates and names: "train" (those the demo model was trained on), "heldout" (those it
    never saw in an IOI sentence) or "all"; `templates` and `names` override it. With
    `same_length=True` one template (drawn from the seed) is used for every pair, so all
    prompts have one token length, as a position-resolved sweep needs.

    `tokenizer` is the served model's (None: GPT-2's): the default names, places and objects
    are kept where they are one token after a space in it, and the answers are written in its
    space convention (`answer_form`); names given in `names` must all be one token. The roles'
    positions are its token positions, and `note` says how many candidates survived.
    """
    if n < 1:
        raise InputError(f"An IOI dataset needs n >= 1 pairs, got n={n}.", field="dataset")
    if split not in ("train", "heldout", "all"):
        raise InputError(
            f"Unknown IOI split {split!r}: use 'train', 'heldout' or 'all'.", field="split"
        )
    default_templates = {
        "train": IOI_TRAIN_TEMPLATES,
        "heldout": IOI_HELDOUT_TEMPLATES,
        "all": IOI_TEMPLATES,
    }[split]
    default_names = {"train": IOI_TRAIN_NAMES, "heldout": IOI_HELDOUT_NAMES, "all": IOI_NAMES}[
        split
    ]
    chosen_templates = list(templates) if templates is not None else list(default_templates)
    candidates = list(names) if names is not None else list(default_names)
    if not chosen_templates:
        raise InputError("Give at least one IOI template.", field="templates")
    for template in chosen_templates:
        _check_template(template)
    if len(set(candidates)) < 2:
        raise InputError("IOI needs at least two distinct names.", field="names")
    tokenizer = tokenizer_or_gpt2(tokenizer)
    forms = one_token_forms(tokenizer, "to", candidates)
    if names is not None and len(forms) < len(set(candidates)):
        bad = [name for name in dict.fromkeys(candidates) if name not in forms]
        raise InputError(
            "These names are not one token (after a space) for this model's tokenizer: "
            f"{bad[:10]}{' ...' if len(bad) > 10 else ''}. A clean prompt and its corrupted "
            "prompt must have the same token length and each answer must be one token, so use "
            "names the tokenizer reads as one token (e.g. ' Mary').",
            field="names",
        )
    chosen_names = [name for name in candidates if name in forms]
    place_forms = one_token_forms(tokenizer, "the", IOI_PLACES)
    object_forms = one_token_forms(tokenizer, "a", IOI_OBJECTS)
    places = [p for p in IOI_PLACES if p in place_forms]
    objects = [o for o in IOI_OBJECTS if o in object_forms]
    k = len(forms)
    survivors = (
        f"{k} of {len(set(candidates))} names are one token, e.g. "
        f"{next(iter(forms.values()), None)!r}; {len(places)} of {len(IOI_PLACES)} places and "
        f"{len(objects)} of {len(IOI_OBJECTS)} objects"
    )
    if k < 2 or not places or not objects:
        raise too_many_pairs("ioi", n, 0, survivors)

    rng = random.Random(seed)
    if same_length:
        chosen_templates = [rng.choice(chosen_templates)]
    # Distinct clean prompts per template: ABBA or BABA x IO x S [x place] [x object].
    total = sum(
        2
        * k
        * (k - 1)
        * (len(places) if "{PLACE}" in template else 1)
        * (len(objects) if "{OBJECT}" in template else 1)
        for template in set(chosen_templates)
    )
    if n > total:
        raise too_many_pairs("ioi", n, total, survivors)
    clean: list[str] = []
    corrupt, target, wrong = [], [], []
    positions: list[Positions] = []
    seen: set[str] = set()
    while len(clean) < n:
        template = rng.choice(chosen_templates)
        io, s = rng.sample(chosen_names, 2)
        place, obj = rng.choice(places), rng.choice(objects)
        baba = rng.random() < 0.5
        text, names_at = _fill_ioi_spans(template, io, s, place, obj, baba=baba, corrupted=False)
        if text in seen:  # the corrupted prompt and the answers follow from the clean prompt
            continue
        seen.add(text)
        clean.append(text)
        corrupt.append(_fill_ioi(template, io, s, place, obj, baba=baba, corrupted=True))
        target.append(forms[io])
        wrong.append(forms[s])
        # The corrupted prompt differs only in S2's name (one token either way): same positions.
        positions.append(ioi_positions(text, names_at, baba, tokenizer))
    suffix = "" if split == "all" else f":{split}"
    return PromptDataset(
        clean,
        corrupt,
        target,
        wrong,
        name=f"ioi:{n}:{seed}{suffix}",
        positions=positions,
        note=f"{survivors}; {total:,} distinct pairs",
    )
