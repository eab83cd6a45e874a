"""Security by default: the Host allow-list, the API token, the headers, and exposure at start."""

from __future__ import annotations

import base64

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actpatch.api import Settings, create_app
from actpatch.api.security import (
    ExposureError,
    TokenError,
    allowed_hosts,
    exposure,
    is_loopback,
)
from actpatch.models import LoadedModel
from tests.api.conftest import SPEC_REQUEST, local_client


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "127.0.0.1:8000", "[::1]:8000"])
def test_loopback_names_are_answered(client: TestClient, host: str) -> None:
    assert client.get("/health", headers={"host": host}).status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "127.0.0.1.evil.example"])
def test_other_host_names_are_refused(client: TestClient, host: str) -> None:
    # A page on evil.example whose name was re-pointed at 127.0.0.1 (DNS rebinding) sends this.
    response = client.post("/patch", json=SPEC_REQUEST, headers={"host": host})
    assert response.status_code == 400
    body = response.json()
    assert "evil.example" in body["detail"] and "ACTPATCH_ALLOWED_HOSTS" in body["detail"]
    assert body["field"] is None


def test_configured_names_and_the_bound_address_are_answered() -> None:
    settings = Settings(host="192.168.1.20", allowed_hosts=["Lab-Box.local"])
    assert allowed_hosts(settings) == {
        "localhost",
        "127.0.0.1",
        "[::1]",
        "lab-box.local",
        "192.168.1.20",
    }
    assert allowed_hosts(Settings(host="0.0.0.0")) == {"localhost", "127.0.0.1", "[::1]"}
    assert "[::1]" in allowed_hosts(Settings(host="::1"))


def test_a_star_answers_any_name(tiny_model: LoadedModel) -> None:
    app = create_app(Settings(allowed_hosts=["*"]), {"tiny": tiny_model})
    assert TestClient(app).get("/health").status_code == 200  # TestClient says 'testserver'


def test_every_answer_carries_the_security_headers(client: TestClient) -> None:
    answers = [
        client.get("/"),
        client.get("/static/app.js"),
        client.get("/health"),
        client.get("/docs"),
        client.get("/nowhere"),
        client.post("/patch", json={**SPEC_REQUEST, "layer": "x"}),
        client.get("/health", headers={"host": "evil.example"}),
    ]
    for response in answers:
        headers = response.headers
        assert headers["x-content-type-options"] == "nosniff", response.url
        assert headers["x-frame-options"] == "DENY"
        assert headers["referrer-policy"] == "no-referrer"
        csp = headers["content-security-policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src 'self';" in csp  # no inline scripts, no eval, no other origin
        assert "http" not in csp  # no other host anywhere


@pytest.fixture(scope="module")
def token_app(tiny_model: LoadedModel) -> FastAPI:
    return create_app(Settings(api_token="s3cret-token-0123456789"), {"tiny": tiny_model})


def test_without_the_token_every_route_answers_401(token_app: FastAPI) -> None:
    client = local_client(token_app)
    for response in (client.get("/health"), client.get("/"), client.post("/patch", json={})):
        assert response.status_code == 401
        assert "ACTPATCH_API_TOKEN" in response.json()["detail"]
        assert "Basic" in response.headers["www-authenticate"]  # a browser asks for it
        assert response.headers["x-content-type-options"] == "nosniff"


def test_the_token_as_bearer_or_basic_password(token_app: FastAPI) -> None:
    client = local_client(token_app)
    bearer = {"authorization": "Bearer s3cret-token-0123456789"}
    assert client.post("/patch", json=SPEC_REQUEST, headers=bearer).status_code == 200
    basic = base64.b64encode(b"anyone:s3cret-token-0123456789").decode()
    assert client.get("/", headers={"authorization": f"Basic {basic}"}).status_code == 200
    wrong = client.get("/health", headers={"authorization": "Bearer s3cret-token-0123456789X"})
    assert wrong.status_code == 401 and "Wrong API token" in wrong.json()["detail"]
    garbled = client.get("/health", headers={"authorization": "Basic %%%"})
    assert garbled.status_code == 401


def test_an_empty_token_setting_is_no_token() -> None:
    assert Settings(api_token="").api_token is None
    assert Settings(api_token="  ").api_token is None


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("my-laptop", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_exposure_on_a_network_address() -> None:
    assert exposure(Settings(host="127.0.0.1")) is None
    assert exposure(Settings(host="0.0.0.0", api_token="t0ken-0123456789abcdef")) is None
    with pytest.raises(ExposureError, match="ACTPATCH_API_TOKEN"):
        exposure(Settings(host="0.0.0.0"))
    warning = exposure(Settings(host="0.0.0.0", allow_open=True))
    assert warning is not None and "without a token" in warning


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("  padded-token-0123456789  ", "begins or ends with a space"),
        ("has a space-0123456789", "outside ASCII"),
        ("naïve-token-0123456789", "outside ASCII"),
        ("tab\tinside-0123456789", "outside ASCII"),
        ("short-t0ken", "11 characters long"),
    ],
)
def test_a_token_clients_cannot_send_as_bearer_is_refused_at_start(
    tiny_model: LoadedModel, token: str, words: str
) -> None:
    with pytest.raises(TokenError, match=words) as refused:
        create_app(Settings(api_token=token), {"tiny": tiny_model})
    assert "Authorization: Bearer" in refused.value.message and "secrets" in refused.value.message
    assert token.strip() not in refused.value.message  # the token itself is never shown


def test_every_token_the_settings_accept_works_as_bearer(tiny_model: LoadedModel) -> None:
    token = "!#$%&'*+-.^_`|~0123456789:;<=>?@[]{}\"(),/\\"  # every ASCII punctuation mark
    client = local_client(create_app(Settings(api_token=token), {"tiny": tiny_model}))
    assert client.get("/health", headers={"authorization": f"Bearer {token}"}).status_code == 200
    basic = base64.b64encode(f"me:{token}".encode()).decode()
    assert client.get("/health", headers={"authorization": f"Basic {basic}"}).status_code == 200
