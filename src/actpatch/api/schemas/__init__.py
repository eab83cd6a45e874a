"""Request and response bodies of the REST API, one pydantic model per shape, one module per
resource (mirroring `api/routes/`).

- `common`: the experiment's fields, the engine's option lists as literals (derived from
  `actpatch.patching.options`), shared descriptions, and the parts several results carry;
- `errors`: the body of every error answer;
- `patch`, `sweep`, `attribute`, `circuits`, `tokenize`, `models`, `health`, `runs`: each
  resource's requests and responses.

Every response names the model that computed it. Prompts and answers may be a string or a list
(a dataset of pairs, the metric averaged over pairs as in TransformerLens). The routes import
their own resource's module; everything else imports the names re-exported here.
"""

from .attribute import Agreement, AttributeJob, AttributeRequest, AttributeResponse
from .circuits import (
    CircuitPointItem,
    EdgeCheckItem,
    EdgeItem,
    EdgesRequest,
    EdgesResponse,
    EvaluateRequest,
    EvaluateResponse,
    GraphShapeItem,
    KnownRole,
    KnownRoles,
    PathRequest,
    PathResponse,
    VerifyRequest,
    VerifyResponse,
)
from .common import (
    SPEC_EXAMPLE,
    AlignmentInfo,
    ExperimentFields,
    Request,
    ResultWarning,
)
from .errors import ErrorResponse, FieldMessage
from .health import HealthResponse
from .models import ComponentInfo, ModelInfo, ModelsResponse, OptionInfo
from .patch import PatchRequest, PatchResponse, TopToken
from .runs import HistoryInfo, RunDetail, RunList, RunSummary, RunUpdate
from .sweep import ConfidenceInterval, DatasetFields, SweepJob, SweepRequest, SweepResponse
from .tokenize import TokenizedAnswer, TokenizedPrompt, TokenizeRequest, TokenizeResponse

__all__ = [
    "SPEC_EXAMPLE",
    "Agreement",
    "AlignmentInfo",
    "AttributeJob",
    "AttributeRequest",
    "AttributeResponse",
    "CircuitPointItem",
    "ComponentInfo",
    "ConfidenceInterval",
    "DatasetFields",
    "EdgeCheckItem",
    "EdgeItem",
    "EdgesRequest",
    "EdgesResponse",
    "ErrorResponse",
    "EvaluateRequest",
    "EvaluateResponse",
    "ExperimentFields",
    "FieldMessage",
    "GraphShapeItem",
    "HealthResponse",
    "HistoryInfo",
    "KnownRole",
    "KnownRoles",
    "ModelInfo",
    "ModelsResponse",
    "OptionInfo",
    "PatchRequest",
    "PatchResponse",
    "PathRequest",
    "PathResponse",
    "Request",
    "ResultWarning",
    "RunDetail",
    "RunList",
    "RunSummary",
    "RunUpdate",
    "SweepJob",
    "SweepRequest",
    "SweepResponse",
    "TokenizeRequest",
    "TokenizeResponse",
    "TokenizedAnswer",
    "TokenizedPrompt",
    "TopToken",
    "VerifyRequest",
    "VerifyResponse",
]
