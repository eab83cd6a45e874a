"""What makes a result's numbers doubtful, and how to fix it: the warning every result carries
(`actpatch.patching.guardrails` finds them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ResultWarning:
    """Something about the experiment that makes its numbers doubtful, and how to fix it."""

    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}
