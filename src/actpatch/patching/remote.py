"""What runs in a worker: the model loaded again by name, a length group as data, the actor.

A Ray worker (`actpatch.patching.workers`) never receives weights: it loads the model from
what it was loaded from here (`ModelSpec`), checks it holds the same weights (`fingerprint`),
and receives each length group as plain data (`GroupRecipe`), from which it rebuilds the
experiment beside its own copy of the model. `Worker` is the actor's body: it runs one group at
a time and answers the driver's questions (how far, stop) while it computes; with each result
it sends the group's guardrail facts (`guardrails.Facts`), so the driver warns as one process
would without running the group again.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from actpatch.errors import InputError
from actpatch.models import LoadedModel, load_model
from actpatch.patching import guardrails
from actpatch.patching.experiment import Experiment


@dataclass(frozen=True)
class ModelSpec:
    """What another process needs to load the same model: what `load_model` was given."""

    load_as: str  # the hub name, the absolute path of a folder or GGUF file, `demo`, ...
    name: str  # the model's name here (a result names its model with it)
    device: str  # "cpu" or "cuda": a worker's GPU is the one Ray gives it
    dtype: str
    device_map: dict[str, Any] | None = None  # a model spread over devices, spread alike
    cuda_graphs: bool = False

    @classmethod
    def of(cls, model: LoadedModel) -> ModelSpec:
        """How `model` was loaded; a teaching error for a model built in this process."""
        load_as = model.name
        if model.source in ("local folder", "GGUF file"):
            path = Path(model.name).expanduser()
            if not path.exists():
                raise InputError(_not_reloadable(model), field="workers")
            load_as = str(path.resolve())
        elif model.source not in ("hub", "bundled") and not model.source.startswith("package "):
            raise InputError(_not_reloadable(model), field="workers")
        dtype = str(model.dtype).removeprefix("torch.")
        device = model.device.type
        return cls(load_as, model.name, device, dtype, model.device_map, model.cuda_graphs)

    def load(self) -> LoadedModel:
        """The model, loaded in this process, under its name in the driver's."""
        loaded = load_model(
            self.load_as,
            device=self.device,
            dtype=self.dtype,
            device_map=self.device_map,
            cuda_graphs=self.cuda_graphs,
        )
        return dataclasses.replace(loaded, name=self.name)


def _not_reloadable(model: LoadedModel) -> str:
    return (
        f"Model {model.name!r} ({model.source}) cannot be loaded again by name, and each worker "
        "loads its own copy: save it (`model.hf_model.save_pretrained(folder)` and its "
        "tokenizer) and load that folder, or run in this process."
    )


def fingerprint(model: LoadedModel) -> tuple[str, int, str]:
    """A cheap check that two processes hold the same weights: the dtype, the number of
    parameters, and the sum of a sample of every tensor's entries (as exact hex), over the
    weights as loaded (`LoadedModel.weights`: a bridge built since adds copies, not changes)."""
    total = 0.0
    with torch.no_grad():
        for p in model.weights:
            flat = p.detach().reshape(-1)
            total += float(flat[:: max(1, flat.numel() // 256)].double().sum())
    return str(model.dtype), model.n_params, total.hex()


@dataclass(frozen=True)
class GroupRecipe:
    """One experiment's pairs as plain data, to rebuild it beside another copy of the model.

    Token ids travel unpadded, with each pair's left-padding count (`pad`, None for a group of
    one length): the rebuilt experiment pads them again, as `experiment.padded` did."""

    clean: list[str]
    corrupt: list[str]
    target: list[str]
    wrong: list[str] | None
    backend: str
    clean_ids: list[list[int]]
    corrupt_ids: list[list[int]]
    pair_index: list[int]
    pad: list[int] | None
    positions: list[dict[str, list[int]]] | None
    corrupt_positions: list[dict[str, list[int]]] | None

    @classmethod
    def of(cls, exp: Experiment) -> GroupRecipe:
        counts = exp.pad.tolist() if exp.pad is not None else [0] * exp.n_pairs

        def unpadded(tokens: torch.Tensor) -> list[list[int]]:
            return [row[n:] for row, n in zip(tokens.tolist(), counts, strict=True)]

        def table(which: str) -> list[dict[str, list[int]]] | None:
            if exp.roles is None:
                return None
            spans = getattr(exp.roles, which)
            return [
                {
                    role: [q - n for q in span]
                    for role, span in zip(exp.roles.names, pair, strict=True)
                }
                for pair, n in zip(spans, counts, strict=True)
            ]

        return cls(
            clean=list(exp.clean_prompts),
            corrupt=list(exp.corrupt_prompts),
            target=list(exp.target_strs),
            wrong=list(exp.wrong_strs) if exp.wrong_strs is not None else None,
            # "auto" where auto fell back to the bridge, so the rebuilt one says why as well
            backend="auto" if exp.fallback_reason is not None else exp.backend,
            clean_ids=unpadded(exp.clean_tokens),
            corrupt_ids=unpadded(exp.corrupt_tokens),
            pair_index=list(exp.pair_index),
            pad=counts if exp.pad is not None else None,
            positions=table("clean"),
            corrupt_positions=table("corrupt"),
        )

    def build(self, model: LoadedModel) -> Experiment:
        """The experiment again, on `model` (the worker's copy)."""
        return Experiment(
            model,
            self.clean,
            self.corrupt,
            self.target,
            self.wrong,
            backend=self.backend,
            positions=self.positions,
            corrupt_positions=self.corrupt_positions,
            pair_index=self.pair_index,
            pad=self.pad is not None,
            token_ids=(self.clean_ids, self.corrupt_ids),
        )


# -- the worker (a Ray actor) --------------------------------------------------------------------


class Worker:
    """A Ray actor's body: the model loaded once, then one length group at a time.

    It runs with two threads of control (`max_concurrency=2`): `run` computes while `status`
    and `stop` answer the driver."""

    def __init__(self, spec: ModelSpec, threads: int) -> None:
        torch.set_num_threads(threads)
        self.model: LoadedModel | None = None
        self.load_error: Exception | None = None
        try:
            self.model = spec.load()
        except Exception as exc:  # said by `fingerprint`, the driver's first question
            self.load_error = exc
        self.state = (-1, 0, 0)  # (task, done, total): how far the running task is
        self.stopped: set[int] = set()

    def fingerprint(self) -> tuple[str, int, str]:
        if self.model is None:
            raise self.load_error or RuntimeError("the model did not load")
        return fingerprint(self.model)

    def run(
        self, task: int, method: Callable[..., Any], recipe: GroupRecipe, options: dict[str, Any]
    ) -> tuple[Any, tuple[int, int], guardrails.Facts]:
        """`method(experiment, **options)` on the group, reporting progress and stopping when
        the driver says so: its result, its last progress (done, total), and the group's
        guardrail facts (read from the runs the method left cached, so that the driver's
        warnings need no run of its own)."""
        if self.model is None:  # a replacement worker that could not load the model
            raise self.load_error or RuntimeError("the model did not load")
        exp = recipe.build(self.model)
        self.state = (task, 0, 0)
        call = dict(options)
        takes = inspect.signature(method).parameters

        def progress(done: int, total: int) -> None:
            self.state = (task, done, total)

        if "progress" in takes:
            call["progress"] = progress
        if "should_stop" in takes:
            call["should_stop"] = lambda: task in self.stopped
        result = method(exp, **call)
        return result, self.state[1:], guardrails.facts(exp)

    def status(self) -> tuple[int, int, int]:
        return self.state

    def stop(self, task: int) -> None:
        self.stopped.add(task)


__all__ = ["GroupRecipe", "ModelSpec", "Worker", "fingerprint"]
