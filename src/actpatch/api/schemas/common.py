"""What the request and response bodies share: the experiment's fields, the engine's option
lists as literals, the field descriptions said once, and the parts several results carry.

Every option list and default here is the engine's (`actpatch.patching.options`, and
`components.COMPONENTS`): a literal is `Literal[tuple(OPTIONS[name].choices)]`, a default is
`options.DEFAULT_*`, a description is `OPTIONS[name].help()`. When a choice is added there, the
schemas (and so the OpenAPI document and the page) show it without an edit here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from actpatch.datasets import unencodable
from actpatch.errors import InputError
from actpatch.patching import COMPONENTS, get_component
from actpatch.patching.components import ALIASES
from actpatch.patching.options import OPTIONS, POSITIONS

from ..jobs import STATUSES

# The specification's /patch request (its layer and head fitted to the served model by
# `openapi.spec_example`); the tokenize example takes its prompts and answer.
SPEC_EXAMPLE: dict[str, Any] = {
    "clean_prompt": "Paris is the capital of",
    "corrupt_prompt": "Berlin is the capital of",
    "target_token": " France",
    "layer": 8,
    "head": 11,
}
IOI_EXAMPLE: dict[str, Any] = {
    "clean_prompt": "When Mary and John went to the store, John gave a drink to",
    "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
    "target_token": " Mary",
    "wrong_token": " John",
}

Prompt = str  # its length is limited by the settings (max_prompt_chars), like the pairs
Answer = Annotated[str, Field(max_length=200)]

# The engine's option lists, written once in the core; the schemas only derive from them.
if TYPE_CHECKING:
    Direction = str
    Metric = str
    GradientMetric = str
    Ablation = str
    AttributionMethod = str
    EdgeMethod = str
    KvConvention = str
    CircuitAblation = str
    Positions = str
    PositionConvention = str
    Batching = str
    JobStatus = str
else:
    Direction = Literal[tuple(OPTIONS["direction"].choices)]
    Metric = Literal[tuple(OPTIONS["metric"].choices)]
    GradientMetric = Literal[tuple(OPTIONS["gradient_metric"].choices)]
    Ablation = Literal[tuple(OPTIONS["ablation"].choices)]
    AttributionMethod = Literal[tuple(OPTIONS["attribution_method"].choices)]
    EdgeMethod = Literal[tuple(OPTIONS["edge_method"].choices)]
    KvConvention = Literal[tuple(OPTIONS["kv"].choices)]
    CircuitAblation = Literal[tuple(OPTIONS["circuit_ablation"].choices)]
    Positions = Literal[tuple(OPTIONS["positions"].choices)]
    # What a sweep's pos axis indexes once "auto" is resolved: one of the other conventions.
    PositionConvention = Literal[tuple(p for p in POSITIONS if p != "auto")]
    Batching = Literal[tuple(OPTIONS["batching"].choices)]
    JobStatus = Literal[STATUSES]
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

# Field descriptions that several schemas share.
CLEAN = "The prompt that shows the behaviour (or a list of them)."
CORRUPT = "The prompt that does not (one per clean prompt)."
TARGET = "The answer the clean prompt calls for, one token with its leading space: ' France'."
WRONG = "The answer the corrupted prompt calls for; enables the logit_diff metric."
MODEL = "One of the server's models (GET /models); the server's default when left out."
COMPONENT = "What to patch: " + "; ".join(f"{n} ({c.description})" for n, c in COMPONENTS.items())
COMPONENT += ". Aliases: " + ", ".join(f"{a} = {n}" for a, n in ALIASES.items()) + "."
METRIC = OPTIONS["metric"].help() + "."
DIRECTION = OPTIONS["direction"].help() + "."
KV = "On a grouped-query model: " + OPTIONS["kv"].help() + "."
BACKEND = "The path that computed the result: fast (actpatch's engine) or bridge "
BACKEND += "(TransformerLens's TransformerBridge)."
DEVICES = "The devices the model's weights are on, the embedding's first (several when a device "
DEVICES += "map spreads the model)."
WARNINGS = "What makes the numbers doubtful (empty when all is well); shown above the numbers."
RESULT = "What kind of result this is: actpatch.read_result reads the JSON back into its "
RESULT += "result object by it (in a notebook: to_pandas(), the figure)."
CACHED = "Whether the clean and corrupted runs came from the cache."
RUN_ID = "The run's id in the history (GET /runs/{id}); null when it could not be kept "
RUN_ID += "(a not_kept warning says why) or the server keeps no runs."


def not_text(where: str) -> str:
    """What a 422 says about text that is not Unicode, and how to fix it. The check is the
    core's (`actpatch.datasets.unencodable`, which the dataset reader uses too); the words are
    the API's, about text sent in a request."""
    return (
        f"{where} holds text that is not valid Unicode: an unpaired surrogate (a JSON escape "
        "such as \\ud800 without its other half). Send the text itself, encoded as UTF-8, or "
        "both halves of the pair (\\ud83d\\ude00 is one emoji)."
    )


class Request(BaseModel):
    """A request body: unknown fields are refused, so a misspelt option is never ignored; values
    are strict, so `true` is not a 1 and `"yes"` not a true; text must be Unicode."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _unicode_text(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for key, value in data.items():
                if unencodable([key, value]) is not None:
                    name = key if unencodable(key) is None else repr(key)
                    raise InputError(not_text(str(name)), field=str(name))
        return data


class ExperimentFields(Request):
    """The prompts and answers every experiment needs, and the model to run them on."""

    clean_prompt: Prompt | list[Prompt] = Field(description=CLEAN)
    corrupt_prompt: Prompt | list[Prompt] = Field(description=CORRUPT)
    target_token: Answer | list[Answer] = Field(description=TARGET)
    wrong_token: Answer | list[Answer] | None = Field(None, description=WRONG)
    model: str | None = Field(None, description=MODEL)


class ResultWarning(BaseModel):
    """Something that makes a result's numbers doubtful, and how to fix it (never blocks a run)."""

    code: str = Field(
        description="leading_space, no_behaviour, indistinguishable_answers or "
        "identical_prompts; not_kept when the run could not be stored in the history (the "
        "result is complete all the same)."
    )
    field: str | None = Field(description="The request field at fault, if one is.")
    message: str = Field(description="What is wrong and how to fix it.")
    pairs: list[int] | None = Field(
        default=None,
        description="For a problem of some of the prompt pairs: every pair it occurs in (their "
        "places in the dataset, from 0; the message counts them and names the first few). "
        "None for a problem of the whole experiment.",
    )


class AlignmentInfo(BaseModel):
    """Which clean position corresponds to which corrupted position."""

    clean_len: int
    corrupt_len: int
    identity: bool = Field(description="True when both prompts have the same token length.")
    pairs: list[tuple[int, int]] = Field(description="(clean_pos, corrupt_pos) pairs, in order.")
    first_diff: int = Field(description="The first position whose tokens differ.")
