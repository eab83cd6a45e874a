"""Prompt-pair datasets for activation patching: clean and corrupted prompts with their answers.

Vocabulary. A *pair* is a clean prompt and a corrupted prompt that differ in a few tokens, so
that the model's answer changes; `target` is the answer the clean prompt calls for and `wrong`
the answer the corrupted prompt calls for. Every answer is a string the model reads as one
token, usually with its leading space (" Mary"). The metric the engine averages over pairs is
usually the logit difference `logit(target) - logit(wrong)` at the final position.

Two generated tasks ship here, and any other can be read from a JSONL file:

- `ioi`: indirect object identification (Wang et al. 2022, "Interpretability in the Wild").
  "When Mary and John went to the store, John gave a drink to" -> " Mary". The name said twice
  is the subject (S); the name said once is the indirect object (IO), the answer.
- `factual`: factual recall. "The city of Paris is the capital of" -> " France", and
  "In France, people speak" -> " French".
- `load_dataset("ioi:N[:SEED]" | "factual:N[:SEED]" | "path/to/pairs.jsonl")`, and the MIB
  tasks of `actpatch.mib_tasks` ("mib-ioi:N", "add:N", "sub:N", "mcqa:N"). Every generator
  takes the served model's tokenizer: `load_dataset(spec, tokenizer=model.tokenizer)`.

Any tokenizer. The word lists were chosen as one GPT-2 token each *with the leading space*
(" Mary", " Berlin"). Given another tokenizer, `ioi` and `factual` keep only the words that are
one token in it (`answer_form`: 'ĠMary' in GPT-2's byte-level BPE, '▁Mary' in SentencePiece's),
write the answers in its space convention, count role positions in its tokens, and say in the
dataset's `note` how many candidates survived. Pairs are distinct; asking for more than the
surviving words make is an InputError that says how many can be made. A prompt is read as one
BOS token and then its tokens without special tokens (`LoadedModel.to_tokens`), as
TransformerLens does by default; positions count that BOS as 0.

Token lengths. Every kept word is one token after a space, so all prompts that `ioi` and
`factual` build from one template have the same token length, and a clean prompt and its
corrupted prompt always have the same length. Different templates have different lengths.
The engine averages the metric over pairs, and a position-resolved sweep (one patch per
position) needs all clean prompts to share one token length, and all corrupted prompts too;
split a mixed dataset with `PromptDataset.group_by_length`, or ask
`ioi(..., same_length=True)` for one template.

At the start of a prompt a word has no leading space, and most cities are then several tokens:
"Berlin is the capital of" is 'Ber', 'lin', ' is', ... (6 tokens, BOS aside) against 5 for
"Paris is the capital of". That wording is the specification's own example and one of the
capital wordings the demo model is trained on (`FACTUAL_TRAIN_TEMPLATES`), but `factual` never
builds it: its pairs use each relation's canonical wording (`FACTUAL_RELATIONS`), whose subject
follows a space. Pairs of different lengths are patched with position alignment
(docs/alignment.md).

Roles. A pair may name its positions by role: `positions = {"IO": 2, "S1": 4, "S2": 10,
"END": 14}` (token positions, BOS = 0; a role may also be a list of positions, a span), with
`corrupt_positions` for the corrupted prompt when its roles sit elsewhere (else the same). A
position-resolved sweep over pairs of different templates is then indexed by role instead of
by raw position (`docs/datasets.md`). `ioi` names every token of its prompts by the roles of
the IOI paper and its successors (`IOI_ROLES`): 'starts' (BOS and any words before the first
name), 'IO', 'and', 'S1', 'S1+1' (the token after S1, where previous-token heads write),
'action1' (the rest of the first clause), 'S2', 'action2' (S2's verb phrase) and 'END' (the
final token, where the answer is read). Its positions are the tokenizer's token positions.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from actpatch.errors import InputError

Split = Literal["train", "heldout", "all"]

# --- IOI ------------------------------------------------------------------------------------

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

# --- factual recall -------------------------------------------------------------------------

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

_PLACEHOLDER = re.compile(r"\{([A-Z]+)\}")
_JSONL_KEYS = ("clean", "corrupt", "target", "wrong", "positions", "corrupt_positions")

# The roles `ioi` names, in the order of an ABBA prompt (after Wang et al. 2022's position
# names and the spans of Haklay et al. 2025's IOI data): every token of a prompt is in one of
# them, except that in BABA order ("When John and Mary ...") 'S1+1' is the ' and' token.
IOI_ROLES: tuple[str, ...] = (
    "starts", "IO", "and", "S1", "S1+1", "action1", "S2", "action2", "END",
)  # fmt: skip

# A role's positions in one prompt: one token position (BOS = 0), or several (a span).
Positions = dict[str, list[int]]


@dataclass(frozen=True)
class PromptDataset:
    """Clean and corrupted prompts with, per pair, the clean answer and the corrupted one.

    `target[i]` is the answer `clean[i]` calls for and `wrong[i]` the one `corrupt[i]` calls
    for (None when the dataset names no wrong answer), each with its leading space.
    """

    clean: list[str]
    corrupt: list[str]
    target: list[str]
    wrong: list[str] | None
    name: str
    # Per pair, each role's token positions in the clean prompt (and in the corrupted prompt,
    # when they differ); None when the dataset names no roles.
    positions: list[Positions] | None = None
    corrupt_positions: list[Positions] | None = None
    # Where each pair came from, for error messages ("pairs.jsonl, line 3"); None: "pair i".
    origins: list[str] | None = field(default=None, compare=False)
    # How the generator made the pairs, for display (e.g. how many candidate names survived the
    # tokenizer's one-token test); None when there is nothing to say.
    note: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        n = len(self.clean)
        lengths = {"clean": n, "corrupt": len(self.corrupt), "target": len(self.target)}
        if self.wrong is not None:
            lengths["wrong"] = len(self.wrong)
        for name in ("positions", "corrupt_positions", "origins"):
            value = getattr(self, name)
            if value is not None:
                lengths[name] = len(value)
        if len(set(lengths.values())) != 1:
            raise InputError(
                f"Dataset {self.name!r} has lists of different lengths ({lengths}): every pair "
                "needs one clean prompt, one corrupted prompt and one target (and one wrong "
                "answer if any are given).",
                field="dataset",
            )
        if n == 0:
            raise InputError(
                f"Dataset {self.name!r} has no pairs: give at least one clean/corrupted pair.",
                field="dataset",
            )

    def __len__(self) -> int:
        return len(self.clean)

    def select(self, indices: Sequence[int], name: str | None = None) -> PromptDataset:
        """The sub-dataset made of the pairs at `indices`, in that order."""

        def pick(values: list[Any] | None) -> list[Any] | None:
            return None if values is None else [values[i] for i in indices]

        return PromptDataset(
            clean=[self.clean[i] for i in indices],
            corrupt=[self.corrupt[i] for i in indices],
            target=[self.target[i] for i in indices],
            wrong=pick(self.wrong),
            name=name or self.name,
            positions=pick(self.positions),
            corrupt_positions=pick(self.corrupt_positions),
            origins=[self.origin(i) for i in indices],
            note=self.note,
        )

    def origin(self, i: int) -> str:
        """Where pair i came from, for messages: "pairs.jsonl, line 3", or "pair 3 of ioi:8:0"."""
        return self.origins[i] if self.origins is not None else f"pair {i} of {self.name}"

    @property
    def roles(self) -> list[str]:
        """The roles the pairs name, in the first pair's order ([] when they name none)."""
        return [] if self.positions is None else list(self.positions[0])

    def length_groups(self, tokenize: Callable[[str], list[int]]) -> list[list[int]]:
        """The pairs' indices grouped by (clean token length, corrupted token length)."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, (clean, corrupt) in enumerate(zip(self.clean, self.corrupt, strict=True)):
            key = (len(tokenize(clean)), len(tokenize(corrupt)))
            groups.setdefault(key, []).append(i)
        return list(groups.values())

    def group_by_length(self, tokenize: Callable[[str], list[int]]) -> list[PromptDataset]:
        """Split into sub-datasets whose clean prompts share one token length, corrupted too.

        `tokenize` maps a prompt to its token ids (with BOS or without: only the lengths are
        compared). Groups come in the order their first pair appears; each is named
        `"{name}[clean=C,corrupt=K]"` with its two lengths.
        """
        out = []
        for indices in self.length_groups(tokenize):
            c, k = len(tokenize(self.clean[indices[0]])), len(tokenize(self.corrupt[indices[0]]))
            out.append(self.select(indices, name=f"{self.name}[clean={c},corrupt={k}]"))
        return out

    def check(
        self,
        to_tokens: Callable[[str], list[int]],
        answer_tokens: Callable[[str], list[int]],
    ) -> None:
        """Raise an InputError naming the pair (a JSONL file's line) and the field at fault.

        `to_tokens` tokenizes a prompt as the model reads it (BOS first), `answer_tokens` an
        answer (no BOS). Checks that each answer is one token and each role lies inside its
        prompt.
        """
        for i in range(len(self)):
            for key, answers in (("target", self.target), ("wrong", self.wrong)):
                if answers is None:
                    continue
                ids = answer_tokens(answers[i])
                if len(ids) != 1:
                    raise InputError(
                        f"{self.origin(i)}: the {key} answer {answers[i]!r} is {len(ids)} "
                        "tokens for this model; every answer must be one token (e.g. ' Mary', "
                        "with its leading space).",
                        field="dataset",
                    )
            for key, prompts, table in (
                ("positions", self.clean, self.positions),
                ("corrupt_positions", self.corrupt, self.corrupt_positions or self.positions),
            ):
                if table is None:
                    continue
                n = len(to_tokens(prompts[i]))
                for role, where in table[i].items():
                    outside = [p for p in where if p >= n]
                    if outside:
                        which = "clean" if key == "positions" else "corrupted"
                        raise InputError(
                            f"{self.origin(i)}: {key} puts role {role!r} at {outside}, "
                            f"outside the {which} prompt's {n} tokens (positions count from 0, "
                            "the BOS token).",
                            field="dataset",
                        )


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


@functools.cache
def _gpt2() -> Any:
    """GPT-2's tokenizer, loaded once (what the generators size to when given none)."""
    from actpatch.tokenizer import gpt2_tokenizer

    return gpt2_tokenizer()


def tokenizer_or_gpt2(tokenizer: Any = None) -> Any:
    """`tokenizer`, or GPT-2's (loaded once) when None: the tokenizer a generator sizes to."""
    return _gpt2() if tokenizer is None else tokenizer


# --- the tokenizer's view ---------------------------------------------------------------------

Span = tuple[int, int]  # characters [start, end) of a prompt


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


def _one_token_forms(tokenizer: Any, context: str, words: Sequence[str]) -> dict[str, str]:
    """`answer_form` of each word after `context`, for the words that are one token there."""
    forms = {word: answer_form(tokenizer, context, word) for word in dict.fromkeys(words)}
    return {word: form for word, form in forms.items() if form is not None}


def _too_many(task: str, n: int, total: int, survivors: str) -> InputError:
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
    forms = _one_token_forms(tokenizer, "to", candidates)
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
    place_forms = _one_token_forms(tokenizer, "the", IOI_PLACES)
    object_forms = _one_token_forms(tokenizer, "a", IOI_OBJECTS)
    places = [p for p in IOI_PLACES if p in place_forms]
    objects = [o for o in IOI_OBJECTS if o in object_forms]
    k = len(forms)
    survivors = (
        f"{k} of {len(set(candidates))} names are one token, e.g. "
        f"{next(iter(forms.values()), None)!r}; {len(places)} of {len(IOI_PLACES)} places and "
        f"{len(objects)} of {len(IOI_OBJECTS)} objects"
    )
    if k < 2 or not places or not objects:
        raise _too_many("ioi", n, 0, survivors)

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
        raise _too_many("ioi", n, total, survivors)
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
        raise _too_many("factual", n, total, survivors)
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


# The generated datasets a spec "NAME:N[:SEED]" names, with what each is; the CLI's and the
# API's help texts are made from this table. Every generator draws only the words that are one
# token for the served model's tokenizer.
DATASET_SPECS: dict[str, str] = {
    "ioi": "indirect object identification",
    "factual": "factual recall",
    "mib-ioi": "MIB's IOI templates",
    "add": "MIB's two-operand addition",
    "sub": "MIB's two-operand subtraction",
    "mcqa": "MIB's colour multiple choice",
}
# "'ioi:N', 'factual:N', ..., 'mcqa:N'", for help texts.
DATASET_SPEC_LIST = ", ".join(f"'{name}:N'" for name in DATASET_SPECS)
_SPEC_HELP = (
    "Give "
    + ", ".join(f"'{name}:N' ({what})" for name, what in DATASET_SPECS.items())
    + ", each with an optional seed ('ioi:N:SEED'), or the path of a JSONL file with one pair "
    'per line: {"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y"} ("wrong" '
    "optional)."
)


def load_dataset(spec: str, tokenizer: Any = None) -> PromptDataset:
    """The dataset named by `spec`: "NAME:N[:SEED]" (`DATASET_SPECS`) or a JSONL file of pairs.

    `tokenizer` is the served model's (a Hugging Face tokenizer; None: GPT-2's): every
    generated dataset draws only the names, facts, numbers and labels that are one token in it,
    and counts role positions in its tokens.
    """
    head = spec.split(":", 1)[0]
    if head in DATASET_SPECS and not Path(spec).exists():
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not all(p.strip().isdigit() for p in parts[1:]):
            raise InputError(
                f"Cannot read dataset spec {spec!r}: N and SEED must be whole numbers. "
                + _SPEC_HELP,
                field="dataset",
            )
        n, seed = int(parts[1]), int(parts[2]) if len(parts) == 3 else 0
        if head == "ioi":
            return ioi(n, seed, tokenizer=tokenizer)
        if head == "factual":
            return factual(n, seed, tokenizer=tokenizer)
        from actpatch import mib_tasks

        if head == "mib-ioi":
            return mib_tasks.mib_ioi(n, seed, tokenizer=tokenizer)
        if head == "mcqa":
            return mib_tasks.mcqa(n, seed, tokenizer=tokenizer)
        return mib_tasks.arithmetic(
            n, seed, op="add" if head == "add" else "sub", tokenizer=tokenizer
        )
    path = Path(spec).expanduser()
    if not path.is_file():
        raise InputError(
            f"Dataset {spec!r} is neither a known spec nor a file. " + _SPEC_HELP, field="dataset"
        )
    return _read_jsonl(path)


def _read_jsonl(path: Path) -> PromptDataset:
    """The pairs of a JSONL file, one {"clean", "corrupt", "target", "wrong"?} object a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"Cannot read dataset file {path}: {exc}.", field="dataset") from exc
    return parse_jsonl(text, name=path.stem, where=str(path))


def parse_jsonl(text: str, *, name: str = "pairs", where: str = "pairs") -> PromptDataset:
    """The pairs of JSONL text (a file's, or one uploaded to the server), one object a line.

    Each line: {"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y",
    "positions": {"IO": 2, "S2": 10, "END": 14}, "corrupt_positions": {...}}; "wrong",
    "positions" and "corrupt_positions" are optional, but on every line or on none, and every
    line names the same roles. Errors name the line and the field.
    """

    def fail(lineno: int, why: str, key: str = "") -> InputError:
        # The error's field is the input at fault (the dataset); the message names the key.
        return InputError(
            f"{where}, line {lineno}: {why}. Each line must be a JSON object "
            '{"clean": "...", "corrupt": "...", "target": " X", "wrong": " Y"} with string '
            'values ("wrong" optional, but on every line or on none), and optionally '
            '"positions": {"IO": 2, "S2": 10, "END": 14} (token positions, BOS = 0).',
            field="dataset",
        )

    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise fail(lineno, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise fail(lineno, f"expected a JSON object, got {type(row).__name__}")
        unknown = sorted(set(row) - set(_JSONL_KEYS))
        if unknown:
            raise fail(lineno, f"unknown key(s) {unknown}", unknown[0])
        missing = [k for k in ("clean", "corrupt", "target") if k not in row]
        if missing:
            raise fail(lineno, f"missing key(s) {missing}", missing[0])
        not_str = [
            k for k, v in row.items() if not isinstance(v, str) and not k.endswith("positions")
        ]
        if not_str:
            raise fail(lineno, f"value(s) of {not_str} are not strings", not_str[0])
        for key in ("positions", "corrupt_positions"):
            if key in row:
                row[key] = _read_positions(row[key], lineno, key, fail)
        rows.append((lineno, row))
    if not rows:
        raise InputError(f"Dataset {where} has no pairs. " + _SPEC_HELP, field="dataset")
    first = rows[0][1]
    for key in ("wrong", "positions", "corrupt_positions"):
        for lineno, row in rows:
            if (key in row) != (key in first):
                raise fail(lineno, f"{key!r} is given on some lines and not on others", key)
    for key in ("positions", "corrupt_positions"):
        if key not in first:
            continue
        roles = set(first[key])
        for lineno, row in rows:
            if set(row[key]) != roles:
                raise fail(
                    lineno,
                    f"{key} names roles {sorted(row[key])} but line {rows[0][0]} names "
                    f"{sorted(roles)}: every pair must name the same roles",
                    key,
                )
    if "corrupt_positions" in first and "positions" not in first:
        raise fail(rows[0][0], "corrupt_positions needs positions too", "corrupt_positions")
    return PromptDataset(
        clean=[r["clean"] for _, r in rows],
        corrupt=[r["corrupt"] for _, r in rows],
        target=[r["target"] for _, r in rows],
        wrong=[r["wrong"] for _, r in rows] if "wrong" in first else None,
        name=name,
        positions=[r["positions"] for _, r in rows] if "positions" in first else None,
        corrupt_positions=(
            [r["corrupt_positions"] for _, r in rows] if "corrupt_positions" in first else None
        ),
        origins=[f"{where}, line {lineno}" for lineno, _ in rows],
    )


def _read_positions(
    value: Any, lineno: int, key: str, fail: Callable[[int, str, str], InputError]
) -> Positions:
    """A JSONL line's {"role": position or [positions]} as {"role": [positions]}."""
    if not isinstance(value, dict) or not value:
        raise fail(
            lineno,
            f'{key} must be an object of roles, e.g. {{"IO": 2, "S2": 10, "END": 14}}',
            key,
        )
    out: Positions = {}
    for role, where in value.items():
        where = [where] if isinstance(where, int) and not isinstance(where, bool) else where
        if (
            not isinstance(where, list)
            or not where
            or not all(isinstance(p, int) and not isinstance(p, bool) and p >= 0 for p in where)
        ):
            raise fail(
                lineno,
                f"{key}: role {role!r} must be a token position (a whole number >= 0, BOS = 0) "
                f"or a non-empty list of them, got {where!r}",
                key,
            )
        out[str(role)] = list(where)
    return out
