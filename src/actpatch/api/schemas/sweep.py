"""POST /sweep and /sweep/jobs: every cell of one component patched (or ablated), now or in
the background, over prompts or a dataset."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from actpatch.datasets import DATASET_SPEC_LIST, parse_jsonl
from actpatch.errors import InputError
from actpatch.patching import options
from actpatch.patching.options import ABLATIONS, OPTIONS

from .common import (
    BACKEND,
    CACHED,
    CLEAN,
    COMPONENT,
    CORRUPT,
    DEVICES,
    DIRECTION,
    IOI_EXAMPLE,
    METRIC,
    RESULT,
    RUN_ID,
    TARGET,
    WARNINGS,
    Ablation,
    AlignmentInfo,
    Answer,
    Batching,
    ComponentName,
    Direction,
    ExperimentFields,
    Grid,
    JobStatus,
    Metric,
    PositionConvention,
    Positions,
    Prompt,
    ResultWarning,
)
from .errors import ErrorResponse

ABLATE = (
    "Ablate each cell in the clean run instead of patching: "
    + "; ".join(f"{name}: {what}" for name, what in ABLATIONS.items())
    + " (the mean over the request's prompts, or dataset; resample needs several pairs). "
    "Leave direction out: an ablation always acts on the clean run."
)


class DatasetFields(ExperimentFields):
    """An experiment's prompts and answers, or a dataset instead: a generated one by name, or
    uploaded pairs (what /sweep and /attribute take)."""

    # A dataset instead of prompts (issue 11): its pairs replace the prompt and answer fields.
    clean_prompt: Prompt | list[Prompt] | None = Field(None, description=CLEAN)  # type: ignore[assignment]
    corrupt_prompt: Prompt | list[Prompt] | None = Field(None, description=CORRUPT)  # type: ignore[assignment]
    target_token: Answer | list[Answer] | None = Field(None, description=TARGET)  # type: ignore[assignment]
    dataset: str | None = Field(
        None,
        description=f"A generated dataset instead of prompts: {DATASET_SPEC_LIST}, each with "
        "an optional seed ('ioi:12:3'); the MIB tasks (mib-ioi, add, sub, mcqa) keep answers "
        "that are one token for the model. The server never reads files a request names; "
        "send a file's JSONL text as dataset_jsonl.",
        max_length=100,
    )
    dataset_jsonl: str | None = Field(
        None,
        description='JSONL text, one pair a line: {"clean", "corrupt", "target", "wrong"?, '
        '"positions"?: {"IO": 2, ...}}. Errors name the line and the field.',
    )

    @field_validator("dataset_jsonl")
    @classmethod
    def _readable_pairs(cls, text: str | None) -> str | None:
        """Read the pairs with the core's reader (`actpatch.datasets.parse_jsonl`, which the
        CLI's --dataset FILE.jsonl uses too): what it refuses (a line nested too deeply, found
        before parsing; text that is not Unicode; a missing or unknown key) is a 422 on this
        field, naming the line and the key."""
        if text is not None:
            try:
                parse_jsonl(text, name="uploaded", where="dataset_jsonl")
            except InputError as exc:
                raise InputError(exc.message, field="dataset_jsonl") from None
        return text

    @model_validator(mode="after")
    def _prompts_or_dataset(self) -> DatasetFields:
        given = [n for n in ("dataset", "dataset_jsonl") if getattr(self, n) is not None]
        prompts = [n for n in ("clean_prompt", "corrupt_prompt") if getattr(self, n) is not None]
        if len(given) > 1 or (given and prompts):
            raise ValueError("give prompts, dataset or dataset_jsonl: only one of them")
        if not given:
            missing = [
                n
                for n in ("clean_prompt", "corrupt_prompt", "target_token")
                if getattr(self, n) is None
            ]
            if missing:
                raise ValueError(f"{missing[0]} is required (or give a dataset)")
        return self


class SweepRequest(DatasetFields):
    """A sweep: patch every cell of one component and measure the metric after each patch."""

    model_config = ConfigDict(json_schema_extra={"examples": [{**IOI_EXAMPLE, "component": "z"}]})

    component: ComponentName = Field(options.DEFAULT_COMPONENT, description=COMPONENT)
    metric: Metric | None = Field(None, description=METRIC)
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)
    ablate: Ablation | None = Field(None, description=ABLATE)
    seed: int = Field(0, ge=0, description="Seed of resample ablation.")
    positions: Positions = Field(
        options.DEFAULT_POSITIONS,
        description="A position-resolved sweep's columns: " + OPTIONS["positions"].help() + ".",
    )
    batching: Batching = Field(
        options.DEFAULT_BATCHING,
        description="A dataset of several token lengths: " + OPTIONS["batching"].help() + ". "
        "The result's `batching` says which ran.",
    )


class ConfidenceInterval(BaseModel):
    """A bootstrap confidence interval per cell of a sweep (over its pairs)."""

    low: Any = Field(description="Lower bound of the normalized mean, shaped like normalized.")
    high: Any = Field(description="Upper bound of the normalized mean.")
    level: float = Field(description="Confidence level, e.g. 0.95.")
    method: str = Field(description="percentile_bootstrap: pairs resampled with replacement.")
    n_boot: int = Field(description="Number of resamples.")
    seed: int
    of: str | None = None
    raw_low: Any = Field(None, description="Lower bound of the raw mean.")
    raw_high: Any = Field(None, description="Upper bound of the raw mean.")


class SweepResponse(BaseModel):
    """A sweep's result: what the CLI's --json prints, and the model that computed it."""

    result: Literal["sweep", "ablation"] = Field(description=RESULT)
    model: str
    component: str
    metric: Metric
    direction: Direction
    axes: list[str] = Field(description="The axes of raw/normalized, e.g. ['layer', 'head'].")
    clean: float | None = Field(description="The metric on the clean run.")
    corrupt: float | None = Field(description="The metric on the corrupted run.")
    raw: Grid = Field(description="The metric after each patch, indexed by axes.")
    normalized: Grid = Field(description="(raw - corrupt) / (clean - corrupt): 1 = clean.")
    tokens: list[str] = Field(description="Token strings of the patched run's prompt.")
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    patched_positions: list[int]
    unpatched_positions: list[int] = Field(
        description="Positions with no counterpart in the other prompt: never patched (null)."
    )
    identical_positions: list[int] = Field(
        description="Positions before the first difference: a patch there changes nothing."
    )
    alignment: AlignmentInfo
    n_pairs: int
    seconds: float
    note: str | None = None
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    length_groups: list[dict[str, int]] = Field(
        default_factory=list,
        description="Over a dataset of several token lengths: each group's clean_len, "
        "corrupt_len and n_pairs (tokens are then the first group's).",
    )
    batching: str = Field(
        "single",
        description="How the pairs were batched: 'single' (one token length), 'grouped' (one "
        "sweep per length group) or 'padded' (the groups left-padded into one batch: the same "
        "numbers, faster).",
    )
    batching_note: str | None = Field(
        None, description="Why a dataset of several lengths was batched as it was."
    )
    cached: bool = Field(description=CACHED)
    ablation: Ablation | None = Field(
        None, description="An ablation sweep: how each cell was ablated in the clean run."
    )
    reference: str | None = Field(None, description="What the ablation value was computed from.")
    seed: int | None = Field(None, description="Resample ablation's seed.")
    resample_from: list[int] | None = Field(
        None, description="Resample ablation: pair i took pair resample_from[i]'s activation."
    )
    per_pair: Any = Field(
        None,
        description="Raw metric per pair after each patch: axes (pair, *axes); in the dataset's "
        "pair order.",
    )
    clean_per_pair: list[float | None] | None = Field(None, description="Clean metric per pair.")
    corrupt_per_pair: list[float | None] | None = Field(
        None, description="Corrupted metric per pair."
    )
    ci: ConfidenceInterval | None = Field(
        None, description="Bootstrap interval per cell (null with one pair)."
    )
    position_convention: PositionConvention = Field(
        "index", description="What the pos axis indexes: token positions or named roles."
    )
    position_labels: list[str] = Field(
        default_factory=list, description="The pos axis's role names (role convention)."
    )
    complete: bool = Field(True, description="False for a running (or cancelled) sweep's snapshot.")
    run_id: int | None = Field(None, description=RUN_ID)


class SweepJob(BaseModel):
    """A background sweep: its progress, and its result once done."""

    id: str
    status: JobStatus
    model: str
    component: str
    done: int = Field(description="Cells patched so far.")
    total: int = Field(description="Cells to patch (0 until the job starts).")
    elapsed_s: float = Field(description="Seconds since the job started running.")
    result: SweepResponse | None = Field(None, description="The sweep, once status is done.")
    partial: dict[str, Any] | None = Field(
        None,
        description="The sweep so far while it runs (and what a cancelled sweep computed): a "
        "sweep response without per-pair values, unfinished cells null, complete false.",
    )
    error: ErrorResponse | None = Field(None, description="Why it failed or was cancelled.")
