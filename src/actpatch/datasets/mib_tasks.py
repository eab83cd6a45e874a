"""MIB's circuit-track tasks as generated prompt-pair datasets, sized to the model's tokenizer.

MIB (Mueller et al. 2025, "MIB: A Mechanistic Interpretability Benchmark") localizes circuits
on a fixed set of tasks, each a clean prompt with a counterfactual (our *corrupted*) prompt:
indirect object identification (IOI), two-operand arithmetic (addition and subtraction) and a
colour multiple-choice task (MCQA, "copycolors"). Its data live on the Hugging Face hub
(`mib-bench/ioi`, `mib-bench/arithmetic_addition`, `mib-bench/arithmetic_subtraction`,
`mib-bench/copycolors_mcqa`); this module generates pairs of the same shape, offline:

- `mib_ioi(n)`: "After Mary and John went to the store, John gave a drink to" -> " Mary";
  `load_dataset("mib-ioi:N[:SEED]")`.
- `arithmetic(n, op="add")`: "12 + 7 =" -> " 19"; `load_dataset("add:N[:SEED]")`, and
  `"sub:N[:SEED]"` for `op="sub"`.
- `mcqa(n)`: "Question: The ball is white. What color is the ball?\\nA. red\\nB. white\\n
  C. blue\\nD. green\\nAnswer:" -> " B"; `load_dataset("mcqa:N[:SEED]")`.

Tokenizer awareness. MIB keeps only the rows whose answers are one token for the model under
study (its loader filters the hub's rows with that model's tokenizer). Here each generator
takes the model's tokenizer and draws only the names, numbers and labels whose *answer form*
is one token: the token the model reads after the prompt, written with the tokenizer's own
leading-space convention (GPT-2's " Mary" is 'ĠMary'; a SentencePiece tokenizer's is '▁Mary',
which some of them give only for "Mary" without the space, because they prefix '▁' to a
text's start). `answer_form` finds that string; the engine reads it back as
`tokenizer(answer, add_special_tokens=False)`. A dataset's `note` says how many candidates
survived and how many distinct pairs they make; asking for more pairs than that raises an
InputError that says how many can be made. Without a tokenizer, GPT-2's is used.

Distinct pairs. The pairs of one dataset are all different: they are drawn without replacement
(`random.Random(seed)`) from every (clean, corrupted) pair the surviving candidates make, in a
fixed enumeration, so the same arguments give the same dataset.

What MIB fixes, and what we chose where it is silent. MIB's circuit-track repository
(`MIB_circuit_track/dataset.py`) names the hub's columns, the answer of each task and the
counterfactual it patches from, but not the templates or word lists; its causal-variable
track's code shows the IOI and MCQA prompt formats. The rest is ours, chosen to match the
paper's description:

- IOI. MIB: the answer is " IO" against " S"; the default counterfactual is
  `s2_io_flip_counterfactual` (the subject's second mention becomes the IO, so the answer
  flips); the hub also has an `abc_counterfactual`, with a third name `random_c`. Templates
  are written with `{name_A}`, `{name_B}` and the repeated-name slot `{name_C}`, e.g. "After
  {name_A} and {name_B} went to the {place}, {name_C} gave a {object} to". Ours: Wang et al.'s
  fifteen templates (that one among them) in that syntax, with their eight places and objects;
  `counterfactual="s2_io_flip"` (default) or `"abc"` (the second mention becomes a third name,
  "..., Tom gave a drink to"; `wrong` stays " S", as MIB scores it). The names are ours
  (`IOI_NAMES`), filtered by the tokenizer.
- Arithmetic. MIB: two-operand problems with operator '+' or '-', the answer one token, and
  `random_counterfactual` (another problem) as the counterfactual. Ours: operands 0-99 (the
  causal-variable track's arithmetic is two-digit), no negative differences, and a
  counterfactual that changes one operand, so the clean and corrupted prompts differ in one
  token. The prompt "{a} + {b} =" has spaces so that the answer carries the leading-space
  convention (" 19"): MIB's loader tokenizes the bare label ("19"), which a SentencePiece
  tokenizer cannot give as one token on its own.
- MCQA. MIB: the four-choice configuration, the correct choice's label as the answer, and
  `symbol_counterfactual`; the prompt is "Question: The {object} is {color}. What color is
  the {object}?", one line "{label}. {color}" per choice, then "Answer:", and the answer is
  " " + label. Ours: that prompt with labels A-D on the clean prompt;
  `counterfactual="symbol"` (default: the same question with four other letters as labels,
  so the correct label changes) or `"position"` (the correct colour swaps places with another
  choice, so the correct label moves). The objects and colours are ours.

Roles (token positions with BOS = 0, in the tokenizer's own tokens): `mib_ioi` names every
token with `IOI_ROLES`; `arithmetic` names 'op1', 'operator', 'op2' and 'END'; `mcqa` names
'color' (the question's colour), 'correct_symbol' (the label of the right choice, which
`corrupt_positions` moves with the "position" counterfactual) and 'END'.
"""

from __future__ import annotations

import bisect
import math
import random
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

from actpatch.datasets.ioi_task import (
    IOI_NAMES,
    IOI_OBJECTS,
    IOI_PLACES,
    IOI_TRAIN_TEMPLATES,
    ioi_positions,
)
from actpatch.datasets.pairs import Positions, PromptDataset
from actpatch.datasets.tokens import (
    Span,
    answer_form,
    span_positions,
    spans_are_one_token,
    token_offsets,
    tokenizer_or_gpt2,
)
from actpatch.errors import InputError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


# --- IOI --------------------------------------------------------------------------------------


def _mib_syntax(template: str) -> str:
    """An ABBA template of `ioi_task` in MIB's syntax: {A} -> {name_A}, the first {B} ->
    {name_B}, the second {B} -> {name_C} (the repeated name), {PLACE} -> {place}, {OBJECT} ->
    {object}."""
    template = template.replace("{A}", "{name_A}", 1).replace("{B}", "{name_B}", 1)
    template = template.replace("{B}", "{name_C}", 1)
    return template.replace("{PLACE}", "{place}").replace("{OBJECT}", "{object}")


# Wang et al.'s fifteen templates (the IOI templates after TransformerLens's "When ..." demo
# sentence), in MIB's syntax: "Then, {name_A} and {name_B} went to the {place}. {name_C} gave a
# {object} to". {name_C} repeats {name_A} or {name_B}; the other one is the answer.
MIB_IOI_TEMPLATES: tuple[str, ...] = tuple(_mib_syntax(t) for t in IOI_TRAIN_TEMPLATES[1:])
MIB_IOI_PLACES: tuple[str, ...] = IOI_PLACES[:8]  # Wang et al.'s places and objects
MIB_IOI_OBJECTS: tuple[str, ...] = IOI_OBJECTS[:8]
IOI_COUNTERFACTUALS = ("s2_io_flip", "abc")

# --- arithmetic -------------------------------------------------------------------------------

ARITHMETIC_TEMPLATE = "{op1} {operator} {op2} ="
# op -> (the operator as the prompt writes it, what it computes)
ARITHMETIC_OPS: dict[str, tuple[str, Callable[[int, int], int]]] = {
    "add": ("+", lambda a, b: a + b),
    "sub": ("-", lambda a, b: a - b),
}

# --- MCQA -------------------------------------------------------------------------------------

MCQA_CHOICES = 4  # MIB's "4_answer_choices" configuration
MCQA_TEMPLATE = (
    "Question: The {object} is {color}. What color is the {object}?"
    + "".join(f"\n{{symbol{i}}}. {{choice{i}}}" for i in range(MCQA_CHOICES))
    + "\nAnswer:"
)
MCQA_COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
    "gray", "silver", "gold",
)  # fmt: skip
MCQA_OBJECTS: tuple[str, ...] = (
    "ball", "pencil", "notebook", "pen", "cup", "plate", "jug", "mug", "puzzle", "bottle",
    "bowl", "envelope", "bracelet", "necklace", "book", "hat", "shirt", "box", "chair", "car",
)  # fmt: skip
MCQA_LABELS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
MCQA_COUNTERFACTUALS = ("symbol", "position")


_SLOT = re.compile(r"\{(\w+)\}")


def _fill(template: str, values: dict[str, str]) -> tuple[str, dict[str, list[Span]]]:
    """`template` with its {slots} filled from `values`, and each slot's character spans."""
    text, last = "", 0
    spans: dict[str, list[Span]] = {}
    for match in _SLOT.finditer(template):
        text += template[last : match.start()]
        value = values[match.group(1)]
        spans.setdefault(match.group(1), []).append((len(text), len(text) + len(value)))
        text += value
        last = match.end()
    return text + template[last:], spans


def _digits(index: int, radices: Sequence[int]) -> list[int]:
    """`index` written in the mixed radix `radices`, most significant digit last."""
    out = []
    for radix in radices:
        index, digit = divmod(index, radix)
        out.append(digit)
    return out


def _draw(task: str, n: int, seed: int, total: int, survivors: str) -> list[int]:
    """`n` distinct indices of `total` pairs, drawn with `random.Random(seed)`; a teaching
    error when `n` is not between 1 and `total`."""
    if n < 1:
        raise InputError(f"A '{task}:N' dataset needs n >= 1 pairs, got n={n}.", field="dataset")
    if n > total:
        raise InputError(
            f"A '{task}:N' dataset can have at most {total:,} distinct pairs with this tokenizer "
            f"({survivors}), and {n:,} were asked for: ask for {total:,} or fewer.",
            field="dataset",
        )
    return random.Random(seed).sample(range(total), n)


def _check_choice(value: str, choices: Sequence[str], what: str) -> None:
    if value not in choices:
        raise InputError(
            f"Unknown {what} {value!r}: choose one of {list(choices)}.", field="counterfactual"
        )


# --- the generators -----------------------------------------------------------------------------


def mib_ioi(
    n: int,
    seed: int = 0,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    counterfactual: Literal["s2_io_flip", "abc"] = "s2_io_flip",
) -> PromptDataset:
    """`n` distinct IOI pairs in MIB's templates, with names that are one token for `tokenizer`.

    Clean: "After Mary and John went to the store, John gave a drink to", target " Mary" (the
    indirect object), wrong " John" (the subject). Corrupted (`counterfactual="s2_io_flip"`,
    MIB's default): the repeated name becomes the IO, "..., Mary gave a drink to", whose answer
    is " John". With "abc" it becomes a third name ("..., Tom gave a drink to"), and `wrong`
    is still " John". Both orders of the first two names (ABBA, BABA) are drawn.
    """
    _check_choice(counterfactual, IOI_COUNTERFACTUALS, "IOI counterfactual")
    tokenizer = tokenizer_or_gpt2(tokenizer)
    forms = {name: answer_form(tokenizer, "to", name) for name in IOI_NAMES}
    names = [name for name, form in forms.items() if form is not None]
    k = len(names)
    abc = counterfactual == "abc"
    # Per template: which name repeats (2) x name_A (k) x name_B (k - 1) [x C (k - 2)] x
    # place x object, the last two only where the template has them.
    radices = []
    for template in MIB_IOI_TEMPLATES:
        place = len(MIB_IOI_PLACES) if "{place}" in template else 1
        obj = len(MIB_IOI_OBJECTS) if "{object}" in template else 1
        radices.append([2, k, max(k - 1, 0), max(k - 2, 0) if abc else 1, place, obj])
    counts = [math.prod(r) for r in radices]
    starts = [sum(counts[:i]) for i in range(len(counts))]
    total = sum(counts)
    example = next((forms[name] for name in names), None)
    survivors = f"{k} of {len(IOI_NAMES)} names are one token, e.g. {example!r}"
    clean, corrupt, target, wrong = [], [], [], []
    positions: list[Positions] = []
    for index in _draw("mib-ioi", n, seed, total, survivors):
        t = bisect.bisect_right(starts, index) - 1
        repeat_a, a, b, c, place, obj = _digits(index - starts[t], radices[t])
        name_a = names[a]
        others = [name for name in names if name != name_a]
        name_b = others.pop(b)
        io, s = (name_b, name_a) if repeat_a else (name_a, name_b)
        values = {
            "name_A": name_a,
            "name_B": name_b,
            "name_C": s,
            "place": MIB_IOI_PLACES[place],
            "object": MIB_IOI_OBJECTS[obj],
        }
        text, spans = _fill(MIB_IOI_TEMPLATES[t], values)
        values["name_C"] = others[c] if abc else io
        clean.append(text)
        corrupt.append(_fill(MIB_IOI_TEMPLATES[t], values)[0])
        target.append(str(forms[io]))
        wrong.append(str(forms[s]))
        # The corrupted prompt differs only in the repeated name's slot, one token either way.
        mentions = [spans["name_A"][0], spans["name_B"][0], spans["name_C"][0]]
        positions.append(ioi_positions(text, mentions, bool(repeat_a), tokenizer))
    suffix = ":abc" if abc else ""
    return PromptDataset(
        clean,
        corrupt,
        target,
        wrong,
        name=f"mib-ioi:{n}:{seed}{suffix}",
        positions=positions,
        note=f"{survivors}; {total:,} distinct pairs",
    )


def arithmetic(
    n: int,
    seed: int = 0,
    *,
    op: Literal["add", "sub"] = "add",
    tokenizer: PreTrainedTokenizerBase | None = None,
    max_operand: int = 99,
) -> PromptDataset:
    """`n` distinct two-operand problems whose answers are one token, each with one operand changed.

    Clean: "12 + 7 =", target " 19"; corrupted: the same problem with one operand changed,
    "12 + 5 =", whose answer " 17" is `wrong`. `op="sub"` asks "12 - 7 =" (never a negative
    difference). Operands run from 0 to `max_operand` and are kept where they are one token in
    the prompt; a problem is kept where its answer is one token for `tokenizer`.
    """
    if op not in ARITHMETIC_OPS:
        raise InputError(f"Unknown operation {op!r}: choose 'add' or 'sub'.", field="op")
    if max_operand < 1:
        raise InputError(f"max_operand must be >= 1, got {max_operand}.", field="max_operand")
    tokenizer = tokenizer_or_gpt2(tokenizer)
    symbol, compute = ARITHMETIC_OPS[op]
    operands = []
    for x in range(max_operand + 1):
        text, spans = _fill(ARITHMETIC_TEMPLATE, {"op1": str(x), "operator": symbol, "op2": str(x)})
        if spans_are_one_token(tokenizer, text, [spans["op1"][0], spans["op2"][0]]):
            operands.append(x)
    results = {compute(a, b) for a in operands for b in operands}
    context = f"1 {symbol} 1 ="
    forms = {r: answer_form(tokenizer, context, str(r)) for r in sorted(results) if r >= 0}
    answers = {r: form for r, form in forms.items() if form is not None}
    # A problem (a, b) is kept when its answer is; its corrupted problems change a (keeping b)
    # or b (keeping a) to another kept problem.
    by_b = {b: [a for a in operands if compute(a, b) in answers] for b in operands}
    by_a = {a: [b for b in operands if compute(a, b) in answers] for a in operands}
    problems = [(a, b) for a in operands for b in by_a[a]]
    counts = [len(by_b[b]) - 1 + len(by_a[a]) - 1 for a, b in problems]
    starts = [0]
    for count in counts[:-1]:
        starts.append(starts[-1] + count)
    total = sum(counts)
    survivors = (
        f"{len(operands)} of {max_operand + 1} operands (0-{max_operand}) are one token in the "
        f"prompt and {len(answers)} of {len(forms)} answers are one token, e.g. "
        f"{next(iter(answers.values()), None)!r}"
    )
    clean, corrupt, target, wrong = [], [], [], []
    positions: list[Positions] = []
    for index in _draw(op, n, seed, total, survivors):
        i = bisect.bisect_right(starts, index) - 1  # never a problem with no partner
        a, b = problems[i]
        k = index - starts[i]
        new_a = [x for x in by_b[b] if x != a]
        a2, b2 = (
            (new_a[k], b) if k < len(new_a) else (a, [y for y in by_a[a] if y != b][k - len(new_a)])
        )
        text, spans = _fill(ARITHMETIC_TEMPLATE, {"op1": str(a), "operator": symbol, "op2": str(b)})
        clean.append(text)
        corrupt.append(
            _fill(ARITHMETIC_TEMPLATE, {"op1": str(a2), "operator": symbol, "op2": str(b2)})[0]
        )
        target.append(answers[compute(a, b)])
        wrong.append(answers[compute(a2, b2)])
        offsets = token_offsets(tokenizer, text)
        positions.append(
            {
                "op1": span_positions(offsets, spans["op1"][0]),
                "operator": span_positions(offsets, spans["operator"][0]),
                "op2": span_positions(offsets, spans["op2"][0]),
                "END": [len(offsets)],
            }
        )
    return PromptDataset(
        clean,
        corrupt,
        target,
        wrong,
        name=f"{op}:{n}:{seed}",
        positions=positions,
        note=f"{survivors}; {total:,} distinct pairs",
    )


def mcqa(
    n: int,
    seed: int = 0,
    *,
    tokenizer: PreTrainedTokenizerBase | None = None,
    counterfactual: Literal["symbol", "position"] = "symbol",
) -> PromptDataset:
    """`n` distinct colour-copying multiple-choice pairs whose labels are one token for `tokenizer`.

    Clean: "Question: The ball is white. What color is the ball?\\nA. red\\nB. white\\nC. blue
    \\nD. green\\nAnswer:", target " B". Corrupted (`counterfactual="symbol"`, MIB's default):
    the same question with four other labels ("K. red\\nP. white\\n..."), whose answer " P" is
    `wrong`. With "position" the correct colour swaps places with another choice ("A. white
    \\nB. red\\n..."), and `wrong` is the label it moved to (" A").
    """
    _check_choice(counterfactual, MCQA_COUNTERFACTUALS, "MCQA counterfactual")
    tokenizer = tokenizer_or_gpt2(tokenizer)
    forms = {}
    for label in MCQA_LABELS:
        values = {"object": "ball", "color": "red"}
        values |= {f"symbol{i}": label for i in range(MCQA_CHOICES)}
        values |= {f"choice{i}": "red" for i in range(MCQA_CHOICES)}
        text, spans = _fill(MCQA_TEMPLATE, values)
        form = answer_form(tokenizer, "Answer:", label)
        if form is not None and spans_are_one_token(tokenizer, text, spans["symbol0"]):
            forms[label] = form
    labels = list(forms)
    clean_labels, other_labels = labels[:MCQA_CHOICES], labels[MCQA_CHOICES:]
    symbol = counterfactual == "symbol"
    n_colors, n_other = len(MCQA_COLORS), len(other_labels)
    # object x colour x three other colours in order x the answer's position x the corrupted
    # prompt's four labels in order ("symbol") or the correct colour's new position ("position").
    radices = [len(MCQA_OBJECTS), n_colors, n_colors - 1, n_colors - 2, n_colors - 3]
    radices.append(MCQA_CHOICES)
    radices += [n_other, n_other - 1, n_other - 2, n_other - 3] if symbol else [MCQA_CHOICES - 1]
    total = math.prod([max(r, 0) for r in radices]) if len(clean_labels) == MCQA_CHOICES else 0
    survivors = f"{len(labels)} of {len(MCQA_LABELS)} labels are one token, e.g. {forms.get('A')!r}"
    clean, corrupt, target, wrong = [], [], [], []
    positions: list[Positions] = []
    corrupt_positions: list[Positions] = []
    for index in _draw("mcqa", n, seed, total, survivors):
        digits = _digits(index, radices)
        colors = list(MCQA_COLORS)
        obj, color = MCQA_OBJECTS[digits[0]], colors.pop(digits[1])
        choices = [colors.pop(d) for d in digits[2:5]]
        answer = digits[5]
        choices.insert(answer, color)
        if symbol:
            pool = list(other_labels)
            new_labels, new_choices, new_answer = [pool.pop(d) for d in digits[6:]], choices, answer
        else:
            new_answer = [p for p in range(MCQA_CHOICES) if p != answer][digits[6]]
            new_choices = list(choices)
            new_choices[answer], new_choices[new_answer] = choices[new_answer], choices[answer]
            new_labels = clean_labels
        text, spans = _mcqa_prompt(obj, color, clean_labels, choices)
        corrupted, corrupt_spans = _mcqa_prompt(obj, color, new_labels, new_choices)
        clean.append(text)
        corrupt.append(corrupted)
        target.append(forms[clean_labels[answer]])
        wrong.append(forms[new_labels[new_answer]])
        for prompt, where, at, table in (
            (text, spans, answer, positions),
            (corrupted, corrupt_spans, new_answer, corrupt_positions),
        ):
            offsets = token_offsets(tokenizer, prompt)
            table.append(
                {
                    "color": span_positions(offsets, where["color"][0]),
                    "correct_symbol": span_positions(offsets, where[f"symbol{at}"][0]),
                    "END": [len(offsets)],
                }
            )
    return PromptDataset(
        clean,
        corrupt,
        target,
        wrong,
        name=f"mcqa:{n}:{seed}" + ("" if symbol else ":position"),
        positions=positions,
        corrupt_positions=corrupt_positions,
        note=f"{survivors}; {total:,} distinct pairs",
    )


def _mcqa_prompt(
    obj: str, color: str, labels: Sequence[str], choices: Sequence[str]
) -> tuple[str, dict[str, list[Span]]]:
    """The MCQA prompt about `obj` of `color`, with `choices` labelled by `labels`."""
    values = {"object": obj, "color": color}
    values |= {f"symbol{i}": label for i, label in enumerate(labels)}
    values |= {f"choice{i}": choice for i, choice in enumerate(choices)}
    return _fill(MCQA_TEMPLATE, values)


__all__ = [
    "ARITHMETIC_TEMPLATE",
    "MCQA_TEMPLATE",
    "MIB_IOI_TEMPLATES",
    "answer_form",
    "arithmetic",
    "mcqa",
    "mib_ioi",
]
