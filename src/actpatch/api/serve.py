"""`actpatch serve`: load the model, say which one, and run the server with uvicorn."""

from __future__ import annotations

import sys
from typing import Any

from actpatch.errors import ActpatchError
from actpatch.models import requested_model

from .app import create_app
from .security import check_token, exposure
from .settings import Settings


def _say(message: str) -> None:
    """A line for the operator's terminal (stderr, so it is never mixed with data)."""
    sys.stderr.write(f"actpatch: {message}\n")
    sys.stderr.flush()


def _port_taken(host: str, port: int) -> str | None:
    """Why (host, port) cannot be listened on, or None when it can (tried by binding)."""
    import errno
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} is already in use"
            return exc.strerror or str(exc)
    return None


def serve(
    model: str | None = None,
    host: str | None = None,
    port: int | None = None,
    *,
    device: str | None = None,
    dtype: str | None = None,
    max_memory: str | None = None,
    device_map: str | None = None,
    cuda_graphs: bool = False,
) -> None:
    """Load `model` (default ACTPATCH_MODEL, else GPT-2 small) and serve the page and the API.

    `host` and `port` default to the settings (ACTPATCH_HOST, ACTPATCH_PORT, else 127.0.0.1 and
    8000). When no model was asked for and GPT-2 small cannot be had, the bundled demo model is
    served instead, and the terminal and the page say so. A model asked for explicitly
    (`--model` or ACTPATCH_MODEL) that cannot be loaded stops the server with the reason and
    the fix.
    """
    import uvicorn

    given = {
        "model": model,
        "host": host,
        "port": port,
        "device": device,
        "dtype": dtype,
        "max_memory": max_memory,
        "device_map": device_map,
        "cuda_graphs": cuda_graphs or None,
    }
    overrides: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if model is not None or requested_model() is not None:
        overrides["fallback_model"] = None  # a model asked for by name is never swapped
    settings = Settings(**overrides)
    taken = _port_taken(settings.host, settings.port)
    if taken is not None:  # before loading the model: say it at once, not after
        _say(
            f"cannot serve at http://{settings.host}:{settings.port}: {taken}. Another server "
            "(perhaps another actpatch) holds that port: stop it, or choose another port with "
            "--port N (`make run PORT=N`, or ACTPATCH_PORT)."
        )
        raise SystemExit(1)
    try:
        check_token(settings)  # before loading: refuse a token clients cannot send at once
        open_warning = exposure(settings)  # and an open server
        _say(f"loading {settings.model} ...")
        app = create_app(settings)
    except ActpatchError as exc:
        _say(exc.message)
        raise SystemExit(1) from None
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)
    workbench = app.state.workbench
    if open_warning is not None:
        workbench.registry.notices.append(open_warning)  # the page shows it too
    for notice in workbench.notices():  # a model fallback, exposure, a history left aside
        _say(f"WARNING: {notice}")
    for name, loaded in workbench.registry.models.items():
        shape = f"{loaded.n_layers} layers x {loaded.n_heads} heads"
        _say(f"model {name} ({loaded.source}, {shape})")
    where = f"http://{settings.host}:{settings.port}"
    _say(f"serving {workbench.registry.default} at {where} (API docs at /docs)")
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
