"""The page, /docs and /redoc under the server's Content-Security-Policy, offline, in Chromium;
and the page behind an API token, which the browser sends as a password."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.browser.conftest import needs_chromium
from tests.browser.test_page import open_page, run_patch, run_sweep

pytestmark = [pytest.mark.browser, needs_chromium]

# A violation is reported as a console error; this also catches those the console does not.
REPORT_VIOLATIONS = """document.addEventListener("securitypolicyviolation", (e) =>
  console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));"""


@pytest.fixture
def violations(page: Any) -> Iterator[list[str]]:
    seen: list[str] = []
    page.add_init_script(REPORT_VIOLATIONS)
    page.on(
        "console",
        lambda m: (
            seen.append(m.text)
            if "Content Security Policy" in m.text or "CSP violation" in m.text
            else None
        ),
    )
    yield seen


def test_the_page_and_its_heatmaps_run_under_the_policy(
    page: Any, base_url: str, violations: list[str]
) -> None:
    open_page(page, base_url)
    run_patch(page)
    run_sweep(page)  # Plotly.js draws the heatmap
    assert violations == []


def test_swagger_ui_renders_offline_under_the_policy(
    page: Any, base_url: str, violations: list[str]
) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.goto(f"{base_url}/docs")
    page.wait_for_selector(".opblock-summary-path >> text=/patch")
    assert violations == []
    assert all(url.startswith(base_url) or url.startswith("data:") for url in requested)


def test_redoc_renders_offline_under_the_policy(
    page: Any, base_url: str, violations: list[str]
) -> None:
    page.goto(f"{base_url}/redoc")
    page.wait_for_selector("text=POST /patch >> nth=0", state="attached")
    # ReDoc's footer asks its CDN for a logo: the policy blocks that, and only that.
    assert [v for v in violations if "cdn.redoc.ly" not in v] == []


@pytest.fixture(scope="module")
def token_url(browser_model: LoadedModel) -> Iterator[str]:
    app = create_app(Settings(api_token="s3cret-token-0123456789"), {"tiny-gpt2": browser_model})
    with serving(app) as url:
        yield url


def test_behind_a_token_the_browser_asks_once_and_the_page_works(
    browser: Any, token_url: str
) -> None:
    context = browser.new_context(
        http_credentials={"username": "me", "password": "s3cret-token-0123456789"}
    )
    page = context.new_page()
    open_page(page, token_url)
    run_patch(page)
    assert page.inner_text("#patch-result")
    context.close()
    stranger = browser.new_context()  # no password: a headless browser cannot ask for one
    assert stranger.request.get(token_url).status == 401
    stranger.close()
