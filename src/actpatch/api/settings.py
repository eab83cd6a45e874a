"""The server's settings: which models it runs and how it shares its work between requests.

Every field can be set from the environment as `ACTPATCH_<FIELD>` (e.g. `ACTPATCH_MODEL=demo`,
`ACTPATCH_EXTRA_MODELS='["demo"]'`, `ACTPATCH_PORT=8080`); `actpatch serve --model/--host/--port`
override them when given. The operator decides what the server can run: clients choose only
among the models loaded here.

`ACTPATCH_MODEL` is read in one place, the core's `actpatch.models.default_model_spec()` (which
the CLI's other commands use too); the `model` field's default comes from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from actpatch.models import default_model_spec


class _EnvButModel(EnvSettingsSource):
    """The ACTPATCH_<FIELD> variables, except ACTPATCH_MODEL: the core reads that one."""

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        if field_name == "model":
            return None, field_name, False
        return super().get_field_value(field, field_name)


class Settings(BaseSettings):
    """How the actpatch server runs (each field reads ACTPATCH_<FIELD> from the environment)."""

    model_config = SettingsConfigDict(env_prefix="ACTPATCH_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments first, then the environment (less ACTPATCH_MODEL), .env and secrets."""
        return init_settings, _EnvButModel(settings_cls), dotenv_settings, file_secret_settings

    model: str = Field(
        default_factory=default_model_spec,
        description="The default model: a hub name, a local Hugging Face folder, or 'demo' "
        "(default: ACTPATCH_MODEL, else gpt2).",
    )
    extra_models: list[str] = Field(
        default_factory=list,
        description="More models to load next to the default; clients pick one by name.",
    )
    fallback_model: str | None = Field(
        default="demo",
        description="Served instead of the default model when its weights cannot be had "
        "(said on the page and in the terminal). None: fail instead.",
    )
    device: str = Field(default="cpu", description="Where the models run: cpu, cuda or cuda:N.")
    device_map: str | None = Field(
        default=None,
        description="Spread each model over several devices instead of `device`: auto, "
        "balanced, or a JSON file of module -> device (actpatch.models.placement).",
    )
    cuda_graphs: bool = Field(
        default=False,
        description="On one CUDA GPU, replay sweeps' patched batches from recorded CUDA graphs "
        "(fewer kernel launches when the same prompt lengths come back).",
    )
    dtype: str = Field(
        default="float32",
        description="The models' precision: float32 (exact), bfloat16 or float16 (half the "
        "memory, less precise).",
    )
    max_memory: str | None = Field(
        default=None,
        description="Activations one batched sweep run may hold (e.g. 4GB); a sweep that "
        "needs more runs in several batches, slower rather than out of memory. Default: 1 GiB "
        "on a CPU, half the GPU's free memory (at least 1 GiB) on a GPU.",
    )
    host: str = Field(default="127.0.0.1", description="The address `actpatch serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="The port it listens on.")
    cache_size: int = Field(
        default=16,
        ge=1,
        description="How many experiments (prompt pairs with their cached clean and corrupted "
        "runs) to keep, least recently used first out.",
    )
    cache_mb: float = Field(
        default=1024,
        gt=0,
        description="The most memory (MiB) the kept experiments' cached runs may hold; the least "
        "recently used go first. An experiment costs about 4.6 MiB per IOI-length prompt pair "
        "on GPT-2 small (its activations and two rows of 50,257 logits), 0.6 MiB on the demo "
        "model.",
    )
    # -- limits on what one request may ask (each refusal says which limit and how to fit it)
    max_pairs: int = Field(
        default=64,
        ge=1,
        description="The most prompt pairs one request may carry (a dataset of pairs is averaged "
        "over). 64 IOI pairs hold about 300 MiB of cached runs on GPT-2 small; patch larger "
        "datasets with the CLI (`actpatch sweep --dataset`).",
    )
    max_prompt_chars: int = Field(
        default=20_000,
        ge=1,
        description="The most characters in one prompt (far more than GPT-2's 1,024 tokens).",
    )
    max_body_bytes: int = Field(
        default=1 << 20,
        ge=1024,
        description="The largest request body (bytes) the server reads; larger ones are refused "
        "with 413 before they are parsed. 1 MiB holds 64 pairs of 8,000-character prompts.",
    )
    max_pending_jobs: int = Field(
        default=8,
        ge=1,
        description="How many background sweeps may be queued or running at once; more are "
        "refused with 429 and a Retry-After header (each queued job holds its experiment).",
    )
    max_concurrent_runs: int = Field(
        default=4,
        ge=1,
        description="How many patches and sweeps compute at once; more wait their turn. Each "
        "holds its experiment's runs and a batch of activations while it computes, so this "
        "bounds the server's peak memory; 4 keeps 2 cores busy while a long sweep runs.",
    )
    run_wait_s: float = Field(
        default=30,
        ge=0,
        description="How long a synchronous patch, path patch, circuit or view waits for one of "
        "the max_concurrent_runs places before it is refused with 429 and a Retry-After header "
        "(so a burst of requests cannot hold every server thread; background jobs wait their "
        "turn without a limit).",
    )
    # -- who may call
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host names (besides localhost, 127.0.0.1 and [::1], and the address the "
        "server binds) that requests may be addressed to; others get 400, which stops DNS "
        "rebinding attacks on a local server. '*' accepts any name.",
    )
    api_token: SecretStr | None = Field(
        default=None,
        description="When set, every request must carry it (`Authorization: Bearer TOKEN`, or "
        "as the password of HTTP Basic authentication, which browsers ask for); others get "
        "401. Required to serve on a non-loopback address unless allow_open is set.",
    )
    allow_open: bool = Field(
        default=False,
        description="Serve on a non-loopback address without api_token: anyone who can reach "
        "the port can use the server (said loudly in the terminal and on the page).",
    )
    sweep_workers: int = Field(
        default=1,
        ge=1,
        description="How many background sweep jobs run at once; more wait in a queue.",
    )
    workers: int | None = Field(
        default=None,
        ge=1,
        description="Ray workers that compute a dataset sweep's length groups, each holding "
        "the model once (a local Ray instance, or ray_address's cluster; needs `pip install "
        "'actpatch[ray]'`). The numbers are the same as in the server's process. None: "
        "no Ray (unless ray_address is set).",
    )
    ray_address: str | None = Field(
        default=None,
        description="A Ray cluster for dataset sweeps (ray://HOST:10001, HOST:6379 or auto); "
        "its workers load the model by name, so every node needs it. None: no cluster.",
    )
    max_jobs: int = Field(
        default=64, ge=1, description="How many sweep jobs (finished ones included) to remember."
    )
    job_idle_timeout_s: float = Field(
        default=120.0,
        gt=0,
        description="A background sweep nobody has asked about for this long is cancelled "
        "(the page polls it several times a second; a closed tab stops polling).",
    )
    torch_threads: int | None = Field(
        default=None,
        ge=1,
        description="Threads torch may use per operation (`actpatch serve` applies it; None: "
        "torch's default, one per core, the fastest on an idle machine: a head sweep on GPT-2 "
        "small's shape took 0.74 s with 2 threads vs 1.04 s with 1 on 2 idle cores). Set 1 on a "
        "machine shared with other busy processes: there torch's threads wait on each other "
        "(measured: a warm /patch 7x slower with 2 threads when one core was taken).",
    )
    # -- run history (issue 11)
    data_dir: Path | None = Field(
        default=None,
        description="Where the run history (runs.sqlite3) is kept; None: ACTPATCH_DATA_DIR, "
        "else ~/.local/share/actpatch.",
    )
    keep_runs: bool = Field(
        default=True,
        description="Keep every patch, sweep and attribution run through the API in the run "
        "history (GET /runs); False: keep none.",
    )
    history_max_runs: int | None = Field(
        default=None,
        ge=1,
        description="The most runs the history keeps, pinned ones aside: after each run the "
        "oldest unpinned runs beyond it are deleted. None: no limit.",
    )
    history_max_mb: float | None = Field(
        default=None,
        gt=0,
        description="The most MiB of requests and results the history keeps, pinned runs "
        "aside (a 64-pair dataset sweep stores about 0.4 MiB); the oldest unpinned runs beyond "
        "it are deleted, never the newest. None: no limit.",
    )
    history_busy_timeout_s: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How long a request waits for another process (a second server, a sqlite3 "
        "shell) to release the history's lock: then its result is answered with a warning that "
        "it was not kept, and the history's own routes answer 503 with Retry-After.",
    )

    @field_validator("api_token", mode="after")
    @classmethod
    def _empty_token_is_none(cls, token: SecretStr | None) -> SecretStr | None:
        """ACTPATCH_API_TOKEN='' (e.g. an unset compose variable) means no token, not ''."""
        return token if token is not None and token.get_secret_value().strip() else None
