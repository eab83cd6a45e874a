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

Over a dataset (`check_many`), each length group's share (`Facts`: its counts and its answers'
warnings) is read from the group's runs. Where a group ran on a Ray worker, the worker sends its
facts back (`remember`), so the warnings are those of one process without running the dataset
again here.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
from torch import Tensor

from actpatch.patching.experiment import Experiment
from actpatch.patching.results.warning import ResultWarning

# How far apart the clean and corrupted metric must be before a recovery means something.
BARELY_DIFFERENT = {"logit_diff": 1.0, "logprob": 1.0, "prob": 0.05, "rank": 2.0}


def check(exp: Experiment, metric: str, clean: float, corrupt: float) -> list[ResultWarning]:
    """Every warning that applies to `exp` measured with `metric` (clean and corrupted values)."""
    found = [
        *_identical_prompts(exp),
        *_leading_space(exp),
        *_indistinguishable(exp),
        *_no_behaviour(exp, metric, clean, corrupt),
        *_fast_path_unavailable(exp),
    ]
    return found


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


def _identical_prompts(exp: Experiment) -> list[ResultWarning]:
    return _identical_message(_n_identical(exp), exp.n_pairs)


def _n_identical(exp: Experiment) -> int:
    """How many of the experiment's pairs have the same clean and corrupted tokens."""
    if exp.clean_tokens.shape != exp.corrupt_tokens.shape:
        return 0
    return int((exp.clean_tokens == exp.corrupt_tokens).all(dim=1).sum())


def _identical_message(n_same: int, n_pairs: int) -> list[ResultWarning]:
    if n_same == 0:
        return []
    which = (
        "The clean and corrupted prompts are"
        if n_pairs == 1
        else (f"In {n_same} of {n_pairs} pairs the clean and corrupted prompts are")
    )
    return [
        ResultWarning(
            "identical_prompts",
            f"{which} the same tokens, so every patch there is a no-op and nothing can be "
            "learned from it. Change the corrupted prompt where the behaviour depends on it "
            "(e.g. swap the names).",
            "corrupt_prompt",
        )
    ]


def _prob(exp: Experiment, which: str, token: int) -> float:
    """The mean probability of `token` at the final position of the clean or corrupted run."""
    return float(exp.logits(which).float().softmax(-1)[:, token].mean())


def _leading_space(exp: Experiment) -> list[ResultWarning]:
    found = []
    answers = [("target_token", exp.target_strs, "clean")]
    if exp.wrong_strs is not None:
        answers.append(("wrong_token", exp.wrong_strs, "corrupt"))
    for field, values, run in answers:
        for answer in dict.fromkeys(values):  # each distinct answer once, in order
            if answer.startswith(" ") or not answer.strip():
                continue
            spaced = exp.model.to_tokens(" " + answer, prepend_bos=False)
            if len(spaced) != 1:
                continue
            typed = exp.answer_id(answer, field)
            p_spaced, p_typed = _prob(exp, run, spaced[0]), _prob(exp, run, typed)
            found.append(
                ResultWarning(
                    "leading_space",
                    f"The {field.replace('_', ' ')} {answer!r} has no leading space: did you "
                    f"mean {' ' + answer!r}? In the {run} run P({' ' + answer!r}) = "
                    f"{p_spaced:.3g} but P({answer!r}) = {p_typed:.3g}. A word after a space is "
                    "one token with its space.",
                    field,
                )
            )
    return found


def _shared_rows(weight: Tensor, token: int) -> int:
    """How many other rows of `weight` (vocab, d_model) equal row `token` exactly."""
    row = weight[token]
    candidates = (weight[:, 0] == row[0]).nonzero().flatten()
    same = (weight[candidates] == row).all(dim=1)
    return int(same.sum()) - 1


def _indistinguishable(exp: Experiment) -> list[ResultWarning]:
    unembed = exp.model.hf_model.get_output_embeddings()
    if unembed is None:
        return []
    weight = unembed.weight.detach()
    bias = getattr(unembed, "bias", None)
    found = []
    targets = exp.target_ids.tolist()
    wrongs = exp.wrong_ids.tolist() if exp.wrong_ids is not None else [None] * len(targets)
    pairs = dict.fromkeys(zip(targets, wrongs, strict=True))
    for target, wrong in pairs:
        if wrong is None:
            continue
        same_row = torch.equal(weight[target], weight[wrong]) and (
            bias is None or bool(bias[target] == bias[wrong])
        )
        if target == wrong or same_row:
            t, w = exp.model.to_str_tokens([target, wrong])
            why = "are the same token" if target == wrong else "have identical unembedding rows"
            found.append(
                ResultWarning(
                    "indistinguishable_answers",
                    f"The target {t!r} and the wrong answer {w!r} {why}: the model gives them "
                    "the same logit in every run, so logit_diff is 0 everywhere. Choose answers "
                    "the model tells apart.",
                    "wrong_token",
                )
            )
    for target in dict.fromkeys(targets):
        shared = _shared_rows(weight, target)
        if shared > 0:
            (t,) = exp.model.to_str_tokens([target])
            found.append(
                ResultWarning(
                    "indistinguishable_answers",
                    f"The target {t!r} shares its unembedding row with {shared} other tokens "
                    "(e.g. tokens the model never trained on): the model cannot tell them apart, "
                    "so they all get the same probability and tie in rank. Choose an answer the "
                    "model was trained to predict.",
                    "target_token",
                )
            )
    return found


def _n_missed(exp: Experiment) -> int:
    """In how many pairs the target is not the clean run's top token."""
    return int((exp.logits("clean").argmax(dim=-1) != exp.target_ids).sum())


def _no_behaviour(
    exp: Experiment, metric: str, clean: float, corrupt: float
) -> list[ResultWarning]:
    missed = _n_missed(exp)
    where = None
    if exp.n_pairs == 1 and missed:
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
    return _no_behaviour_message(missed, exp.n_pairs, metric, clean, corrupt, where)


def _no_behaviour_message(
    missed: int, n_pairs: int, metric: str, clean: float, corrupt: float, where: str | None
) -> list[ResultWarning]:
    found = []
    if 2 * missed >= n_pairs and missed > 0:
        where = where or f"the target is not its top token in {missed} of {n_pairs} pairs"
        found.append(
            ResultWarning(
                "no_behaviour",
                f"The clean run does not show the behaviour: {where}. Patching then measures "
                "noise; choose a prompt and target the model gets right.",
                "target_token",
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
    """What `check_many` counts in one experiment (a length group): pairs whose prompts are the
    same tokens, pairs whose clean run misses the target, and its answers' own warnings."""

    n_identical: int
    n_missed: int
    answers: tuple[ResultWarning, ...]  # leading_space, indistinguishable_answers


# Facts a Ray worker computed for an experiment of this process (`remember`).
_told: weakref.WeakKeyDictionary[Experiment, Facts] = weakref.WeakKeyDictionary()


def facts(exp: Experiment) -> Facts:
    """`exp`'s facts: as a worker told them (`remember`), else read from its runs here."""
    told = _told.get(exp)
    if told is not None:
        return told
    answers = (*_leading_space(exp), *_indistinguishable(exp))
    return Facts(_n_identical(exp), _n_missed(exp), answers)


def remember(exp: Experiment, told: Facts) -> None:
    """Keep the facts a worker computed for its copy of `exp` (the same prompts and model)."""
    _told[exp] = told


def check_many(
    experiments: list[Experiment], metric: str, clean: float, corrupt: float
) -> list[ResultWarning]:
    """`check` over a dataset run as several experiments (its length groups), counting pairs
    over the whole dataset ("3 of 16 pairs", not each group's "2 of 2"); `clean` and
    `corrupt` are the dataset's averaged metric."""
    if len(experiments) == 1:
        return check(experiments[0], metric, clean, corrupt)
    each = [facts(e) for e in experiments]
    total = sum(e.n_pairs for e in experiments)
    found = _identical_message(sum(f.n_identical for f in each), total)
    for f in each:
        found += f.answers
    missed = sum(f.n_missed for f in each)
    found += _no_behaviour_message(missed, total, metric, clean, corrupt, None)
    found += _fast_path_unavailable(experiments[0])
    return list(dict.fromkeys(found))


__all__ = [
    "BARELY_DIFFERENT",
    "Facts",
    "ResultWarning",
    "check",
    "check_many",
    "facts",
    "remember",
]
