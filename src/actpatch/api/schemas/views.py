"""POST /attention, /dla and /lens: the views that look inside what patching finds.

The response fields named in the contract (`layer`, `head`, `tokens`, `corrupt_tokens`, `clean`,
`corrupt`, `metric`, `model`, `backend`, `warnings`) are kept; others may be added.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from .common import (
    BACKEND,
    DEVICES,
    IOI_EXAMPLE,
    METRIC,
    RESULT,
    RUN_ID,
    WARNINGS,
    ExperimentFields,
    Metric,
    ResultWarning,
)


class AttentionRequest(ExperimentFields):
    """One head's attention pattern on the clean and corrupted prompts."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{**IOI_EXAMPLE, "layer": 0, "head": 0}]}
    )

    layer: StrictInt = Field(ge=0, description="The layer, 0-based.")
    head: StrictInt = Field(ge=0, description="The (query) head, 0-based.")
    pair: StrictInt = Field(0, ge=0, description="Which prompt pair, when several are given.")


class AttentionResponse(BaseModel):
    """The pattern as [query position][key position]; each row sums to 1."""

    model_config = ConfigDict(extra="allow")

    result: Literal["attention"] = Field(description=RESULT)
    layer: int
    head: int
    kv_head: int = Field(description="The key/value head the query head reads (grouped-query).")
    tokens: list[str] = Field(description="The clean prompt's tokens.")
    corrupt_tokens: list[str]
    clean: list[list[float]]
    corrupt: list[list[float]]
    model: str
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    seconds: float
    run_id: int | None = Field(None, description=RUN_ID)


class DLARequest(ExperimentFields):
    """Direct logit attribution at the final position."""

    model_config = ConfigDict(json_schema_extra={"examples": [IOI_EXAMPLE]})


class DirectEffects(BaseModel):
    """One run's direct shares of the metric; `total` sums the parts, `actual` is the model's."""

    model_config = ConfigDict(extra="allow")

    heads: list[list[float]] = Field(description="[layer][head]")
    mlp: list[float] = Field(description="[layer]")
    embed: float
    total: float
    actual: float


class DLAResponse(BaseModel):
    """Each head's, MLP's and the embeddings' direct share, clean and corrupted."""

    model_config = ConfigDict(extra="allow")

    result: Literal["dla"] = Field(description=RESULT)
    metric: str = Field(description="logit_diff (with a wrong answer) or logit (the target's).")
    clean: DirectEffects
    corrupt: DirectEffects
    model: str
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    seconds: float
    run_id: int | None = Field(None, description=RUN_ID)


class LensRequest(ExperimentFields):
    """The logit lens at the final position."""

    model_config = ConfigDict(json_schema_extra={"examples": [IOI_EXAMPLE]})

    metric: Metric | None = Field(None, description=METRIC)
    k: StrictInt = Field(5, ge=1, le=50, description="Top tokens listed per layer.")
    sublayers: StrictBool = Field(False, description="Also read between attention and MLP.")


class LensRun(BaseModel):
    """Per read-out point (see `labels`)."""

    model_config = ConfigDict(extra="allow")

    metric: list[float]
    target_rank: list[int]
    top: list[list[str]]


class LensResponse(BaseModel):
    """The metric, the answer's rank and the top tokens per layer, clean and corrupted."""

    model_config = ConfigDict(extra="allow")

    result: Literal["lens"] = Field(description=RESULT)
    clean: LensRun
    corrupt: LensRun
    labels: list[str]
    tokens: list[str]
    metric: str
    model: str
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    seconds: float
    run_id: int | None = Field(None, description=RUN_ID)


__all__ = [
    "AttentionRequest",
    "AttentionResponse",
    "DLARequest",
    "DLAResponse",
    "LensRequest",
    "LensResponse",
]
