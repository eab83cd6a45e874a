"""GET /runs, GET/PATCH/DELETE /runs/{id}: the run history (issue 11), paged, with pins."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, StrictBool

from .common import Request


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
    pinned: bool = Field(False, description="Pinned runs are never deleted by retention.")
    formats: list[str] = Field(
        default_factory=list,
        description="In GET /runs: the formats the run exports as (GET /runs/{id}/export/{fmt}): "
        "json for any, csv for those with a tidy table, png and svg for a sweep or an ablation, "
        "ipynb for those a notebook reruns.",
    )


class HistoryInfo(BaseModel):
    """Where the server keeps its runs, and what went wrong with where it was asked to."""

    path: str | None = Field(description="The history's file; null when it is kept in memory.")
    in_memory: bool = Field(description="Runs are kept in memory only, lost when it stops.")
    problem: str | None = Field(
        description="Why runs are not kept in the file the settings name (damaged, unreadable, "
        "written by a newer actpatch), that it was left untouched, and how to get its runs "
        "back; null when all is well."
    )


class RunList(BaseModel):
    """The most recent runs first, one page of them."""

    runs: list[RunSummary]
    data_dir: str | None = Field(
        None,
        description="The folder whose history this is (the server's data_dir, "
        "ACTPATCH_DATA_DIR): every run this server and the CLI's --save keep there. When its "
        "file could not be used, `history` says where runs are kept instead.",
    )
    total: int = Field(0, description="How many runs (of the kind asked for) are kept.")
    offset: int = Field(0, description="How many more recent runs this page skipped.")
    next_offset: int | None = Field(
        None, description="The offset of the next (older) page; null on the last page."
    )
    history: HistoryInfo | None = None


class RunDetail(RunSummary):
    """A stored run: the request that produced it and its result, exactly as returned."""

    request: dict[str, Any]
    result: dict[str, Any]


class RunUpdate(Request):
    """What may change on a stored run: whether it is pinned."""

    pinned: StrictBool = Field(description="true: retention never deletes this run.")
