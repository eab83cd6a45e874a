"""Every status a route can answer, documented in the OpenAPI schema (all as `ErrorResponse`).

A route lists its own statuses with `documented(...)`; the statuses every route can answer
(a refused Host header, a missing API token) are added to each. A client, or a fuzzer reading
the schema, never meets a status the schema does not name, except 500, which is a bug.
"""

from __future__ import annotations

from typing import Any

from .schemas import ErrorResponse

WHY = {
    400: "The Host header names a host this server does not answer to (ACTPATCH_ALLOWED_HOSTS)",
    401: "The server has an API token (ACTPATCH_API_TOKEN) and the request did not carry it",
    404: "No such sweep job or run (it never existed, or was forgotten or deleted)",
    413: "The request body is larger than the server reads (ACTPATCH_MAX_BODY_BYTES)",
    422: "Bad input (body, query or path): the field at fault and how to fix it",
    429: "As many sweeps (or attributions) are queued or running as the server takes; "
    "Retry-After says when to try again",
    503: "The model cannot be had, or the run history cannot be used now (busy: Retry-After says "
    "when to try again)",
}
EVERY_ROUTE = (400, 401)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until a place in the queue (or the history's lock) is likely free.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route that can answer `statuses` (and those every route can)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*EVERY_ROUTE, *statuses}):
        out[status] = {"model": ErrorResponse, "description": WHY[status]}
        if status in (429, 503):
            out[status]["headers"] = RETRY_AFTER
    return out


# What a route that reads a JSON body and runs the model can answer.
WITH_BODY = documented(413, 422, 503)
# ... and one whose work counts against its kind's job limit (POST /sweep, /attribute).
COMPUTE_LIMITED = documented(413, 422, 429, 503)
