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
    assert '<script type="module" src="/static/app.js">' in response.text  # imports the rest
    assert "/vendor/plotly.min.js" in (WEB_DIR / "plots.js").read_text()  # loaded on first plot


def test_assets_are_served(client: TestClient) -> None:
    for path in ("/static/app.js", "/static/style.css"):
        assert client.get(path).status_code == 200
    # A browser runs a module only when it is served as JavaScript (nosniff makes it strict).
    for script in sorted(WEB_DIR.glob("*.js")):
        answer = client.get(f"/static/{script.name}")
        assert answer.status_code == 200, script.name
        assert "javascript" in answer.headers["content-type"], script.name
    plotly = client.get("/vendor/plotly.min.js")
    assert plotly.status_code == 200
    assert "javascript" in plotly.headers["content-type"]
    assert "plotly" in plotly.text[:500].lower()


def test_no_external_urls_in_the_page() -> None:
    for path in sorted(WEB_DIR.glob("*.*")):
        name = path.name
        text = path.read_text()
        assert not re.search(r"(src|href)=[\"']?(https?:)?//", text), name
        assert not re.search(r"(fetch|url)\([\"']?https?:", text), name


def test_modules_import_only_their_neighbours() -> None:
    """The page is native ES modules (no build step): every import is a file of web/ itself."""
    for script in sorted(WEB_DIR.glob("*.js")):
        for source in re.findall(r'from "([^"]+)"', script.read_text()):
            assert source.startswith("./") and (WEB_DIR / source[2:]).is_file(), (script, source)
