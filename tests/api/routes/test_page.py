"""The page and its assets: served by the app itself, nothing from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from actpatch.api.routes.page import WEB_DIR


def test_index_page(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    assert "text/html" in response.headers["content-type"]
    assert "actpatch" in response.text
    assert "/static/app.js" in response.text
    assert "/vendor/plotly.min.js" in (WEB_DIR / "app.js").read_text()  # loaded on first sweep


def test_assets_are_served(client: TestClient) -> None:
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert "javascript" in plotly.headers["content-type"]
    assert "plotly" in plotly.text[:500].lower()


def test_no_external_urls_in_the_page() -> None:
    for name in ("index.html", "app.js", "style.css"):
        text = (WEB_DIR / name).read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), name
        assert not re.search(r"(fetch|url)\([\"']?https?:", text), name
