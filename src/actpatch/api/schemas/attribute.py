"""POST /attribute and /attribute/jobs: attribution patching (AtP, AtP*), every cell of a
component estimated from one backward pass, now or in the background."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actpatch.patching import options
from actpatch.patching.options import OPTIONS

from .common import (
    BACKEND,
    CACHED,
    COMPONENT,
    DEVICES,
    DIRECTION,
    IOI_EXAMPLE,
    METRIC,
    RESULT,
    RUN_ID,
    WARNINGS,
    AlignmentInfo,
    AttributionMethod,
    ComponentName,
    Direction,
    Grid,
    JobStatus,
    Metric,
    ResultWarning,
)
from .errors import ErrorResponse
from .sweep import DatasetFields


class AttributeRequest(DatasetFields):
    """Attribution patching: estimate every cell of a component from one backward pass (over
    prompts, or a dataset: its length groups run as one left-padded batch)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**IOI_EXAMPLE, "component": "z", "method": "atp*", "compare": True}]
        }
    )

    component: ComponentName = Field(options.DEFAULT_COMPONENT, description=COMPONENT)
    method: AttributionMethod = Field(
        options.DEFAULT_ATTRIBUTION_METHOD, description=OPTIONS["attribution_method"].help()
    )
    # Any metric is taken here, so that rank is refused by the engine's own message.
    metric: Metric | None = Field(
        None, description=METRIC + " rank has no gradient and is refused."
    )
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)
    compare: bool = Field(False, description="Also run the exact sweep and measure agreement.")
    verify: int = Field(
        0, ge=0, le=10_000, description="Patch exactly the K cells the estimate ranks first."
    )


class Agreement(BaseModel):
    """How far the estimate is from the exact sweep, over the cells both define."""

    model_config = ConfigDict(extra="allow")

    cells: int
    pearson: float | None
    spearman: float | None
    sign_agreement: float | None = Field(
        description="Share of the cells with an exact effect >= 1% of the largest whose "
        "estimate has the same sign."
    )
    sign_cells: int | None = None
    top_k: int | None = None
    top_k_overlap: float | None = Field(
        None, description="Share of the top-k cells by |exact| also in the estimate's top k."
    )
    misses: list[dict[str, Any]] = Field(
        default_factory=list, description="The cells with the largest |exact - estimate|."
    )


class AttributeResponse(BaseModel):
    """Attribution patching's result: what the CLI's --json prints, and the model."""

    result: Literal["attribution"] = Field(description=RESULT)
    model: str
    component: str
    method: AttributionMethod
    metric: Metric
    direction: Direction
    axes: list[str]
    clean: float | None
    corrupt: float | None
    estimate: Grid = Field(
        description="Each cell's estimated metric change (raw units), indexed by axes."
    )
    normalized: Grid = Field(description="estimate / (clean - corrupt).")
    score: Grid = Field(description="What cells are ranked by (score_kind says what).")
    score_kind: str
    tokens: list[str]
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    patched_positions: list[int]
    unpatched_positions: list[int]
    identical_positions: list[int]
    alignment: AlignmentInfo
    n_pairs: int
    seconds: float
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    note: str | None = None
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    atp: Grid | None = Field(None, description="AtP*: plain AtP's estimate, for comparison.")
    corrections: list[dict[str, Any]] = Field(
        default_factory=list, description="AtP*: the cells whose magnitude it changed most."
    )
    verified: list[dict[str, Any]] = Field(
        default_factory=list, description="Cells patched exactly after screening."
    )
    exact: Grid | None = Field(None, description="With compare: each cell's exact change.")
    exact_normalized: Grid | None = None
    agreement: Agreement | None = None
    agreement_atp: Agreement | None = None
    cached: bool = Field(description=CACHED)
    run_id: int | None = Field(None, description=RUN_ID)


class AttributeJob(BaseModel):
    """A background attribution: its progress, and its result once done."""

    id: str
    status: JobStatus
    model: str
    component: str
    done: int = Field(description="Steps done: backward passes, then exact cells.")
    total: int
    elapsed_s: float
    result: AttributeResponse | None = None
    error: ErrorResponse | None = None
