"""The models a server runs, and the experiments (with their cached runs) it keeps warm.

The operator decides which models are loaded (settings or `actpatch serve --model`); a request
may only name one of them. Loading the default model may fall back to the bundled demo model
when its weights cannot be had: never silently, the registry keeps a notice that the terminal
and the page show.

`ExperimentCache` keeps the most recently used experiments, at most `size` of them holding at
most `max_bytes` of cached runs. An `Experiment` caches its clean and corrupted runs, so a
second patch or sweep on the same prompts costs only the patched forward passes. The engine
does not register hooks on the shared model (a patched run is a function of cached tensors), so
one experiment may serve several requests at once. Building an experiment (tokenizing and
checking the prompts) happens outside the cache's lock: a slow or refused request never holds
up another's lookup.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from actpatch.errors import ActpatchError, InputError, ModelUnavailableError
from actpatch.models import LoadedModel, load_model
from actpatch.patching import Experiment

from .settings import Settings


@dataclass
class ModelRegistry:
    """The loaded models by the name clients use, the default one, and notices about loading.

    The names are the keys of `models`: a loaded model's own name (hub name, folder path,
    `demo`), or whatever key a caller of `create_app(models=...)` chose.
    """

    models: dict[str, LoadedModel]
    default: str
    notices: list[str] = field(default_factory=list)

    @classmethod
    def from_models(cls, models: dict[str, LoadedModel], settings: Settings) -> ModelRegistry:
        """A registry of preloaded models (tests, embedding); the default is settings.model if
        loaded, else the first."""
        if not models:
            raise ModelUnavailableError("No models given: give at least one.", field="model")
        default = settings.model if settings.model in models else next(iter(models))
        return cls(dict(models), default)

    @classmethod
    def load(cls, settings: Settings) -> ModelRegistry:
        """Load the models the settings name, falling back (loudly) to settings.fallback_model."""
        notices: list[str] = []
        where: dict[str, Any] = {
            "device": settings.device,
            "dtype": settings.dtype,
            "device_map": settings.device_map,
            "cuda_graphs": settings.cuda_graphs,
        }
        try:
            primary = load_model(settings.model, **where)
        except ModelUnavailableError as exc:
            fallback = settings.fallback_model
            if not fallback or fallback == settings.model:
                raise
            try:
                primary = load_model(fallback, **where)
            except ActpatchError as fallback_exc:
                raise ModelUnavailableError(
                    f"{exc.message}\n\nThe fallback model {fallback!r} could not be loaded "
                    f"either: {fallback_exc.message}",
                    field="model",
                ) from None
            notices.append(
                f"Model {settings.model!r} could not be loaded, so this server runs "
                f"{primary.name!r} instead: every result here is computed on {primary.name}, not "
                f"on {settings.model}. Why: {exc.reason} To run {settings.model}, download it "
                "once with network access (it then loads offline), or restart the server with "
                "--model and a local Hugging Face folder."
            )
        models = {primary.name: primary}
        for spec in settings.extra_models:
            extra = load_model(spec, **where)
            models.setdefault(extra.name, extra)
        return cls(models, primary.name, notices)

    def name_of(self, model: LoadedModel) -> str:
        """The name clients use for `model` (its key here; usually its own name)."""
        for name, loaded in self.models.items():
            if loaded is model:
                return name
        return model.name

    def get(self, name: str | None) -> LoadedModel:
        """The model called `name` (the default when None); a teaching error for others."""
        if name is None or name == "":
            return self.models[self.default]
        if name not in self.models:
            raise InputError(
                f"This server does not run a model called {name!r}. It runs: "
                f"{', '.join(repr(n) for n in self.models)} (default {self.default!r}); leave "
                "model out for the default. The server never loads models named by a request: "
                "its operator chooses them (actpatch serve --model).",
                field="model",
            )
        return self.models[name]


TextOrList = str | Sequence[str]


def _key(value: TextOrList | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return (value,) if isinstance(value, str) else tuple(value)


class ExperimentCache:
    """The most recently used experiments: at most `size`, holding at most `max_bytes`."""

    def __init__(self, size: int, max_bytes: int | None = None) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[object, ...], Experiment] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes held by the kept experiments' cached runs."""
        return sum(exp.nbytes for exp in list(self._items.values()))

    def get(
        self,
        model: LoadedModel,
        clean: TextOrList,
        corrupt: TextOrList,
        target: TextOrList,
        wrong: TextOrList | None = None,
    ) -> tuple[Experiment, bool]:
        """The experiment on these prompts, and whether it (with its cached runs) was reused.

        Building an experiment only tokenizes and checks the input (raising `InputError` for
        bad input, which is not cached); its runs are computed on first use. Call `trim()`
        once they are, so the cache stays within its bytes.
        """
        if wrong == "":
            wrong = None
        key = (id(model), model.name, _key(clean), _key(corrupt), _key(target), _key(wrong))
        with self._lock:
            found = self._reuse(key)
        if found is not None:
            return found, True
        experiment = Experiment(model, clean=clean, corrupt=corrupt, target=target, wrong=wrong)
        with self._lock:
            found = self._reuse(key)  # another request built the same one meanwhile
            if found is not None:
                return found, True
            self._items[key] = experiment
            self.misses += 1
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return experiment, False

    def _reuse(self, key: tuple[object, ...]) -> Experiment | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return found

    def trim(self) -> None:
        """Forget experiments until the rest hold at most `max_bytes`: first any that alone
        holds more, then the least recently used. A request still using one finishes as usual.
        """
        if self.max_bytes is None:
            return
        with self._lock:
            items = list(self._items.items())
        sizes = {key: exp.nbytes for key, exp in items}  # outside the lock: never waits on it
        total = sum(sizes.values())
        too_big = [key for key, size in sizes.items() if size > self.max_bytes]
        oldest_first = too_big + [key for key, _ in items if key not in too_big]
        with self._lock:
            for key in oldest_first:
                if total <= self.max_bytes:
                    break
                if self._items.pop(key, None) is not None:
                    total -= sizes[key]
