"""What the routes do: turn a request into an engine call on a cached experiment, and back.

The routes stay one line each; this is the one place that knows both the schemas and the
engine. Each answer is a JSON-ready dict that names the model that computed it by the name
clients use for it (`respond`).

Limits (all in `Settings`): a request's prompt pairs and prompt lengths are counted before
anything is tokenized; at most `max_concurrent_runs` patches and sweeps compute at once (the
others wait their turn, so the server's peak memory is bounded); after each computation the
experiment cache is trimmed back to its bytes. A synchronous sweep or attribution takes a place
among its kind's background jobs (`max_pending_jobs`) for as long as it runs: past the limit it
is refused with 429 and `Retry-After` at once, rather than holding one of the server's threads
while it waits, so the rest of the server (GET /health first) keeps answering.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import actpatch
from actpatch.errors import InputError
from actpatch.models import LoadedModel
from actpatch.patching import (
    COMPONENTS,
    DIRECTIONS,
    METRICS,
    Experiment,
    align,
    get_component,
    options,
)
from actpatch.patching.experiment import answer_id
from actpatch.patching.options import check_metric
from actpatch.patching.runners import choose_backend

from . import memory
from .contract import patch_response
from .errors import BusyError
from .jobs import Job, Progress, ShouldStop, SweepJobs
from .registry import ExperimentCache, ModelRegistry
from .run_history import RunHistory
from .schemas import (
    AttributeRequest,
    DatasetFields,
    EdgesRequest,
    EvaluateRequest,
    ExperimentFields,
    PatchRequest,
    PathRequest,
    SweepRequest,
    TokenizeRequest,
    VerifyRequest,
)
from .settings import Settings


class Workbench:
    """The server's state: its models, its warm experiments and its background sweeps."""

    def __init__(self, registry: ModelRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.experiments = ExperimentCache(settings.cache_size, int(settings.cache_mb * 2**20))
        self.jobs = SweepJobs(
            settings.sweep_workers,
            settings.max_jobs,
            settings.job_idle_timeout_s,
            settings.max_pending_jobs,
        )
        self._runs = threading.BoundedSemaphore(settings.max_concurrent_runs)
        self._active, self._active_lock = 0, threading.Lock()  # computations in flight
        # Attribution jobs run on their own worker, so job ids of the two kinds never mix.
        self.attribution_jobs = SweepJobs(
            settings.sweep_workers,
            settings.max_jobs,
            settings.job_idle_timeout_s,
            settings.max_pending_jobs,
            kind="attribution",
            route="/attribute",
        )
        self.history = RunHistory(settings)

    def check_limits(self, request: ExperimentFields | TokenizeRequest) -> None:
        """Refuse (422) more prompt pairs or longer prompts than the settings allow."""
        limit = self.settings.max_prompt_chars
        for field in ("clean_prompt", "corrupt_prompt", "target_token", "wrong_token"):
            value = getattr(request, field)
            texts = [value] if isinstance(value, str) else list(value or [])
            if len(texts) > self.settings.max_pairs:
                raise InputError(
                    f"{len(texts)} values of {field}: this server patches at most "
                    f"{self.settings.max_pairs} prompt pairs per request (ACTPATCH_MAX_PAIRS). "
                    "Split the dataset into several requests, or patch it with the CLI "
                    "(actpatch sweep --dataset).",
                    field=field,
                )
            longest = max((len(t) for t in texts), default=0)
            if field.endswith("_prompt") and longest > limit:
                raise InputError(
                    f"The {field.replace('_', ' ')} is too long: {longest:,} characters, and "
                    f"this server takes at most {limit:,} (ACTPATCH_MAX_PROMPT_CHARS). Shorten it.",
                    field=field,
                )

    def experiment(self, request: ExperimentFields) -> tuple[Experiment, bool]:
        """The (possibly cached) experiment for the request's model, prompts and answers."""
        self.check_limits(request)
        model = self.registry.get(request.model)
        return self.experiments.get(
            model,
            request.clean_prompt,
            request.corrupt_prompt,
            request.target_token,
            request.wrong_token,
        )

    @contextmanager
    def computing(self, synchronous: bool = False) -> Iterator[None]:
        """Hold one of the `max_concurrent_runs` places while computing, then trim the cache;
        the last computation in flight hands the memory freed back to the system. A
        `synchronous` request waits at most `run_wait_s` seconds for a place, then is refused with
        `BusyError` (429 with Retry-After), so that a burst cannot hold every server thread;
        background jobs wait their turn."""
        limit = self.settings.run_wait_s
        if not self._runs.acquire(timeout=limit if synchronous else None):
            retry = max(1, round(limit))
            raise BusyError(
                f"This server is computing {self.settings.max_concurrent_runs} runs already "
                f"(ACTPATCH_MAX_CONCURRENT_RUNS), and none finished within {limit:g} s "
                f"(ACTPATCH_RUN_WAIT_S). Try again in about {retry} s.",
                retry_after_s=retry,
            )
        try:
            with self._active_lock:
                self._active += 1
            try:
                yield
            finally:
                self.experiments.trim()
                with self._active_lock:
                    self._active -= 1
                    idle = self._active == 0
                if idle:
                    memory.release()
        finally:
            self._runs.release()

    # -- patching -----------------------------------------------------------------------------

    def patch(self, request: PatchRequest) -> dict[str, Any]:
        """One patch: the spec's numbers, then the metric, positions and tokens."""
        t0 = time.perf_counter()
        exp, cached = self.experiment(request)
        with self.computing(synchronous=True):
            result = actpatch.patch(
                exp,
                request.layer,
                head=request.head,
                pos=request.pos,
                component=request.component,
                metric=request.metric,
                direction=request.direction,
                top_k=request.top_k,
            )
        out = respond(
            patch_response(result),
            self.registry.name_of(exp.model),
            clean_tokens=exp.str_tokens("clean"),
            corrupt_tokens=exp.str_tokens("corrupt"),
            cached=cached,
            seconds=round(time.perf_counter() - t0, 4),
        )
        return self.history.keep("patch", request.model_dump(exclude_none=True), out)

    def sweep_now(self, request: SweepRequest) -> dict[str, Any]:
        """A sweep in this request's thread, holding a place among the background sweeps."""
        with self.jobs.place():
            return self.sweep(request)

    def sweep(
        self,
        request: SweepRequest,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> dict[str, Any]:
        """Every cell of one component: raw and normalized metric, tokens, positions."""
        experiments, cached = self._sweep_experiments(request)
        name = self.registry.name_of(experiments[0].model)
        # a dataset's length groups on Ray workers, when the server is set to
        workers, ray_address = self.settings.workers, self.settings.ray_address

        last: list[dict[str, Any]] = []

        def partial(snapshot: actpatch.SweepResult) -> None:
            if progress is not None:
                out = respond(snapshot.to_dict(per_pair=False), name, cached=cached)
                last[:] = [out]
                progress(snapshot.values_done or 0, snapshot.values_total or 0, out)

        if request.ablate is not None:
            given = "direction" in request.model_fields_set
            options.check_ablation_direction(request.ablate, request.direction if given else None)
            with self.computing():
                ablated = actpatch.ablate_many(
                    experiments,
                    request.component,
                    request.ablate,
                    request.metric,
                    seed=request.seed,
                    progress=progress,
                    should_stop=should_stop,
                    max_memory=self.settings.max_memory,
                    workers=workers,
                    ray_address=ray_address,
                )
            out = respond(ablated.to_dict(), name, cached=cached)
            return self.history.keep("ablation", request.model_dump(exclude_none=True), out)
        try:
            with self.computing():
                result = actpatch.sweep_many(
                    experiments,
                    request.component,
                    request.metric,
                    request.direction,
                    positions=request.positions,
                    batching=request.batching,
                    progress=progress,
                    should_stop=should_stop,
                    on_partial=partial if progress is not None else None,
                    max_memory=self.settings.max_memory,
                    workers=workers,
                    ray_address=ray_address,
                )
        except actpatch.CancelledError:
            if last:  # cancel keeps what was computed
                self.history.keep(
                    "sweep", request.model_dump(exclude_none=True), last[0], complete=False
                )
            raise
        out = respond(result.to_dict(), name, cached=cached)
        return self.history.keep("sweep", request.model_dump(exclude_none=True), out)

    def _sweep_experiments(self, request: DatasetFields) -> tuple[list[Experiment], bool]:
        """The request's experiments: one (cached) for prompts, one per length group for a
        dataset; refused with the limit named when the dataset is larger than the server's."""
        if request.dataset is None and request.dataset_jsonl is None:
            exp, cached = self.experiment(request)
            return [exp], cached
        from actpatch.datasets import (
            DATASET_SPEC_LIST,
            DATASET_SPECS,
            generated_dataset,
            parse_jsonl,
            spec_numbers,
        )
        from actpatch.patching.experiment import dataset_experiments

        limit = self.settings.max_pairs
        if request.dataset is not None:
            head = request.dataset.partition(":")[0]
            if head not in DATASET_SPECS:
                raise actpatch.InputError(
                    f"Unknown dataset {request.dataset!r}: give one of {DATASET_SPEC_LIST} (a "
                    "seed may follow: 'ioi:12:3'), or send a JSONL file's text as dataset_jsonl "
                    "(the server never reads files a request names).",
                    field="dataset",
                )
            # the core's own hint offers a file's path, which the server never reads
            hint = (
                "After its name give the number of pairs, and a seed if you like: "
                f"'{head}:12' or '{head}:12:3'."
            )
            n, _ = spec_numbers(request.dataset, hint)
            if n > limit:
                raise actpatch.InputError(
                    f"The dataset {request.dataset!r} has {n} pairs, more than this server's "
                    f"limit of {limit} pairs per request (max_pairs, ACTPATCH_MAX_PAIRS). Ask "
                    "for fewer, or sweep it with the CLI (actpatch sweep --dataset).",
                    field="dataset",
                )
            # The MIB tasks keep only answers that are one token for the served model.
            tokenizer = self.registry.get(request.model).tokenizer
            # generated, never a file of that name in the server's folder
            data = generated_dataset(request.dataset, tokenizer=tokenizer)
        else:
            assert request.dataset_jsonl is not None
            data = parse_jsonl(request.dataset_jsonl, name="uploaded", where="dataset_jsonl")
        if len(data) > limit:
            raise actpatch.InputError(
                f"The dataset has {len(data)} pairs, more than this server's limit of {limit} "
                "pairs per request (max_pairs, ACTPATCH_MAX_PAIRS): send fewer pairs.",
                field="dataset",
            )
        model = self.registry.get(request.model)
        return dataset_experiments(model, data), False

    def start_sweep(self, request: SweepRequest) -> Job:
        """Check the request now (bad input answers 422 at once), then sweep in the background."""
        experiments, _ = self._sweep_experiments(request)
        component = get_component(request.component)
        check_metric(request.metric, experiments[0].wrong_ids is not None)
        return self.jobs.submit(
            lambda progress, should_stop: self.sweep(request, progress, should_stop),
            model=self.registry.name_of(experiments[0].model),
            component=component.name,
        )

    # -- attribution patching -----------------------------------------------------------------

    def attribute_now(self, request: AttributeRequest) -> dict[str, Any]:
        """An attribution in this request's thread, holding a place among the background ones."""
        with self.attribution_jobs.place():
            return self.attribute(request)

    def attribute(
        self,
        request: AttributeRequest,
        progress: Progress | None = None,
        should_stop: ShouldStop | None = None,
    ) -> dict[str, Any]:
        """Attribution patching of one component (AtP or AtP*), with the exact sweep if asked."""
        experiments, cached = self._sweep_experiments(request)
        with self.computing():
            result = actpatch.attribute_many(
                experiments,
                request.component,
                request.method,
                request.direction,
                request.metric,
                compare=request.compare,
                verify=request.verify,
                progress=progress,
                should_stop=should_stop,
                max_memory=self.settings.max_memory,
            )
        name = self.registry.name_of(experiments[0].model)
        out = respond(result.to_dict(), name, cached=cached)
        return self.history.keep("attribution", request.model_dump(exclude_none=True), out)

    def start_attribute(self, request: AttributeRequest) -> Job:
        """Check the request now (bad input answers 422 at once), then attribute in the
        background."""
        from actpatch.patching.attribution import check_groups
        from actpatch.patching.gradients import check_backend, check_gradient_metric

        experiments, _ = self._sweep_experiments(request)
        exp = experiments[0]
        component = get_component(request.component)
        if len(experiments) > 1:  # a dataset of several token lengths: one padded batch
            check_groups(experiments, component.name)
        check_gradient_metric(request.metric, exp.wrong_ids is not None)
        check_backend(exp)
        return self.attribution_jobs.submit(
            lambda progress, should_stop: self.attribute(request, progress, should_stop),
            model=self.registry.name_of(exp.model),
            component=component.name,
        )

    # -- tokens -------------------------------------------------------------------------------

    def tokenize(self, request: TokenizeRequest) -> dict[str, Any]:
        """Each given text's tokens, the prompts' alignment, and what a patch would refuse."""
        self.check_limits(request)
        model = self.registry.get(request.model)
        name = self.registry.name_of(model)
        out: dict[str, Any] = {"model": name, "n_ctx": model.n_ctx, "warnings": []}
        prompt_ids: dict[str, list[int]] = {}
        for field in ("clean_prompt", "corrupt_prompt"):
            text = getattr(request, field)
            if text is None:
                continue
            ids = model.to_tokens(text)
            prompt_ids[field] = ids
            out[field] = {"ids": ids, "tokens": model.to_str_tokens(ids), "differing": []}
            if len(ids) > model.n_ctx:
                out["warnings"].append(
                    {
                        "field": field,
                        "message": f"The {field.replace('_', ' ')} is {len(ids)} tokens (with "
                        f"BOS) but {name} reads at most {model.n_ctx}: shorten it.",
                    }
                )
        if len(prompt_ids) == 2:
            clean, corrupt = prompt_ids["clean_prompt"], prompt_ids["corrupt_prompt"]
            alignment = align(clean, corrupt)
            out["alignment"] = alignment.to_dict()
            same = {(c, k) for c, k in alignment.pairs if clean[c] == corrupt[k]}
            out["clean_prompt"]["differing"] = [
                p for p in range(len(clean)) if p not in {c for c, _ in same}
            ]
            out["corrupt_prompt"]["differing"] = [
                p for p in range(len(corrupt)) if p not in {k for _, k in same}
            ]
        for field in ("target_token", "wrong_token"):
            answer = getattr(request, field)
            if answer is None or (answer == "" and field == "wrong_token"):
                continue
            ids = model.to_tokens(answer, prepend_bos=False)
            out[field] = {
                "ids": ids,
                "tokens": model.to_str_tokens(ids),
                "single_token": len(ids) == 1,
            }
            problem = _answer_problem(model, answer, field)
            if problem is not None:
                out["warnings"].append({"field": field, "message": problem})
        return out

    # -- what the server runs -----------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        """The loaded models, the default, notices, and the engine's components and metrics."""
        return {
            "default": self.registry.default,
            "models": [
                {
                    **m.describe(),
                    "name": name,
                    "default": name == self.registry.default,
                    "backend": choose_backend(m),
                }
                for name, m in self.registry.models.items()
            ],
            "notices": self.notices(),
            "components": {
                name: {"axes": list(c.axes), "description": c.description}
                for name, c in COMPONENTS.items()
            },
            "metrics": dict(METRICS),
            "directions": list(DIRECTIONS),
            "direction_descriptions": dict(DIRECTIONS),
            "options": options.catalog(),
        }

    def notices(self) -> list[str]:
        """What the terminal and the page say about how this server runs (fallbacks, exposure,
        a history that could not be used)."""
        problem = self.history.problem
        return [*self.registry.notices, *([problem] if problem else [])]

    def health(self) -> dict[str, Any]:
        """A liveness answer that says what the server runs, and what is wrong if anything is.

        Reads counters only (no lock another request could hold), so it answers at once."""
        problem = self.history.problem
        return {
            "status": "degraded" if problem else "ok",
            "reason": problem,
            "history": self.history.describe(),
            "version": actpatch.__version__,
            "default_model": self.registry.default,
            "models": list(self.registry.models),
            "jobs_running": self.jobs.running,
            "cached_experiments": len(self.experiments),
        }

    def close(self) -> None:
        """Stop background work (the server is shutting down)."""
        self.jobs.shutdown()
        self.attribution_jobs.shutdown()
        self.history.close()

    # -- circuits -----------------------------------------------------------------------------

    def known_roles(self, model: str | None) -> dict[str, Any]:
        """GPT-2 small's known head roles (Wang et al. 2022); empty for other models."""
        from actpatch.known_roles import to_dict

        name = self.registry.name_of(self.registry.get(model))
        return {"model": name, **to_dict(name)}

    def path(self, request: PathRequest) -> dict[str, Any]:
        """Path patching: each sender's effect through the receivers only."""
        from actpatch.known_roles import to_dict
        from actpatch.patching.paths import path_patch

        exp, _ = self.experiment(request)
        with self.computing(synchronous=True):
            result = path_patch(
                exp,
                request.senders,
                request.receivers,
                freeze_mlps=request.freeze_mlps,
                metric=request.metric,
                direction=request.direction,
            )
        name = self.registry.name_of(exp.model)
        out = respond(result.to_dict(), name, known_roles=to_dict(name))
        return self.history.keep("path", request.model_dump(exclude_none=True), out)

    def circuit_edges(self, request: EdgesRequest) -> dict[str, Any]:
        """Edge attribution (EAP or EAP-IG) over the whole graph, strongest edges first."""
        from actpatch.known_roles import to_dict
        from actpatch.patching.edges import edge_attribution

        exp, _ = self.experiment(request)
        with self.computing(synchronous=True):
            result = edge_attribution(
                exp,
                request.method,
                steps=request.steps,
                metric=request.metric,
                direction=request.direction,
                by_pos=request.by_pos,
                verify=request.verify,
                kv=request.kv,
            )
        name = self.registry.name_of(exp.model)
        out = respond(
            result.to_dict(top=request.top),
            name,
            n_layers=exp.model.n_layers,
            n_heads=exp.model.n_heads,
            known_roles=to_dict(name),
        )
        return self.history.keep("edges", request.model_dump(exclude_none=True), out)

    def circuit_evaluate(self, request: EvaluateRequest) -> dict[str, Any]:
        """Faithfulness of a circuit (edges or nodes), or a curve over a ranking's top n."""
        from actpatch.patching.circuit import evaluate, evaluate_mib

        exp, _ = self.experiment(request)
        given = [x is not None for x in (request.edges, request.nodes, request.ranked)]
        if sum(given) != 1:
            raise actpatch.InputError(
                "Give exactly one of edges (a circuit), nodes (a node set) or ranked (edges "
                "best first, for a faithfulness curve).",
                field="edges",
            )
        if request.mib:
            if request.ranked is None:
                raise actpatch.InputError(
                    "mib needs ranked (every edge of the graph) and scores (one per edge).",
                    field="ranked",
                )
            with self.computing(synchronous=True):
                result = evaluate_mib(
                    [exp],
                    request.ranked,
                    request.scores,
                    metric=request.metric,
                    ablation=request.ablation,
                    kv=request.kv,
                )
        else:
            with self.computing(synchronous=True):
                result = evaluate(
                    exp,
                    edges=request.edges,
                    nodes=request.nodes,
                    ranked=request.ranked,
                    sizes=request.sizes,
                    metric=request.metric,
                    ablation=request.ablation,
                    kv=request.kv,
                )
        out = respond(result.to_dict(), self.registry.name_of(exp.model))
        return self.history.keep("evaluation", request.model_dump(exclude_none=True), out)

    def circuit_verify(self, request: VerifyRequest) -> dict[str, Any]:
        """Each edge patched exactly, alone: its effect on the metric."""
        from actpatch.patching.circuit import verify_edges

        exp, _ = self.experiment(request)
        with self.computing(synchronous=True):
            result = verify_edges(
                exp,
                request.edges,
                metric=request.metric,
                direction=request.direction,
                kv=request.kv,
            )
        return respond(result.to_dict(), self.registry.name_of(exp.model))


def respond(result: dict[str, Any], model: str, **fields: Any) -> dict[str, Any]:
    """A result (its `to_dict()`) as the API answers it: its model named `model`, the name
    clients use for it (the registry's, which may differ from the loaded model's own name the
    engine wrote), then what the server adds (`fields`: cached, timing, known roles, ...)."""
    return {**result, "model": model, **fields}


def _answer_problem(model: LoadedModel, answer: str, field: str) -> str | None:
    """The engine's message for an answer it would refuse (not one token), else None."""
    try:
        # The engine's own check, so the live warning says exactly what a patch would say.
        answer_id(model, answer, field)
    except actpatch.InputError as exc:
        return exc.message
    return None
