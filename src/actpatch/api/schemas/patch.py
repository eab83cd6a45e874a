"""POST /patch: the specification's contract, field for field, then the optional choices.

`PatchRequest`/`PatchResponse` are the specification's `/patch` contract, field for field, with
optional fields after the spec's (which model, component, direction, metric, wrong answer).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, model_validator

from actpatch.errors import InputError
from actpatch.patching import get_component, options

from .common import (
    BACKEND,
    CACHED,
    COMPONENT,
    DEVICES,
    DIRECTION,
    METRIC,
    RESULT,
    RUN_ID,
    SPEC_EXAMPLE,
    WARNINGS,
    ComponentName,
    Direction,
    ExperimentFields,
    Metric,
    ResultWarning,
)


class PatchRequest(ExperimentFields):
    """One patch: the spec's request (prompts, target, layer, head) plus optional choices."""

    model_config = ConfigDict(json_schema_extra={"examples": [SPEC_EXAMPLE]})

    # Strict: JSON true or "8" is not a layer (pydantic would read them as 1 and 8).
    layer: StrictInt = Field(description="The layer to patch, 0-based.")
    head: StrictInt | None = Field(None, description="The head to patch (head components).")
    pos: StrictInt | None = Field(
        None, description="The position to patch (by-position components), 0 = BOS."
    )
    component: ComponentName = Field(options.DEFAULT_COMPONENT, description=COMPONENT)
    metric: Metric | None = Field(None, description=METRIC)
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)
    top_k: StrictInt = Field(10, ge=1, le=100, description="How many top tokens to list per run.")

    @model_validator(mode="after")
    def _cell_of_the_component(self) -> PatchRequest:
        """Refuse a head or position the component has no axis for (it would be ignored)."""
        component = get_component(self.component)
        for axis, value in (("head", self.head), ("pos", self.pos)):
            if value is not None and axis not in component.axes:
                by = ", ".join(component.axes)
                raise InputError(
                    f"{axis} was given, but component {component.name!r} is indexed by {by} "
                    f"only, so it would be ignored. Leave {axis} out, or choose a component "
                    f"indexed by {axis} (z_by_pos patches one head at one position).",
                    field=axis,
                )
        return self


class TopToken(BaseModel):
    """A token and its probability at the final position."""

    token: str
    prob: float


class PatchResponse(BaseModel):
    """The spec's /patch response, field for field, then the model and what else was computed."""

    clean_prob: float = Field(description="P(target) in the clean run.")
    corrupt_prob: float = Field(description="P(target) in the corrupted run.")
    patched_prob: float = Field(description="P(target) in the patched run.")
    recovery_pct: float | None = Field(
        description="Recovery of the target's probability: 100 * (patched - corrupt) / (clean - "
        "corrupt) of P(target), whatever the metric; null when the clean and corrupted "
        "probabilities are equal. metric_normalized is the same for the chosen metric."
    )
    clean_rank: int = Field(description="The target's rank in the clean run, 1 = top.")
    corrupt_rank: int
    patched_rank: int
    top_clean: list[TopToken]
    top_corrupt: list[TopToken]
    top_patched: list[TopToken]
    result: Literal["patch"] = Field(description=RESULT)
    model: str = Field(description="The model that computed this result.")
    component: str
    direction: Direction
    layer: int
    head: int | None = None
    pos: int | None = None
    metric: Metric
    metric_clean: float | None
    metric_corrupt: float | None
    metric_patched: float | None
    metric_normalized: float | None = Field(
        description="(patched - corrupt) / (clean - corrupt) of the chosen metric (not of "
        "P(target), which is recovery_pct): 1 = clean, 0 = corrupt."
    )
    patched_positions: list[int] = Field(description="Positions of the patched run that were set.")
    tokens: list[str] = Field(description="Token strings of the patched run's prompt.")
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    note: str | None = None
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    cached: bool = Field(description=CACHED)
    seconds: float = Field(description="Time the server spent computing, in seconds.")
    run_id: int | None = Field(None, description=RUN_ID)
