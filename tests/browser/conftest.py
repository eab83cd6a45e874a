"""Fixtures for the browser tests: a live server on a tiny model, and headless Chromium.

The tests drive Debian's Chromium (`/usr/bin/chromium`, installed by `make browser-deps`)
with Playwright; without it they are skipped, saying why. The model is a random GPT-2 with
GPT-2 small's 12 layers and 12 heads (d_model 48), so the spec's example (layer 8, head 11)
runs as it is.

`make screenshots` (docs/make_screenshots.py) takes the documentation's pictures of the page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

import actpatch
from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.browser.chromium import CHROMIUM, launch
from tests.conftest import make_random_gpt2

MODEL_NAME = "tiny-gpt2"


needs_chromium = pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing: run `make browser-deps` to install it"
)


@pytest.fixture(scope="session")
def browser_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    """A random GPT-2 shaped like GPT-2 small in layers and heads (12 x 12), d_model 48."""
    folder = tmp_path_factory.mktemp("browser-gpt2")
    make_random_gpt2(folder, n_layer=12, n_head=12, n_embd=48, seed=0)
    return actpatch.load_model(str(folder))


@pytest.fixture(scope="session")
def base_url(browser_model: LoadedModel) -> Iterator[str]:
    """A real uvicorn server, in a background thread, on a free port."""
    with serving(create_app(Settings(), {MODEL_NAME: browser_model})) as url:
        yield url


@pytest.fixture(scope="session")
def demo_url() -> Iterator[str]:
    """A server on the bundled demo model (4 layers x 8 heads, trained): unlike the random
    models, it shows both examples' behaviour, so a head or a cell can matter."""
    with serving(create_app(Settings(), {"demo": actpatch.load_model("demo")})) as url:
        yield url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def browser_context(browser: Any) -> Iterator[Any]:
    """One context for the session, so Plotly.js (4.8 MB) is fetched and cached once."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    yield context
    context.close()


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    """A fresh page; the test fails on any script error or dialog (e.g. an injected alert)."""
    page = browser_context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("dialog", lambda dialog: (errors.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    page.set_default_timeout(15_000)
    yield page
    page.close()
    assert errors == [], errors
