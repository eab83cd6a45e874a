"""The circuit routes: path patching (POST /path), edge attribution (POST /circuit/edges),
circuit evaluation (POST /circuit/evaluate), exact edge checks (POST /circuit/verify), and
GPT-2 small's known head roles (GET /circuit/roles)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from actpatch.patching import options
from actpatch.patching.options import OPTIONS

from .common import (
    BACKEND,
    DEVICES,
    DIRECTION,
    IOI_EXAMPLE,
    KV,
    METRIC,
    RESULT,
    RUN_ID,
    WARNINGS,
    CircuitAblation,
    Direction,
    EdgeMethod,
    ExperimentFields,
    GradientMetric,
    KvConvention,
    Metric,
    ResultWarning,
)

SENDERS = "'all' (every head; raw/normalized are then [layer][head]) or heads and MLPs, e.g. "
SENDERS += "['9.9', '10.0', 'm0'] or 'a9.h9,m0'."
RECEIVERS = (
    "'logits', or heads' q/k/v inputs and MLPs, e.g. ['9.9.q', '9.6.q'] or 'a7.h3<v>'; on a "
    "grouped-query model 'a7.h3<k>' is the key input as query head 3 uses it and 'a7.kv1<k>' "
    "key/value head 1's, which its whole group reads."
)
EDGE = "An edge as EAP-IG names it: WRITER->READER, e.g. 'a0.h1->a2.h3<v>', 'm0->logits'."


class KnownRole(BaseModel):
    """A head whose role Wang et al. 2022 classified in GPT-2 small."""

    layer: int
    head: int
    role: str
    label: str


class KnownRoles(BaseModel):
    """Known head roles: GPT-2 small's, from Wang et al. 2022; empty for any other model."""

    heads: list[KnownRole]
    citation: str | None
    model: str | None = Field(None, description="The model asked about (GET /circuit/roles).")


class GraphShapeItem(BaseModel):
    """The graph scored or evaluated."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    kv: KvConvention
    parallel: bool = Field(description="A parallel residual stream: no a{L}.h{H}->m{L} edges.")


# -- path patching ------------------------------------------------------------------------------


class PathRequest(ExperimentFields):
    """Path patching (Wang et al. 2022): each sender's effect through the receivers only."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{**IOI_EXAMPLE, "senders": "all", "receivers": "logits"}],
        }
    )

    senders: str | list[str] = Field("all", description=SENDERS)
    receivers: str | list[str] = Field("logits", description=RECEIVERS)
    freeze_mlps: bool = Field(False, description="Freeze every MLP too, not only the heads.")
    metric: Metric | None = Field(None, description=METRIC)
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)


class PathResponse(BaseModel):
    """Path patching's result: the metric with each sender patched, raw and normalized."""

    result: Literal["path"] = Field(description=RESULT)
    model: str
    senders: list[str] = Field(description="Each sender, EAP-IG style ('a9.h9', 'm0').")
    receivers: list[str]
    freeze_mlps: bool
    metric: Metric
    direction: Direction
    clean: float | None
    corrupt: float | None
    raw: list[float | None] | list[list[float | None]] = Field(
        description="[layer][head] when the senders are every head, else one per sender."
    )
    normalized: list[float | None] | list[list[float | None]]
    tokens: list[str]
    n_pairs: int
    seconds: float
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    note: str | None = None
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    known_roles: KnownRoles
    run_id: int | None = Field(None, description=RUN_ID)


# -- edge attribution ---------------------------------------------------------------------------


class EdgesRequest(ExperimentFields):
    """Edge attribution over the whole graph: EAP or EAP-IG."""

    method: EdgeMethod = Field(
        options.DEFAULT_EDGE_METHOD, description=OPTIONS["edge_method"].help() + "."
    )
    steps: int = Field(
        options.DEFAULT_STEPS, ge=1, le=100, description="EAP-IG's interpolation steps."
    )
    metric: GradientMetric | None = Field(None, description=OPTIONS["gradient_metric"].help() + ".")
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)
    by_pos: bool = Field(False, description="Also give each edge's score by position.")
    verify: int = Field(0, ge=0, le=200, description="Patch the top K edges exactly.")
    kv: KvConvention = Field(options.DEFAULT_KV, description=KV)
    top: int | None = Field(
        2000, ge=1, description="Return only the strongest edges (all when null)."
    )


class EdgeItem(BaseModel):
    """One edge and its score, summed over positions."""

    source: str
    target: str
    score: float
    by_pos: list[float] | None = None


class EdgeCheckItem(BaseModel):
    """One edge patched exactly: the metric, its change, and that change normalized."""

    edge: str = Field(description=EDGE)
    metric: float | None
    effect: float | None = Field(description="The metric's change from the base run.")
    normalized: float | None = Field(description="effect / (clean - corrupt).")


class EdgesResponse(BaseModel):
    """Every edge's attribution score, strongest first."""

    result: Literal["edges"] = Field(description=RESULT)
    model: str
    method: str
    steps: int
    metric: Metric
    direction: Direction
    clean: float | None
    corrupt: float | None
    n_edges: int = Field(description="Edges in the graph (all were scored).")
    kv: KvConvention = Field(description=KV)
    graph: GraphShapeItem
    edges: list[EdgeItem] = Field(description="The strongest edges by |score| (see top).")
    verified: list[EdgeCheckItem]
    tokens: list[str]
    first_diff: int
    n_pairs: int
    seconds: float
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    n_layers: int
    n_heads: int
    known_roles: KnownRoles
    run_id: int | None = Field(None, description=RUN_ID)


# -- circuit evaluation -------------------------------------------------------------------------


class EvaluateRequest(ExperimentFields):
    """Circuit evaluation: the clean run with every edge outside a circuit ablated."""

    edges: list[str] | None = Field(None, description=f"The circuit's edges. {EDGE}")
    nodes: list[str] | None = Field(
        None, description="A node set instead: heads and MLPs, e.g. ['a9.h9', 'm0']."
    )
    ranked: list[str] | None = Field(
        None, description="Edges best first, for a faithfulness curve over sizes."
    )
    sizes: list[int] | None = Field(
        None, description="Curve sizes (top n of ranked); default 0, 10, 20, 50, ..., all."
    )
    scores: list[float] | None = Field(
        None, description="With mib: each ranked edge's score (MIB ranks by |score| and by score)."
    )
    mib: bool = Field(
        False,
        description="MIB's evaluation of ranked (every edge of the graph) with its scores: "
        "faithfulness of the pruned top 0.1% ... 100% of the edges, CPR and CMD.",
    )
    ablation: CircuitAblation = Field(
        options.DEFAULT_CIRCUIT_ABLATION, description=OPTIONS["circuit_ablation"].help() + "."
    )
    metric: Metric | None = Field(None, description=METRIC)
    kv: KvConvention = Field(options.DEFAULT_KV, description=KV)


class CircuitPointItem(BaseModel):
    n_edges: int
    metric: float | None
    faithfulness: float | None = Field(description="(metric - corrupt) / (clean - corrupt).")


class EvaluateResponse(BaseModel):
    """A circuit's faithfulness, or a curve of them."""

    result: Literal["circuit"] = Field(description=RESULT)
    model: str
    metric: Metric
    ablation: str
    clean: float | None
    corrupt: float | None
    faithfulness: float | None = Field(description="The (last) circuit's faithfulness.")
    points: list[CircuitPointItem]
    total_edges: int
    nodes: list[str] | None = None
    method: str | None = None
    kv: KvConvention = Field(description=KV)
    graph: GraphShapeItem
    mib: dict[str, Any] | None = Field(
        None,
        description="With mib: fractions, n_edges and faithfulness per ranking (absolute, "
        "signed), cpr (signed), cmd (absolute), cpr_absolute, cmd_signed.",
    )
    n_pairs: int
    seconds: float
    backend: str = Field(description=BACKEND)
    devices: list[str] = Field(default_factory=list, description=DEVICES)
    warnings: list[ResultWarning] = Field(description=WARNINGS)
    run_id: int | None = Field(None, description=RUN_ID)


# -- exact edge checks --------------------------------------------------------------------------


class VerifyRequest(ExperimentFields):
    """Exact edge patching: each edge patched alone from the source run into the base run."""

    edges: list[str] = Field(min_length=1, max_length=200, description=EDGE)
    metric: Metric | None = Field(None, description=METRIC)
    direction: Direction = Field(options.DEFAULT_DIRECTION, description=DIRECTION)
    kv: KvConvention = Field(options.DEFAULT_KV, description=KV)


class VerifyResponse(BaseModel):
    """Each edge's exact effect."""

    result: Literal["verify"] = Field(description=RESULT)
    model: str
    metric: Metric
    direction: Direction
    clean: float | None
    corrupt: float | None
    edges: list[EdgeCheckItem]
    seconds: float
