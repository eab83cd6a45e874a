"""GET /models: what the server runs, which model is the default, and the engine's options."""

from __future__ import annotations

from fastapi.testclient import TestClient

import actpatch


def test_models_lists_loaded_models_and_default(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["default"] == "tiny"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"tiny", "other"}
    assert by_name["tiny"]["default"] is True
    assert (by_name["tiny"]["n_layers"], by_name["tiny"]["n_heads"]) == (3, 4)
    assert by_name["other"]["source"] == "local folder"
    assert body["notices"] == []


def test_models_lists_components_metrics_directions(client: TestClient) -> None:
    body = client.get("/models").json()
    assert set(body["components"]) == set(actpatch.COMPONENTS)
    assert body["components"]["resid_pre"]["axes"] == ["layer", "pos"]
    assert set(body["metrics"]) == set(actpatch.METRICS)
    assert body["directions"] == list(actpatch.DIRECTIONS)
