"""The history panel pages through the runs, and says when the server's history file could not
be used (issue 20)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.browser.conftest import MODEL_NAME, needs_chromium

RUNS = 35  # more than the panel's page of 30


@pytest.fixture(scope="module")
def degraded_url(
    browser_model: LoadedModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("damaged-history")
    (folder / "runs.sqlite3").write_bytes(b"\x00" * 8192)  # not a database any more
    app = create_app(Settings(data_dir=folder), {MODEL_NAME: browser_model})
    history = app.state.workbench.history.history
    for i in range(RUNS):
        history.store("patch", {"clean_prompt": f"run {i}"}, {"model": MODEL_NAME, "layer": 0})
    with serving(app) as url:
        yield url
    app.state.workbench.close()


@pytest.mark.browser
@needs_chromium
def test_the_panel_says_the_history_was_left_aside_and_pages(page: Any, degraded_url: str) -> None:
    from playwright.sync_api import expect

    page.goto(degraded_url)
    page.wait_for_selector("body[data-ready='1']")
    problem = page.locator("#history-problem")
    problem.wait_for(state="visible")
    assert "cannot be read" in problem.inner_text() and "left untouched" in problem.inner_text()
    assert "left untouched" in page.inner_text("#notices")  # the page's notices say it too
    where = page.text_content("#history-where") or ""  # the data directory, and where instead
    assert "runs.fresh.sqlite3" in where and "was left aside" in where

    page.wait_for_selector("#history-pages:not(.hidden)")
    # RUNS stored before, and whatever the page ran itself when it opened (its head sweep)
    total = page.evaluate("fetch('/runs?limit=1').then((r) => r.json()).then((d) => d.total)")
    assert total >= RUNS
    items, shown = page.locator(".history-item"), page.locator("#history-range")
    expect(shown).to_have_text(f"runs 1–30 of {total}")
    expect(items).to_have_count(30)
    assert page.is_disabled("#history-newer") and not page.is_disabled("#history-older")
    page.click("#history-older")
    expect(shown).to_have_text(f"runs 31–{total} of {total}")
    expect(items).to_have_count(total - 30)
    assert page.is_disabled("#history-older") and not page.is_disabled("#history-newer")
    assert page.locator(".history-id").last.inner_text() == "#1"  # the oldest run, at last
    page.click("#history-newer")
    expect(items).to_have_count(30)
