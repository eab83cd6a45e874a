"""GET /runs and /runs/{id}: the run history (issue 11)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class RunSummary(BaseModel):
    """A stored run, without its request and result."""

    id: int
    kind: str = Field(
        description="patch, sweep, ablation, attribution, path (path patching), edges (circuit "
        "edges) or evaluation (a circuit's faithfulness)."
    )
    label: str = Field(
        description="What was run (component and cell, method, edges) and on which prompts, "
        "whole: a title is kind, model and label."
    )
    created_at: str = Field(description="When (UTC, ISO 8601).")
    model: str | None
    backend: str | None
    version: str = Field(description="The actpatch version that computed it.")
    seconds: float | None = Field(description="Time taken, in seconds.")
    complete: bool = Field(description="False for a cancelled sweep's partial result.")


class RunList(BaseModel):
    """The most recent runs first."""

    runs: list[RunSummary]
    data_dir: str | None = Field(
        None,
        description="The folder whose history this is (the server's data_dir, "
        "ACTPATCH_DATA_DIR): every run this server and the CLI's --save keep there.",
    )


class RunDetail(RunSummary):
    """A stored run: the request that produced it and its result, exactly as returned."""

    request: dict[str, Any]
    result: dict[str, Any]
