"""GET /health."""

from __future__ import annotations

from fastapi.testclient import TestClient

import actpatch


def test_health(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["version"] == actpatch.__version__
    assert body["default_model"] == "tiny"
    assert body["models"] == ["tiny", "other"]
