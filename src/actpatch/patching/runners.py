"""What runs a model for the engine: the fast path or TransformerLens's bridge, built once each.

A runner turns a `LoadedModel`'s weights into runs the engine can start anywhere (the fast
path, `actpatch.arch`: one forward for every family it covers) or into batched hook runs (the
generic path, `patching.bridge`). Building
one reads every weight, so each model's runners are built once and kept here, keyed by the
model object (the model layer knows nothing of the engine).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from actpatch.errors import InputError
from actpatch.models import LoadedModel
from actpatch.patching import options

BACKENDS = tuple(b for b in options.BACKENDS if b != "auto")  # what "auto" picks from

_runners: weakref.WeakKeyDictionary[LoadedModel, dict[str, Any]] = weakref.WeakKeyDictionary()
_lock = threading.RLock()  # reentrant: building a bridge runner builds the bridge under it


def fast_path_problem(model: LoadedModel) -> str | None:
    """None if the fast path can run `model` exactly, else the reason it cannot."""
    from actpatch.arch import supports

    return supports(model.hf_model)


def choose_backend(model: LoadedModel, backend: str = "auto") -> str:
    """The backend to use: the fast path when it covers the model (for "auto"), else the bridge."""
    if backend == "auto":
        return "fast" if fast_path_problem(model) is None else "bridge"
    if backend not in BACKENDS:
        raise InputError(
            f"Unknown backend {backend!r}: choose 'auto', 'fast' (the engine's own forward "
            "pass) or 'bridge' (any model TransformerLens can wrap).",
            field="backend",
        )
    if backend == "fast":
        problem = fast_path_problem(model)
        if problem is not None:
            raise InputError(
                f"{model.name} cannot run on the fast path: {problem}. Use the bridge backend "
                "(or auto, which picks it).",
                field="backend",
            )
    return backend


def runner(model: LoadedModel, backend: str) -> Any:
    """The model's runner for `backend` ("fast" or "bridge"), built on first use."""
    import torch

    # Built outside inference mode even when first asked for inside it (a cached run is), so
    # that what the runner derives from the weights can later serve a run with gradients.
    with _lock, torch.inference_mode(False):
        built = _runners.setdefault(model, {})
        if backend not in built:
            if backend == "fast":
                from actpatch.arch import load

                built[backend] = load(model.hf_model)
            else:
                from actpatch.patching.bridge import BridgeRunner

                built[backend] = BridgeRunner(model)
        return built[backend]
