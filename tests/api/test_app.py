"""The app factory and its OpenAPI document: every route summarised and typed."""

from __future__ import annotations

from fastapi.testclient import TestClient

from actpatch.api import Settings


def test_every_route_has_a_summary_and_typed_bodies(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/patch",
        "/sweep",
        "/sweep/jobs",
        "/sweep/jobs/{job_id}",
        "/tokenize",
        "/models",
        "/health",
    }
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            summary = operation.get("summary", "")
            assert summary and summary[0].isupper() and summary.endswith("."), (path, method)
            ok = next(v for k, v in operation["responses"].items() if k.startswith("2"))
            assert "$ref" in ok["content"]["application/json"]["schema"], (path, method)
            if method == "post":
                assert "$ref" in str(operation["requestBody"]), path


def test_docs_page(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200


def test_settings_read_the_environment(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ACTPATCH_MODEL", "demo")
    monkeypatch.setenv("ACTPATCH_EXTRA_MODELS", '["/models/a"]')
    monkeypatch.setenv("ACTPATCH_CACHE_SIZE", "3")
    settings = Settings()
    assert (settings.model, settings.extra_models, settings.cache_size) == (
        "demo",
        ["/models/a"],
        3,
    )
