"""Guardrails: warnings that catch experiments whose numbers would mean nothing.

A patching result is only as meaningful as its set-up. A warning never blocks a run; every
result carries a `warnings` list (empty when all is well) that the CLI prints on stderr and
the page shows above the numbers. The checks, each with a `code`:

- `leading_space`: an answer typed without its leading space ("France") when the spaced form
  (" France") is one token. GPT-2-style tokenizers read a word after a space together with the
  space, so " France" is what follows "the capital of"; "France" is another token, usually one
  the model never predicts there. The message gives both forms' probabilities.
- `no_behaviour`: the clean run does not show the behaviour being patched: the target is not
  the clean run's top token (in at least half of the pairs), or the clean and corrupted runs
  barely differ in the chosen metric. "Barely" is measured on each metric's own scale
  (`BARELY_DIFFERENT`): under 1 for `logit_diff` and `logprob` (a factor e in the odds or the
  probability), under 0.05 for `prob` (five percentage points), and under a factor 2 for `rank`.
  A recovery computed against such a small gap is mostly noise.
- `indistinguishable_answers`: the target and the wrong answer are the same token, or have
  identical unembedding rows, so the model gives them the same logit in every run; or the
  target shares its unembedding row with other tokens (e.g. tokens a small model never
  trained), so its probability and rank are shared with them.
- `identical_prompts`: the clean and corrupted prompts are the same tokens: every patch is a
  no-op.
- `fast_path_unavailable`: the model ran on TransformerLens's bridge because actpatch's fast
  path does not cover it; the message says why. The numbers are as exact, only slower.

A problem of some of the pairs (identical prompts, a missed target, an answer's problem) is one
warning, whatever the number of pairs or of distinct answers: it counts the pairs, names the
first few ("in 32 of 32 pairs (pairs 0, 1, 2, 3, 4, ...)"), quotes the first pair's answers as
its example, and lists every such pair in its `pairs` field (their places in the dataset).

Over a dataset (`check_many`), each length group's share (`Facts`: the pairs where each problem
occurs, by the group's rows, and an example of each answer problem) is read from the group's
runs, and the groups' shares are pooled into the dataset's warnings. Where a group ran on a Ray
worker, the worker sends its facts back (`remember`), so the warnings are those of one process
without running the dataset again here.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from actpatch.patching.experiment import Experiment
from actpatch.patching.results.warning import ResultWarning

# How far apart the clean and corrupted metric must be before a recovery means something.
BARELY_DIFFERENT = {"logit_diff": 1.0, "logprob": 1.0, "prob": 0.05, "rank": 2.0}


# How many pairs a warning's message names before "..." (its `pairs` field holds them all).
NAMED_PAIRS = 5


def check(exp: Experiment, metric: str, clean: float, corrupt: float) -> list[ResultWarning]:
    """Every warning that applies to `exp` measured with `metric` (clean and corrupted values).
    A problem of some of its pairs is one warning that counts and names them."""
    where = None
    found = facts(exp)
    if exp.n_pairs == 1 and found.missed:
        logits = exp.logits("clean")
        top = int(logits[0].argmax())
        (top_str,) = exp.model.to_str_tokens([top])
        probs = logits[0].float().softmax(-1)
        target = int(exp.target_ids[0])
        rank = 1 + int((logits[0] > logits[0, target]).sum())
        where = (
            f"its top token is {top_str!r} (P = {float(probs[top]):.3g}) and the "
            f"target {exp.target_strs[0]!r} has P = {float(probs[target]):.3g}, rank {rank}"
        )
    return _warnings([exp], [found], metric, clean, corrupt, where)


def _fast_path_unavailable(exp: Experiment) -> list[ResultWarning]:
    if exp.fallback_reason is None:
        return []
    return [
        ResultWarning(
            "fast_path_unavailable",
            f"Computed on TransformerLens's bridge, not actpatch's fast path: "
            f"{exp.fallback_reason}. The numbers are as exact; the sweep is slower.",
            "model",
        )
    ]


def where_pairs(pairs: Sequence[int], n_pairs: int) -> str:
    """'in 3 of 16 pairs (pairs 0, 4, 9)': in how many of `n_pairs` pairs, naming the first
    few (`NAMED_PAIRS`) of `pairs`."""
    named = ", ".join(map(str, pairs[:NAMED_PAIRS]))
    if len(pairs) > NAMED_PAIRS:
        named += ", ..."
    return f"in {len(pairs)} of {n_pairs} pairs ({'pair' if len(pairs) == 1 else 'pairs'} {named})"


def _identical_rows(exp: Experiment) -> tuple[int, ...]:
    """The experiment's pairs (rows, from 0) whose clean and corrupted tokens are the same."""
    if exp.clean_tokens.shape != exp.corrupt_tokens.shape:
        return ()
    same = (exp.clean_tokens == exp.corrupt_tokens).all(dim=1)
    return tuple(int(r) for r in same.nonzero().flatten())


def _identical_message(pairs: Sequence[int], n_pairs: int) -> list[ResultWarning]:
    if not pairs:
        return []
    which = "The" if n_pairs == 1 else f"{where_pairs(pairs, n_pairs).capitalize()} the"
    return [
        ResultWarning(
            "identical_prompts",
            f"{which} clean and corrupted prompts are the same tokens, so every patch there "
            "is a no-op and nothing can be learned from it. Change the corrupted prompt where "
            "the behaviour depends on it (e.g. swap the names).",
            "corrupt_prompt",
            tuple(pairs),
        )
    ]


@dataclass(frozen=True)
class Kind:
    """A kind of problem with the answers: its code and field at fault, what it is over several
    answers (`general`, `answers`: what they are called), and what follows an example of it."""

    code: str
    field: str
    general: str
    answers: str
    then: str


SPACE = ". A word after a space is one token with its space."
KINDS = {
    "leading_space:target_token": Kind(
        "leading_space", "target_token", "the target token has no leading space", "targets", SPACE
    ),
    "leading_space:wrong_token": Kind(
        "leading_space", "wrong_token", "the wrong token has no leading space", "answers", SPACE
    ),
    "same_answers": Kind(
        "indistinguishable_answers",
        "wrong_token",
        "the target and the wrong answer are the same token or have identical unembedding rows",
        "answer pairs",
        ": the model gives them the same logit in every run, so logit_diff is 0 everywhere. "
        "Choose answers the model tells apart.",
    ),
    "shared_row": Kind(
        "indistinguishable_answers",
        "target_token",
        "the target shares its unembedding row with other tokens",
        "targets",
        ": the model cannot tell them apart, so they all get the same probability and tie in "
        "rank. Choose an answer the model was trained to predict.",
    ),
}


@dataclass(frozen=True)
class Found:
    """One kind of problem (a key of `KINDS`) with the answers of some of an experiment's pairs:
    the `rows` (its pairs, from 0) where it occurs, each distinct answer it occurs for
    (`answers`, by token ids), what it is for the first of them (`example`), and what was
    measured in the first pair (`measured`: the run, and its numbers), if anything."""

    kind: str
    rows: tuple[int, ...]
    answers: tuple[str, ...]
    example: str
    measured: tuple[str, str] | None = None


def _found(
    kind: str, each: dict[str, list[int]], example: str, measured: tuple[str, str] | None = None
) -> Found:
    rows = tuple(sorted(r for rs in each.values() for r in rs))
    return Found(kind, rows, tuple(each), example, measured)


def _prob(exp: Experiment, which: str, token: int, row: int) -> float:
    """The probability of `token` at the final position of pair `row`'s clean or corrupted
    run."""
    return float(exp.logits(which)[row].float().softmax(-1)[token])


def _leading_space(exp: Experiment) -> list[Found]:
    found = []
    answers = [("target_token", exp.target_strs, "clean")]
    if exp.wrong_strs is not None:
        answers.append(("wrong_token", exp.wrong_strs, "corrupt"))
    for field, values, run in answers:
        each: dict[str, list[int]] = {}
        example, measured = "", None
        for answer in dict.fromkeys(values):  # each distinct answer once, in order
            if answer.startswith(" ") or not answer.strip():
                continue
            spaced = exp.model.to_tokens(" " + answer, prepend_bos=False)
            if len(spaced) != 1:
                continue
            rows = [r for r, value in enumerate(values) if value == answer]
            typed = exp.answer_id(answer, field)
            each[f"{typed}"] = rows
            if example:
                continue
            p_spaced = _prob(exp, run, spaced[0], rows[0])
            p_typed = _prob(exp, run, typed, rows[0])
            example = (
                f"the {field.replace('_', ' ')} {answer!r} has no leading space: did you mean "
                f"{' ' + answer!r}?"
            )
            probs = f"P({' ' + answer!r}) = {p_spaced:.3g} but P({answer!r}) = {p_typed:.3g}"
            measured = (run, probs)
        if each:
            found.append(_found(f"leading_space:{field}", each, example, measured))
    return found


def _shared_rows(weight: Tensor, token: int) -> int:
    """How many other rows of `weight` (vocab, d_model) equal row `token` exactly."""
    row = weight[token]
    candidates = (weight[:, 0] == row[0]).nonzero().flatten()
    same = (weight[candidates] == row).all(dim=1)
    return int(same.sum()) - 1


def _indistinguishable(exp: Experiment) -> list[Found]:
    unembed = exp.model.hf_model.get_output_embeddings()
    if unembed is None:
        return []
    weight = unembed.weight.detach()
    bias = getattr(unembed, "bias", None)
    found = []
    targets = exp.target_ids.tolist()
    wrongs = exp.wrong_ids.tolist() if exp.wrong_ids is not None else [None] * len(targets)
    rows_of: dict[tuple[int, int | None], list[int]] = {}
    for row, answers in enumerate(zip(targets, wrongs, strict=True)):
        rows_of.setdefault(answers, []).append(row)
    same: dict[str, list[int]] = {}
    example = ""
    for (target, wrong), rows in rows_of.items():
        if wrong is None:
            continue
        same_row = torch.equal(weight[target], weight[wrong]) and (
            bias is None or bool(bias[target] == bias[wrong])
        )
        if target == wrong or same_row:
            same[f"{target},{wrong}"] = rows
            if not example:
                t, w = exp.model.to_str_tokens([target, wrong])
                why = "are the same token" if target == wrong else "have identical unembedding rows"
                example = f"the target {t!r} and the wrong answer {w!r} {why}"
    if same:
        found.append(_found("same_answers", same, example))
    shared_by: dict[str, list[int]] = {}
    example = ""
    for target in dict.fromkeys(targets):
        shared = _shared_rows(weight, target)
        if shared > 0:
            shared_by[f"{target}"] = [r for r, t in enumerate(targets) if t == target]
            if not example:
                (t,) = exp.model.to_str_tokens([target])
                example = (
                    f"the target {t!r} shares its unembedding row with {shared} other tokens "
                    "(e.g. tokens the model never trained on)"
                )
    if shared_by:
        found.append(_found("shared_row", shared_by, example))
    return found


def _answer_messages(ids: list[list[int]], each: list[Facts], n_pairs: int) -> list[ResultWarning]:
    """One warning per kind of answer problem over every experiment (`each`'s facts; `ids`:
    each experiment's pairs' numbers): the pairs where it occurs, and the example of the
    first of them."""
    out = []
    for key, kind in KINDS.items():
        found = [(g, f) for g, facts in enumerate(each) for f in facts.answers if f.kind == key]
        if not found:
            continue
        pairs = sorted(ids[g][r] for g, f in found for r in f.rows)
        answers = {a: None for _, f in found for a in f.answers}
        g, first = min(found, key=lambda gf: ids[gf[0]][gf[1].rows[0]])
        example = first.example
        if first.measured is not None:  # in the first pair, the example's
            run, numbers = first.measured
            of = "" if n_pairs == 1 else f" of pair {ids[g][first.rows[0]]}"
            example += f" In the {run} run{of} {numbers}"
        if n_pairs == 1:
            text = example[0].upper() + example[1:] + kind.then
        elif len(answers) == 1:
            text = f"{where_pairs(pairs, n_pairs).capitalize()} {example}{kind.then}"
        else:
            where = where_pairs(pairs, n_pairs).capitalize()
            text = (
                f"{where} {kind.general} ({len(answers)} different {kind.answers}); e.g. "
                f"{example}{kind.then}"
            )
        out.append(ResultWarning(kind.code, text, kind.field, tuple(pairs)))
    return out


def _missed_rows(exp: Experiment) -> tuple[int, ...]:
    """The pairs (rows, from 0) whose clean run's top token is not the target."""
    missed = exp.logits("clean").argmax(dim=-1) != exp.target_ids
    return tuple(int(r) for r in missed.nonzero().flatten())


def _no_behaviour_message(
    missed: Sequence[int],
    n_pairs: int,
    metric: str,
    clean: float,
    corrupt: float,
    where: str | None,
) -> list[ResultWarning]:
    found = []
    if 2 * len(missed) >= n_pairs and missed:
        where = where or f"the target is not its top token {where_pairs(missed, n_pairs)}"
        found.append(
            ResultWarning(
                "no_behaviour",
                f"The clean run does not show the behaviour: {where}. Patching then measures "
                "noise; choose a prompt and target the model gets right.",
                "target_token",
                tuple(missed),
            )
        )
    gap = abs(clean - corrupt)
    threshold = BARELY_DIFFERENT[metric]
    if metric == "rank":
        low, high = sorted((max(clean, 1.0), max(corrupt, 1.0)))
        small = high / low < threshold
        scale = f"the rank changes by less than a factor {threshold:g}"
    else:
        small = gap < threshold
        scale = f"|clean - corrupted| = {gap:.3g} < {threshold:g}"
    if small:
        found.append(
            ResultWarning(
                "no_behaviour",
                f"The clean and corrupted runs barely differ in {metric} (clean {clean:.4g}, "
                f"corrupted {corrupt:.4g}: {scale}), so the normalized metric divides by a "
                "small difference and mostly shows noise. Choose a corrupted prompt that "
                "changes the answer.",
                "corrupt_prompt",
            )
        )
    return found


@dataclass(frozen=True)
class Facts:
    """What the warnings count in one experiment (a length group), by its pairs (rows, from 0):
    the pairs whose prompts are the same tokens, those whose clean run misses the target, and
    its answers' problems (leading_space, indistinguishable_answers)."""

    identical: tuple[int, ...]
    missed: tuple[int, ...]
    answers: tuple[Found, ...]


# Facts a Ray worker computed for an experiment of this process (`remember`), or read here.
_told: weakref.WeakKeyDictionary[Experiment, Facts] = weakref.WeakKeyDictionary()


def facts(exp: Experiment) -> Facts:
    """`exp`'s facts: as a worker told them (`remember`), else read from its runs here (once:
    a running sweep asks again at each group's end, and the runs stay the same)."""
    told = _told.get(exp)
    if told is not None:
        return told
    answers = (*_leading_space(exp), *_indistinguishable(exp))
    found = Facts(_identical_rows(exp), _missed_rows(exp), answers)
    _told[exp] = found
    return found


def remember(exp: Experiment, told: Facts) -> None:
    """Keep the facts a worker computed for its copy of `exp` (the same prompts and model)."""
    _told[exp] = told


def _pair_ids(experiments: Sequence[Experiment]) -> list[list[int]]:
    """Each experiment's pairs' numbers: their places in the dataset (`pair_index`), or, for
    experiments not from one dataset (numbers given twice), their places one after another."""
    ids = [list(e.pair_index) for e in experiments]
    flat = [i for each in ids for i in each]
    if len(set(flat)) == len(flat):
        return ids
    ids, start = [], 0
    for e in experiments:
        ids.append(list(range(start, start + e.n_pairs)))
        start += e.n_pairs
    return ids


def _warnings(
    experiments: Sequence[Experiment],
    each: list[Facts],
    metric: str,
    clean: float,
    corrupt: float,
    where: str | None,
) -> list[ResultWarning]:
    """The warnings of the experiments' pairs taken together (`each`: their facts)."""
    ids = _pair_ids(experiments)
    total = sum(e.n_pairs for e in experiments)
    identical = sorted(ids[g][r] for g, f in enumerate(each) for r in f.identical)
    missed = sorted(ids[g][r] for g, f in enumerate(each) for r in f.missed)
    return [
        *_identical_message(identical, total),
        *_answer_messages(ids, each, total),
        *_no_behaviour_message(missed, total, metric, clean, corrupt, where),
        *_fast_path_unavailable(experiments[0]),
    ]


def check_many(
    experiments: Sequence[Experiment], metric: str, clean: float, corrupt: float
) -> list[ResultWarning]:
    """`check` over a dataset run as several experiments (its length groups), counting pairs
    over the whole dataset ("3 of 16 pairs", not each group's "2 of 2") and naming them by
    their places in it; `clean` and `corrupt` are the dataset's averaged metric."""
    if len(experiments) == 1:
        return check(experiments[0], metric, clean, corrupt)
    each = [facts(e) for e in experiments]
    return _warnings(experiments, each, metric, clean, corrupt, None)


__all__ = [
    "BARELY_DIFFERENT",
    "KINDS",
    "NAMED_PAIRS",
    "Facts",
    "Found",
    "Kind",
    "ResultWarning",
    "check",
    "check_many",
    "facts",
    "remember",
    "where_pairs",
]
