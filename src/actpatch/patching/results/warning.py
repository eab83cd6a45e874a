"""What makes a result's numbers doubtful, and how to fix it: the warning every result carries
(`actpatch.patching.guardrails` finds them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResultWarning:
    """Something about the experiment that makes its numbers doubtful, and how to fix it.

    `pairs`: for a problem of some of a dataset's pairs, every pair it occurs in (their places
    in the dataset, from 0), which the message counts and names the first few of; None for a
    problem of the whole experiment."""

    code: str
    message: str
    field: str | None = None
    pairs: tuple[int, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        pairs = list(self.pairs) if self.pairs is not None else None
        return {"code": self.code, "field": self.field, "message": self.message, "pairs": pairs}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResultWarning:
        """The warning `to_dict` wrote (one written before `pairs` existed has None)."""
        pairs = data.get("pairs")
        return cls(
            data["code"],
            data["message"],
            data.get("field"),
            tuple(pairs) if pairs is not None else None,
        )


def read_warnings(data: dict[str, Any]) -> list[ResultWarning]:
    """The warnings a result's `to_dict` wrote (`data["warnings"]`), read back."""
    return [ResultWarning.from_dict(w) for w in data.get("warnings", [])]
