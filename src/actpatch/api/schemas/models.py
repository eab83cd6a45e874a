"""GET /models: what this server can run, and every option list of the engine."""

from __future__ import annotations

from pydantic import BaseModel, Field


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
    devices: list[str] = Field(
        description="The devices its weights are on, the embedding's first (several with a "
        "device map)."
    )
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
