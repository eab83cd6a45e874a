"""GET /health: is the server up, and what does it run."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class HealthResponse(BaseModel):
    """The server is up, and what it runs."""

    status: Literal["ok"]
    version: str
    default_model: str
    models: list[str]
    jobs_running: int
    cached_experiments: int
