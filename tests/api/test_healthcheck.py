"""The container's health check: 0 against a live server (with its token), 1 otherwise."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from actpatch.api import Settings, create_app
from actpatch.api.healthcheck import healthy
from actpatch.models import LoadedModel
from tests.api.conftest import free_port, serving


def test_healthy_against_a_live_server_with_its_token(tiny_model: LoadedModel) -> None:
    app = create_app(Settings(api_token="t0ken-0123456789abcdef"), {"tiny": tiny_model})
    with serving(app) as url:
        port = urlparse(url).port
        assert port is not None
        assert healthy(port, "t0ken-0123456789abcdef")
        assert not healthy(port)  # 401 without the token
        assert not healthy(port, "wrong")
    assert not healthy(free_port(), timeout=1)  # nobody listening


def test_healthy_with_a_punctuated_token_and_a_degraded_history(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    (tmp_path / "runs.sqlite3").write_bytes(b"not a database" * 100)  # the server goes on
    token = "a'b\"c$d`e\\f!g#h%i&j*k+l"  # what a shell would mangle, sent as it is
    app = create_app(Settings(api_token=token, data_dir=tmp_path), {"tiny": tiny_model})
    with serving(app) as url:
        port = urlparse(url).port
        assert port is not None
        assert healthy(port, token)  # degraded is still up: restarting would not mend the file
