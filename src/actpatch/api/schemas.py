"""Request and response bodies of the REST API, one pydantic model per shape.

`PatchRequest`/`PatchResponse` are the specification's `/patch` contract, field for field, with
optional fields after the spec's (which model, component, direction, metric, wrong answer).
Every response names the model that computed it. Prompts and answers may be a string or a list
(a dataset of pairs, the metric averaged over pairs as in TransformerLens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StrictInt, model_validator

from actpatch.datasets import DATASET_SPEC_LIST
from actpatch.patching import COMPONENTS, DIRECTIONS, METRICS, get_component
from actpatch.patching.components import ALIASES
from actpatch.patching.options import ABLATIONS, ATTRIBUTION_METHODS

SPEC_EXAMPLE: dict[str, Any] = {
    "clean_prompt": "Paris is the capital of",
    "corrupt_prompt": "Berlin is the capital of",
    "target_token": " France",
    "layer": 8,
    "head": 11,
}

Prompt = str  # its length is limited by the settings (max_prompt_chars), like the pairs
Answer = Annotated[str, Field(max_length=200)]
# The engine's option lists, written once in the core; the schemas only derive from them.
if TYPE_CHECKING:
    Direction = str
    Metric = str
    Ablation = str
    AttributionMethod = str
else:
    Direction = Literal[tuple(DIRECTIONS)]
    Metric = Literal[tuple(METRICS)]
    Ablation = Literal[tuple(ABLATIONS)]
    AttributionMethod = Literal[tuple(ATTRIBUTION_METHODS)]
COMPONENT_NAMES = [*COMPONENTS, *ALIASES]


def _known_component(name: str) -> str:
    get_component(name)  # the engine's own check and teaching message (InputError)
    return name


# A component's name or alias, checked by the engine and listed as an enum in the schema.
ComponentName = Annotated[
    str, AfterValidator(_known_component), Field(json_schema_extra={"enum": COMPONENT_NAMES})
]
# A sweep's values: (layer, head) or (layer, pos) nested lists, or (layer, pos, head); null =
# not patched (no counterpart in the other prompt) or undefined.
Grid = list[list[float | None]] | list[list[list[float | None]]]

_CLEAN = "The prompt that shows the behaviour (or a list of them)."
_CORRUPT = "The prompt that does not (one per clean prompt)."
_TARGET = "The answer the clean prompt calls for, one token with its leading space: ' France'."
_WRONG = "The answer the corrupted prompt calls for; enables the logit_diff metric."
_MODEL = "One of the server's models (GET /models); the server's default when left out."
_COMPONENT = "What to patch: " + "; ".join(f"{n} ({c.description})" for n, c in COMPONENTS.items())
_COMPONENT += ". Aliases: " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()) + "."
_METRIC = "; ".join(f"{name}: {what}" for name, what in METRICS.items())
_METRIC += ". Default: logit_diff when wrong_token is given, else prob."
_DIRECTION = "; ".join(f"{name}: {what}" for name, what in DIRECTIONS.items()) + "."
_ABLATE = (
    "Ablate each cell in the clean run instead of patching: "
    + "; ".join(f"{name}: {what}" for name, what in ABLATIONS.items())
    + " (the mean over the request's prompts, or dataset; resample needs several pairs). "
    "Leave direction out: an ablation always acts on the clean run."
)


class Request(BaseModel):
    """A request body: unknown fields are refused, so a misspelt option is never ignored."""

    model_config = ConfigDict(extra="forbid")


class ExperimentFields(Request):
    """The prompts and answers every experiment needs, and the model to run them on."""

    clean_prompt: Prompt | list[Prompt] = Field(description=_CLEAN)
    corrupt_prompt: Prompt | list[Prompt] = Field(description=_CORRUPT)
    target_token: Answer | list[Answer] = Field(description=_TARGET)
    wrong_token: Answer | list[Answer] | None = Field(None, description=_WRONG)
    model: str | None = Field(None, description=_MODEL)


class PatchRequest(ExperimentFields):
    """One patch: the spec's request (prompts, target, layer, head) plus optional choices."""

    model_config = ConfigDict(json_schema_extra={"examples": [SPEC_EXAMPLE]})

    # Strict: JSON true or "8" is not a layer (pydantic would read them as 1 and 8).
    layer: StrictInt = Field(description="The layer to patch, 0-based.")
    head: StrictInt | None = Field(None, description="The head to patch (head components).")
    pos: StrictInt | None = Field(
        None, description="The position to patch (by-position components), 0 = BOS."
    )
    component: ComponentName = Field("z", description=_COMPONENT)
    metric: Metric | None = Field(None, description=_METRIC)
    direction: Direction = Field("denoising", description=_DIRECTION)
    top_k: StrictInt = Field(10, ge=1, le=100, description="How many top tokens to list per run.")


class TopToken(BaseModel):
    """A token and its probability at the final position."""

    token: str
    prob: float


class ResultWarning(BaseModel):
    """Something that makes a result's numbers doubtful, and how to fix it (never blocks a run)."""

    code: str = Field(
        description="leading_space, no_behaviour, indistinguishable_answers or identical_prompts."
    )
    field: str | None = Field(description="The request field at fault, if one is.")
    message: str = Field(description="What is wrong and how to fix it.")


_BACKEND = "The path that computed the result: fast (actpatch's engine) or bridge "
_BACKEND += "(TransformerLens's TransformerBridge)."
_WARNINGS = "What makes the numbers doubtful (empty when all is well); shown above the numbers."


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
    backend: str = Field(description=_BACKEND)
    warnings: list[ResultWarning] = Field(description=_WARNINGS)
    cached: bool = Field(description="Whether the clean and corrupted runs came from the cache.")
    seconds: float = Field(description="Time the server spent computing, in seconds.")
    run_id: int | None = Field(None, description="The run's id in the history (GET /runs/{id}).")


class SweepRequest(ExperimentFields):
    """A sweep: patch every cell of one component and measure the metric after each patch."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "clean_prompt": "When Mary and John went to the store, John gave a drink to",
                    "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
                    "target_token": " Mary",
                    "wrong_token": " John",
                    "component": "z",
                }
            ]
        }
    )

    component: ComponentName = Field("z", description=_COMPONENT)
    metric: Metric | None = Field(None, description=_METRIC)
    direction: Direction = Field("denoising", description=_DIRECTION)
    ablate: Ablation | None = Field(None, description=_ABLATE)
    seed: int = Field(0, ge=0, description="Seed of resample ablation.")
    # A dataset instead of prompts (issue 11): its pairs replace the prompt and answer fields.
    clean_prompt: Prompt | list[Prompt] | None = Field(None, description=_CLEAN)  # type: ignore[assignment]
    corrupt_prompt: Prompt | list[Prompt] | None = Field(None, description=_CORRUPT)  # type: ignore[assignment]
    target_token: Answer | list[Answer] | None = Field(None, description=_TARGET)  # type: ignore[assignment]
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
    positions: Literal["auto", "index", "role"] = Field(
        "auto",
        description="A position-resolved sweep's columns: token positions (index), the roles the "
        "pairs name (role), or auto (role over pairs of several token lengths, else index).",
    )
    batching: Literal["auto", "padded", "grouped"] = Field(
        "auto",
        description="A dataset of several token lengths: auto (left-pad together the length "
        "groups that recompute alike; the same numbers, never slower), padded (all in one "
        "batch) or grouped (one sweep per length). The result's `batching` says which ran.",
    )

    @model_validator(mode="after")
    def _prompts_or_dataset(self) -> SweepRequest:
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


class AlignmentInfo(BaseModel):
    """Which clean position corresponds to which corrupted position."""

    clean_len: int
    corrupt_len: int
    identity: bool = Field(description="True when both prompts have the same token length.")
    pairs: list[tuple[int, int]] = Field(description="(clean_pos, corrupt_pos) pairs, in order.")
    first_diff: int = Field(description="The first position whose tokens differ.")


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
    backend: str = Field(description=_BACKEND)
    warnings: list[ResultWarning] = Field(description=_WARNINGS)
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
    cached: bool = Field(description="Whether the clean and corrupted runs came from the cache.")
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
    position_convention: Literal["index", "role"] = Field(
        "index", description="What the pos axis indexes: token positions or named roles."
    )
    position_labels: list[str] = Field(
        default_factory=list, description="The pos axis's role names (role convention)."
    )
    complete: bool = Field(True, description="False for a running (or cancelled) sweep's snapshot.")
    run_id: int | None = Field(None, description="The run's id in the history (GET /runs/{id}).")


JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]


class FieldMessage(BaseModel):
    """A message about one field of the request."""

    field: str | None
    message: str


class ErrorResponse(BaseModel):
    """What went wrong, which field is at fault, and how to fix it."""

    detail: str = Field(description="What was wrong and how to fix it.")
    field: str | None = Field(None, description="The request field at fault, if one is.")
    errors: list[FieldMessage] | None = Field(
        None, description="Every field at fault, when several are (validation errors)."
    )


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


class TokenizeRequest(Request):
    """Text to tokenize: any of an experiment's prompts and answers."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {k: SPEC_EXAMPLE[k] for k in ("clean_prompt", "corrupt_prompt", "target_token")}
            ]
        }
    )

    clean_prompt: Prompt | None = None
    corrupt_prompt: Prompt | None = None
    target_token: Answer | None = None
    wrong_token: Answer | None = None
    model: str | None = Field(None, description=_MODEL)


class TokenizedPrompt(BaseModel):
    """A prompt's tokens (BOS first), and which differ from the other prompt's."""

    ids: list[int]
    tokens: list[str]
    differing: list[int] = Field(
        description="Positions whose token has no equal counterpart in the other prompt."
    )


class TokenizedAnswer(BaseModel):
    """An answer's tokens (no BOS); an answer must be exactly one token."""

    ids: list[int]
    tokens: list[str]
    single_token: bool


class TokenizeResponse(BaseModel):
    """The tokens of each text given, the prompts' alignment, and warnings to show live."""

    model: str
    n_ctx: int = Field(description="The most tokens (BOS included) the model reads.")
    clean_prompt: TokenizedPrompt | None = None
    corrupt_prompt: TokenizedPrompt | None = None
    target_token: TokenizedAnswer | None = None
    wrong_token: TokenizedAnswer | None = None
    alignment: AlignmentInfo | None = Field(None, description="When both prompts are given.")
    warnings: list[FieldMessage] = Field(
        description="Problems a patch would refuse: multi-token answers, prompts too long."
    )


class ModelInfo(BaseModel):
    """A model this server runs: its name, origin and shape."""

    name: str
    source: str = Field(description="hub, local folder or bundled.")
    default: bool = Field(description="Whether requests without a model field get this one.")
    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int = Field(description="Key/value heads (fewer than n_heads with GQA).")
    d_model: int
    d_head: int
    n_ctx: int
    d_vocab: int
    n_params: int
    dtype: str = Field(description="The precision the model runs in: float32, bfloat16, ...")
    notes: list[str]
    backend: str = Field(
        description="The path that computes results on this model: fast (actpatch's engine) or "
        "bridge (TransformerLens's TransformerBridge)."
    )


class ComponentInfo(BaseModel):
    """A patchable component: the axes of its sweep and what it is."""

    axes: list[str]
    description: str


class OptionInfo(BaseModel):
    """One of the engine's option lists: its choices, what each means, and its default."""

    choices: dict[str, str]
    default: str | None = Field(description="The default choice; null when it follows the input.")
    default_when: str | None = Field(description="How the default follows the input, if it does.")


class ModelsResponse(BaseModel):
    """What this server can run: its models (and which is the default) and the engine's options."""

    default: str
    models: list[ModelInfo]
    notices: list[str] = Field(
        description="Things the operator and user must know, e.g. that the default model could "
        "not be loaded and another is served instead."
    )
    components: dict[str, ComponentInfo]
    metrics: dict[str, str]
    directions: list[str]
    direction_descriptions: dict[str, str] = Field(
        description="What each direction patches into which run."
    )
    options: dict[str, OptionInfo] = Field(
        description="Every option list of the engine (metric, direction, edge_method, kv, "
        "positions, batching, ...), the one source of the CLI's choices, these schemas' literals "
        "and the page's selects."
    )


class HealthResponse(BaseModel):
    """The server is up, and what it runs."""

    status: Literal["ok"]
    version: str
    default_model: str
    models: list[str]
    jobs_running: int
    cached_experiments: int


# -- attribution patching ----------------------------------------------------------------------


class AttributeRequest(ExperimentFields):
    """Attribution patching: estimate every cell of a component from one backward pass."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "clean_prompt": "When Mary and John went to the store, John gave a drink to",
                    "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
                    "target_token": " Mary",
                    "wrong_token": " John",
                    "component": "z",
                    "method": "atp*",
                    "compare": True,
                }
            ]
        }
    )

    component: ComponentName = Field("z", description=_COMPONENT)
    method: AttributionMethod = Field(
        "atp",
        description="; ".join(f"{name}: {what}" for name, what in ATTRIBUTION_METHODS.items()),
    )
    metric: Metric | None = Field(
        None, description=_METRIC + " rank has no gradient and is refused."
    )
    direction: Direction = Field("denoising", description=_DIRECTION)
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
    backend: str = Field(description=_BACKEND)
    note: str | None = None
    warnings: list[ResultWarning] = Field(description=_WARNINGS)
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
    cached: bool = Field(description="Whether the clean and corrupted runs came from the cache.")
    run_id: int | None = Field(None, description="The run's id in the history (GET /runs/{id}).")


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


# -- the run history (issue 11) ---------------------------------------------------------------


class RunSummary(BaseModel):
    """A stored run, without its request and result."""

    id: int
    kind: str = Field(description="patch, sweep or attribution.")
    label: str = Field(description="What was run, on what, in a few words.")
    created_at: str = Field(description="When (UTC, ISO 8601).")
    model: str | None
    backend: str | None
    version: str = Field(description="The actpatch version that computed it.")
    seconds: float | None = Field(description="Time taken, in seconds.")
    complete: bool = Field(description="False for a cancelled sweep's partial result.")


class RunList(BaseModel):
    """The most recent runs first."""

    runs: list[RunSummary]


class RunDetail(RunSummary):
    """A stored run: the request that produced it and its result, exactly as returned."""

    request: dict[str, Any]
    result: dict[str, Any]


# -- circuits: path patching, edge attribution, circuit evaluation ------------------------------

_SENDERS = "'all' (every head; raw/normalized are then [layer][head]) or heads and MLPs, e.g. "
_SENDERS += "['9.9', '10.0', 'm0'] or 'a9.h9,m0'."
_RECEIVERS = (
    "'logits', or heads' q/k/v inputs and MLPs, e.g. ['9.9.q', '9.6.q'] or 'a7.h3<v>'; on a "
    "grouped-query model 'a7.h3<k>' is the key input as query head 3 uses it and 'a7.kv1<k>' "
    "key/value head 1's, which its whole group reads."
)
_EDGE = "An edge as EAP-IG names it: WRITER->READER, e.g. 'a0.h1->a2.h3<v>', 'm0->logits'."


class PathRequest(ExperimentFields):
    """Path patching (Wang et al. 2022): each sender's effect through the receivers only."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "clean_prompt": "When Mary and John went to the store, John gave a drink to",
                    "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
                    "target_token": " Mary",
                    "wrong_token": " John",
                    "senders": "all",
                    "receivers": "logits",
                }
            ]
        }
    )

    senders: str | list[str] = Field("all", description=_SENDERS)
    receivers: str | list[str] = Field("logits", description=_RECEIVERS)
    freeze_mlps: bool = Field(False, description="Freeze every MLP too, not only the heads.")
    metric: Metric | None = Field(None, description=_METRIC)
    direction: Direction = Field("denoising", description=_DIRECTION)


class PathResponse(BaseModel):
    """Path patching's result: the metric with each sender patched, raw and normalized."""

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
    backend: str = Field(description=_BACKEND)
    note: str | None = None
    warnings: list[ResultWarning] = Field(description=_WARNINGS)
    known_roles: KnownRoles


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


_KV = (
    "On a grouped-query model: 'ungrouped' (default; MIB's convention) gives each query head its "
    "own <k> and <v> readers; 'grouped' one per key/value head, named a{L}.kv{G}<k>."
)
KvConvention = Literal["ungrouped", "grouped"]


class GraphShapeItem(BaseModel):
    """The graph scored or evaluated."""

    n_layers: int
    n_heads: int
    n_kv_heads: int
    kv: KvConvention
    parallel: bool = Field(description="A parallel residual stream: no a{L}.h{H}->m{L} edges.")


class EdgesRequest(ExperimentFields):
    """Edge attribution over the whole graph: EAP or EAP-IG."""

    method: Literal["eap", "eap-ig", "eap-ig-act"] = Field(
        "eap-ig",
        description="eap, eap-ig (default: integrated gradients over the input embeddings) or "
        "eap-ig-act (MIB's EAP-IG over activations).",
    )
    steps: int = Field(5, ge=1, le=100, description="EAP-IG's interpolation steps.")
    metric: Literal["logit_diff", "prob", "logprob"] | None = Field(None, description=_METRIC)
    direction: Direction = Field("denoising", description=_DIRECTION)
    by_pos: bool = Field(False, description="Also give each edge's score by position.")
    verify: int = Field(0, ge=0, le=200, description="Patch the top K edges exactly.")
    kv: KvConvention = Field("ungrouped", description=_KV)
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

    edge: str = Field(description=_EDGE)
    metric: float | None
    effect: float | None = Field(description="The metric's change from the base run.")
    normalized: float | None = Field(description="effect / (clean - corrupt).")


class EdgesResponse(BaseModel):
    """Every edge's attribution score, strongest first."""

    model: str
    method: str
    steps: int
    metric: Metric
    direction: Direction
    clean: float | None
    corrupt: float | None
    n_edges: int = Field(description="Edges in the graph (all were scored).")
    kv: KvConvention = Field(description=_KV)
    graph: GraphShapeItem
    edges: list[EdgeItem] = Field(description="The strongest edges by |score| (see top).")
    verified: list[EdgeCheckItem]
    tokens: list[str]
    first_diff: int
    n_pairs: int
    seconds: float
    backend: str = Field(description=_BACKEND)
    warnings: list[ResultWarning] = Field(description=_WARNINGS)
    n_layers: int
    n_heads: int
    known_roles: KnownRoles


class EvaluateRequest(ExperimentFields):
    """Circuit evaluation: the clean run with every edge outside a circuit ablated."""

    edges: list[str] | None = Field(None, description=f"The circuit's edges. {_EDGE}")
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
    ablation: Literal["corrupt", "mean"] = Field(
        "corrupt",
        description="corrupt: ablated writers take their corrupted-run output; mean: their "
        "mean over every prompt.",
    )
    metric: Metric | None = Field(None, description=_METRIC)
    kv: KvConvention = Field("ungrouped", description=_KV)


class CircuitPointItem(BaseModel):
    n_edges: int
    metric: float | None
    faithfulness: float | None = Field(description="(metric - corrupt) / (clean - corrupt).")


class EvaluateResponse(BaseModel):
    """A circuit's faithfulness, or a curve of them."""

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
    kv: KvConvention = Field(description=_KV)
    graph: GraphShapeItem
    mib: dict[str, Any] | None = Field(
        None,
        description="With mib: fractions, n_edges and faithfulness per ranking (absolute, "
        "signed), cpr (signed), cmd (absolute), cpr_absolute, cmd_signed.",
    )
    n_pairs: int
    seconds: float
    backend: str = Field(description=_BACKEND)
    warnings: list[ResultWarning] = Field(description=_WARNINGS)


class VerifyRequest(ExperimentFields):
    """Exact edge patching: each edge patched alone from the source run into the base run."""

    edges: list[str] = Field(min_length=1, max_length=200, description=_EDGE)
    metric: Metric | None = Field(None, description=_METRIC)
    direction: Direction = Field("denoising", description=_DIRECTION)
    kv: KvConvention = Field("ungrouped", description=_KV)


class VerifyResponse(BaseModel):
    """Each edge's exact effect."""

    model: str
    metric: Metric
    direction: Direction
    clean: float | None
    corrupt: float | None
    edges: list[EdgeCheckItem]
    seconds: float


PathResponse.model_rebuild()
