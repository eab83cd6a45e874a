"""Errors as answers: every failure is a 4xx whose message names the field and how to fix it.

Bodies are `{"detail": message, "field": name}` (plus `errors` when several fields are at
fault). `InputError`, request validation and bodies that cannot be decoded answer 422, an
unknown job 404, a cancelled sweep 409, a body over the size limit 413, a full job queue 429
(with `Retry-After`), a model that cannot be had or a run history that cannot be used now 503
(with `Retry-After` when another process holds its lock). Anything else is a bug: it is logged and
answered with a 500 that says so, never with a stack trace.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actpatch.errors import ActpatchError, CancelledError, InputError, ModelUnavailableError
from actpatch.history import HistoryBusyError, HistoryError

logger = logging.getLogger("actpatch.api")

EXAMPLE_BODY = (
    '{"clean_prompt": "Paris is the capital of", "corrupt_prompt": "Berlin is the capital of", '
    '"target_token": " France", "layer": 0, "head": 0}'
)


class NotFoundError(ActpatchError):
    """A job (or other resource) the client named does not exist."""


class BusyError(ActpatchError):
    """The server has as much queued work as it takes: try again in `retry_after_s` seconds."""

    def __init__(self, message: str, *, retry_after_s: int, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.retry_after_s = retry_after_s


def _body(detail: str, field: str | None, errors: list[dict[str, Any]] | None = None) -> dict:
    body: dict[str, Any] = {"detail": detail, "field": field}
    if errors is not None:
        body["errors"] = errors
    return body


def _status(exc: ActpatchError) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ModelUnavailableError | HistoryError):
        return 503
    if isinstance(exc, CancelledError):
        return 409
    if isinstance(exc, BusyError):
        return 429
    return 422  # InputError and any other mistake in the request


def _field(loc: tuple[Any, ...] | list[Any]) -> str | None:
    """The request field an error location points at: ('body', 'layer') -> 'layer'."""
    names = [str(part) for part in loc[1:] if isinstance(part, str)]
    return names[0] if names else None


def _describe(value: Any) -> str:
    try:
        text = repr(value)
    except RecursionError:  # a list nested nearly as deep as JSON's reader goes
        return "a value nested too deeply to show"
    return text if len(text) <= 60 else text[:57] + "..."


def explain(error: dict[str, Any]) -> tuple[str | None, str]:
    """A pydantic validation error as (field, message that says how to fix it)."""
    kind, ctx = error.get("type", ""), error.get("ctx") or {}
    loc = tuple(error.get("loc", ()))
    field = _field(loc)
    got = _describe(error.get("input"))
    name = field or "the request body"
    if kind == "json_invalid":
        return "body", (
            f"The request body is not valid JSON ({ctx.get('error', 'decode error')}). Send a "
            f"JSON object, e.g. {EXAMPLE_BODY}."
        )
    if field is None and kind in ("missing", "model_attributes_type", "dict_type"):
        return "body", (
            "The request body must be a JSON object (with Content-Type: application/json), "
            f"e.g. {EXAMPLE_BODY}."
        )
    if kind == "missing":
        return field, f"{field} is required: add it to the JSON body."
    if kind == "extra_forbidden":
        return field, (
            f"Unknown field {field!r}: this route does not take it. Check its spelling against "
            "the route's schema at /docs."
        )
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return field, f"{name} must be a whole number, e.g. 8 (got {got})."
    if kind == "string_type":
        return field, f"{name} must be a string in quotes, or a list of strings (got {got})."
    if kind == "list_type":  # a list-only field (a union with str reports string_type first)
        value = error.get("input")
        example = (
            json.dumps([part.strip() for part in value.split(",")])
            if isinstance(value, str) and "," in value
            else '["...", "..."]'
        )
        return field, f"{name} must be a JSON list, e.g. {example} (got {got})."
    if kind == "string_too_long":
        return field, (
            f"{name} is too long: the server takes at most {ctx.get('max_length')} characters. "
            "Shorten it."
        )
    if kind == "value_error" and isinstance(ctx.get("error"), ActpatchError):
        # the engine's own check, run by a validator (which may name the field itself)
        return ctx["error"].field or field, ctx["error"].message
    if kind in ("bool_type", "bool_parsing"):
        return (
            field,
            f"{name} must be true or false, JSON's own booleans without quotes (got {got}).",
        )
    if kind in ("float_type", "float_parsing"):
        return field, f"{name} must be a number, e.g. 0.5 (got {got})."
    if kind == "literal_error":
        return field, f"{name} must be one of {ctx.get('expected')} (got {got})."
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        bound = {k: v for k, v in ctx.items() if k in ("ge", "le", "gt", "lt")}
        words = {"ge": "at least", "le": "at most", "gt": "more than", "lt": "less than"}
        limits = " and ".join(f"{words[k]} {v}" for k, v in bound.items())
        return field, f"{name} must be {limits} (got {got})."
    return field, f"{name}: {error.get('msg', 'invalid value')} (got {got})."


async def validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 for a body pydantic refused, naming each field at fault and how to fix it."""
    assert isinstance(exc, RequestValidationError)
    seen: dict[str | None, str] = {}
    for error in exc.errors():
        field, message = explain(error)
        seen.setdefault(field, message)  # a union field reports once, not once per member
    errors = [{"field": f, "message": m} for f, m in seen.items()]
    first_field, first = next(iter(seen.items()))
    detail = first if len(errors) == 1 else " ".join(m for m in seen.values())
    return JSONResponse(status_code=422, content=_body(detail, first_field, errors))


async def actpatch_error(request: Request, exc: Exception) -> JSONResponse:
    """The teaching errors: 422 for input, 503 for an unavailable model, 404, 409, 429."""
    assert isinstance(exc, ActpatchError)
    headers = None
    if isinstance(exc, BusyError | HistoryBusyError):
        headers = {"Retry-After": str(exc.retry_after_s)}
    return JSONResponse(
        status_code=_status(exc), content=_body(exc.message, exc.field), headers=headers
    )


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) in the same shape as ours."""
    assert isinstance(exc, StarletteHTTPException)
    detail = str(exc.detail)
    if exc.status_code == 400 and isinstance(exc.__cause__, RecursionError):
        # FastAPI's answer to a body nested deeper than JSON's reader goes: the usual 422.
        return JSONResponse(
            status_code=422,
            content=_body(
                "The request body is nested too deeply to read (lists or objects inside each "
                f"other hundreds of levels deep). Send a flat JSON object, e.g. {EXAMPLE_BODY}.",
                "body",
            ),
        )
    if exc.status_code == 400 and isinstance(exc.__cause__, ValueError):
        # FastAPI's answer to a body it could not decode (not UTF-8): the usual 422 instead.
        return JSONResponse(
            status_code=422,
            content=_body(
                f"The request body could not be decoded ({exc.__cause__.__class__.__name__}): "
                f"send a JSON object encoded as UTF-8, e.g. {EXAMPLE_BODY}.",
                "body",
            ),
        )
    if exc.status_code == 404:
        detail = f"No route {request.url.path!r}. The API's routes are listed at /docs."
    headers = exc.headers
    if exc.status_code == 405:
        allowed = _allowed_methods(request)
        headers = {**(exc.headers or {}), "Allow": ", ".join(allowed)}
        detail = (
            f"{request.method} is not allowed on {request.url.path!r}: it takes "
            f"{', '.join(allowed)}. See /docs for what each method does."
        )
    field = "body" if exc.status_code == 413 else None  # limits.BodyTooLarge
    return JSONResponse(status_code=exc.status_code, content=_body(detail, field), headers=headers)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route takes at this path (Starlette's 405 names only the first
    matching route's, e.g. GET for /runs/{id}, which takes DELETE and PATCH too)."""
    from fastapi import routing

    walk = getattr(routing, "iter_route_contexts", None)  # FastAPI's flat view of the routes
    routes = list(walk(request.app.routes)) if walk is not None else request.app.routes
    path = request.scope.get("path", "")
    methods: set[str] = set()
    for route in routes:
        regex, taken = getattr(route, "path_regex", None), getattr(route, "methods", None)
        if regex is not None and taken and regex.match(path):
            methods |= set(taken)
    return sorted(methods)


def _internal_error_body(exc: Exception) -> dict[str, Any]:
    detail = (
        f"Internal error ({type(exc).__name__}): {str(exc)[:300]}. This is a bug in actpatch, "
        "not in your request: please report it with the request body."
    )
    return _body(detail, None)


class CatchAll:
    """ASGI middleware: an unexpected exception is logged here and answered as JSON (500).

    Starlette's own last-resort handler answers and then re-raises; this one answers and stops,
    so a bug in one request never takes anything else down and never shows a stack trace.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_and_note(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as exc:
            logger.exception("internal error on %s %s", scope.get("method"), scope.get("path"))
            if started:  # the answer is half sent: nothing better to do than to stop
                return
            response = JSONResponse(status_code=500, content=_internal_error_body(exc))
            await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Register the handlers that turn every exception into a teaching JSON answer."""
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ActpatchError, actpatch_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_middleware(CatchAll)


__all__ = ["BusyError", "CatchAll", "InputError", "NotFoundError", "explain", "install"]
