"""The prompt-pair format: `PromptDataset`, clean and corrupted prompts, their answers and roles.

Vocabulary. A *pair* is a clean prompt and a corrupted prompt that differ in a few tokens, so
that the model's answer changes; `target` is the answer the clean prompt calls for and `wrong`
the answer the corrupted prompt calls for. Every answer is a string the model reads as one
token, usually with its leading space (" Mary"). The metric the engine averages over pairs is
usually the logit difference `logit(target) - logit(wrong)` at the final position.

Token lengths. The engine averages the metric over pairs, and a position-resolved sweep (one
patch per position) needs all clean prompts to share one token length, and all corrupted
prompts too; split a mixed dataset with `PromptDataset.group_by_length`. A prompt is read as
one BOS token and then its tokens without special tokens (`LoadedModel.to_tokens`), as
TransformerLens does by default; positions count that BOS as 0.

Roles. A pair may name its positions by role: `positions = {"IO": 2, "S1": 4, "S2": 10,
"END": 14}` (token positions, BOS = 0; a role may also be a list of positions, a span), with
`corrupt_positions` for the corrupted prompt when its roles sit elsewhere (else the same). A
position-resolved sweep over pairs of different templates is then indexed by role instead of
by raw position (`docs/datasets.md`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actpatch.errors import InputError

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
