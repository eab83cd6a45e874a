"""GET /health: is the server up, what does it run, and is anything degraded."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from .runs import HistoryInfo


class HealthResponse(BaseModel):
    """The server is up, and what it runs."""

    status: Literal["ok", "degraded"] = Field(
        description="ok; or degraded: the server computes and answers, but something is wrong "
        "that its operator should fix (`reason` says what and how)."
    )
    reason: str | None = Field(None, description="Why the status is degraded (null when ok).")
    history: HistoryInfo | None = None
    version: str
    default_model: str
    models: list[str]
    jobs_running: int
    cached_experiments: int
