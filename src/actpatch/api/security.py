"""Who may talk to the server, and what a browser may do with its answers.

Three ASGI middlewares and one start-up check, all driven by the settings:

- `HostCheck`: a request must be addressed (its `Host` header) to a name this server answers
  to: localhost, 127.0.0.1, [::1], the address it binds, and the operator's `allowed_hosts`.
  A web page elsewhere that re-points its own name at 127.0.0.1 (DNS rebinding) still sends its
  own name as Host, and is refused with 400.
- `TokenCheck`: when `api_token` is set, every request carries it, as `Authorization: Bearer
  TOKEN` or as the password of HTTP Basic authentication (which a browser asks for once, then
  sends with the page's own requests); others get 401.
- `SecurityHeaders`: every answer says nosniff, no framing, no referrer, and a
  Content-Security-Policy under which a page loads scripts, styles, images, fonts and data from
  this origin only (`CSP` says what each directive allows and why).
- `exposure(settings)`: serving on a non-loopback address needs a token, or `allow_open`, in
  which case it returns the warning that the terminal and the page show.
- `check_token(settings)`: a token must be one every client can send as `Authorization: Bearer
  TOKEN` (the container's health check does): printable ASCII without spaces, at least
  `MIN_TOKEN_CHARS` long. Any other is refused at start, saying why, never shown.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from actpatch.errors import ActpatchError

from .settings import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
MIN_TOKEN_CHARS = 16
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")

# Everything from this origin only. Styles also allow inline `style` attributes and <style>
# elements: Plotly.js writes its own (a <style> sheet and style attributes on the SVG it
# draws), and so does ReDoc; an injected style cannot run code. Images allow data: URLs (the
# page's icon, Swagger UI's and Plotly's icons are data: URLs: they are inside the page, not
# fetched). ReDoc runs its search index in a worker it builds from a blob: URL of its own code.
CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class ExposureError(ActpatchError):
    """The server would listen on the network without a token and nobody said it may."""


class TokenError(ActpatchError):
    """The API token is one clients could not send, or too short to keep anyone out."""


def check_token(settings: Settings) -> None:
    """Refuse (`TokenError`) an API token that cannot be sent as a Bearer token, or a short one.

    An HTTP header drops spaces at its ends and many clients send only ASCII in it: a token with
    either worked only as a browser's Basic password, never through `Authorization: Bearer`."""
    if settings.api_token is None:
        return
    token = settings.api_token.get_secret_value()
    if token != token.strip():
        problem = "it begins or ends with a space (or another blank), which HTTP drops"
    elif not all("!" <= c <= "~" for c in token):
        problem = (
            "it holds a space, a control character or a character outside ASCII, which not "
            "every client can send in a header"
        )
    elif len(token) < MIN_TOKEN_CHARS:
        problem = (
            f"it is {len(token)} characters long, short enough to guess: use at least "
            f"{MIN_TOKEN_CHARS}"
        )
    else:
        return
    raise TokenError(
        f"ACTPATCH_API_TOKEN cannot be used: {problem}. Clients send the token as "
        "'Authorization: Bearer TOKEN' (the container's health check does too), so it must be "
        f"at least {MIN_TOKEN_CHARS} printable ASCII characters without spaces; make one with "
        "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'.",
        field="api_token",
    )


def _host_name(value: str) -> str:
    """The name part of a Host header or a bind address, lower-case: '[::1]:8000' -> '[::1]'."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") > 1:  # a bare IPv6 address, as a bind address is written
        return f"[{value}]"
    return value.split(":", 1)[0].rstrip(".")


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    name = _host_name(host).strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any address


def allowed_hosts(settings: Settings) -> set[str]:
    """The Host names requests may be addressed to ('*' among them: any)."""
    names = set(LOOPBACK_NAMES) | {_host_name(h) for h in settings.allowed_hosts}
    if _host_name(settings.host) not in WILDCARD_BINDS:
        names.add(_host_name(settings.host))
    return names


def exposure(settings: Settings) -> str | None:
    """None when the server is safe where it listens; a warning when it listens openly.

    Raises `ExposureError` when it would listen on a non-loopback address with neither a token
    nor `allow_open`.
    """
    if is_loopback(settings.host) or settings.api_token is not None:
        return None
    if not settings.allow_open:
        raise ExposureError(
            f"Refusing to serve on {settings.host}: that address is reachable from other "
            "machines, and without a token anyone who reaches it could run the model. Set a "
            "token (ACTPATCH_API_TOKEN=a-long-random-string; clients send it as 'Authorization: "
            "Bearer ...', browsers ask for it as a password), or serve on 127.0.0.1, or set "
            "ACTPATCH_ALLOW_OPEN=true to serve it open anyway.",
            field="host",
        )
    return (
        f"This server listens on {settings.host} without a token (ACTPATCH_ALLOW_OPEN): anyone "
        "who can reach its port can use it. Set ACTPATCH_API_TOKEN to require a token."
    )


def _refuse(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail, "field": None}, status_code=status, headers=headers)


class HostCheck:
    """Refuse (400) requests addressed to a host name this server does not answer to."""

    def __init__(self, app: ASGIApp, allowed: set[str]) -> None:
        self.app = app
        self.allowed = allowed
        self.any = "*" in allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.any:
            await self.app(scope, receive, send)
            return
        host = _host_name(Headers(scope=scope).get("host", ""))
        if host in self.allowed:
            await self.app(scope, receive, send)
            return
        names = ", ".join(sorted(self.allowed))
        detail = (
            f"This server does not answer to the host name {host!r} (the request's Host "
            f"header); it answers to {names}. If {host!r} is a name of this server, add it to "
            f"ACTPATCH_ALLOWED_HOSTS (e.g. ACTPATCH_ALLOWED_HOSTS='[\"{host}\"]')."
        )
        if not host:
            detail = f"The request has no Host header: send one (this server answers to {names})."
        await _refuse(400, detail)(scope, receive, send)


class TokenCheck:
    """Refuse (401) requests that do not carry the server's API token."""

    # Two challenges, one header each (browsers read one scheme per header): API clients
    # send a Bearer token; a browser asks its user for the Basic password.
    CHALLENGES = ('Bearer realm="actpatch"', 'Basic realm="actpatch", charset="UTF-8"')

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    def _carried(self, authorization: str) -> bytes | None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return value.strip().encode()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            return decoded.partition(b":")[2]  # user:password; the user name is not checked
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carried = self._carried(Headers(scope=scope).get("authorization", ""))
        if carried is not None and hmac.compare_digest(carried, self.token):
            await self.app(scope, receive, send)
            return
        detail = (
            "This server needs its API token: send 'Authorization: Bearer TOKEN' (a browser "
            "asks for it as the password, any user name). The operator set it with "
            "ACTPATCH_API_TOKEN."
            if carried is None
            else "Wrong API token: send the one the operator set with ACTPATCH_API_TOKEN."
        )
        response = _refuse(401, detail)
        for challenge in self.CHALLENGES:
            response.headers.append("WWW-Authenticate", challenge)
        await response(scope, receive, send)


class SecurityHeaders:
    """Add the security headers to every answer (errors and static files included)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, settings: Settings) -> None:
    """Add the checks, outermost last: headers on every answer, then Host, then the token
    (`TokenError` for a token clients could not send)."""
    check_token(settings)
    if settings.api_token is not None:
        app.add_middleware(TokenCheck, token=settings.api_token.get_secret_value())
    app.add_middleware(HostCheck, allowed=allowed_hosts(settings))
    app.add_middleware(SecurityHeaders)


__all__ = [
    "CSP",
    "MIN_TOKEN_CHARS",
    "ExposureError",
    "HostCheck",
    "SecurityHeaders",
    "TokenCheck",
    "TokenError",
    "allowed_hosts",
    "check_token",
    "exposure",
    "install",
    "is_loopback",
]
