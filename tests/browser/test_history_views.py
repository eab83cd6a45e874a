"""The views' runs reopen from the history panel (web/history.js, web/views.js): "Open" on an
attention, a DLA or a logit lens run draws the figure it drew when it ran, from the stored
result, with no request to /attention, /dla or /lens."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.chromium import cell_center
from tests.browser.conftest import needs_chromium
from tests.browser.test_history_panel import history_item
from tests.browser.test_page import open_page
from tests.browser.test_views import attention_drawn, plotted
from tests.conftest import IOI_CLEAN

pytestmark = [pytest.mark.browser, needs_chromium]

VIEW_ROUTES = ("/attention", "/dla", "/lens")
LENS_POINTS = "(n) => document.getElementById('lens-chart').data?.[0].x.length === n"


def texts(page: Any, selector: str) -> list[str]:
    return page.locator(selector).all_text_contents()


def lens_drawn(page: Any) -> dict[str, Any]:
    """What the lens panel shows: the chart's lines and the rank table."""
    return {
        "lines": plotted(page, "lens-chart"),
        "ranks": texts(page, "#lens-ranks td"),
        "summary": page.text_content("#lens-summary"),
    }


def attention_shown(page: Any) -> dict[str, Any]:
    return {
        "clean": plotted(page, "attn-clean")[0],
        "corrupt": plotted(page, "attn-corrupt")[0],
        "ticks": texts(page, "#attn-corrupt .xtick text"),
        "title": page.text_content("#attn-title"),
        "summary": page.text_content("#attn-summary"),
    }


def dla_shown(page: Any) -> dict[str, Any]:
    return {
        "traces": plotted(page, "dla-heatmap"),
        "parts": texts(page, "#dla-parts .part"),
        "summary": page.text_content("#dla-summary"),
    }


def test_open_draws_each_view_as_it_was_drawn_from_the_stored_result(
    page: Any, demo_url: str
) -> None:
    # Run the three views on the IOI example: the lens with its points after attention too.
    open_page(page, demo_url)
    page.click("#example-ioi")
    # the demo model has no L9H9: the page picks the IOI head that matters (by a sweep) first
    page.wait_for_function(
        "() => document.getElementById('patch-info').textContent.includes('L9H9')"
    )
    page.check("#lens-sublayers")  # runs the lens again
    page.wait_for_function(LENS_POINTS, arg=9)  # 4 layers: before each and after its attention; out
    page.wait_for_selector("#run-views:not([disabled])")
    with (
        page.expect_response("**/dla") as dla_answer,
        page.expect_response("**/lens") as lens_answer,
    ):
        page.click("#run-views")
    dla_id, lens_id = dla_answer.value.json()["run_id"], lens_answer.value.json()["run_id"]
    page.wait_for_selector("#run-views:not([disabled])")
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    page.locator("#dla-heatmap").scroll_into_view_if_needed()
    with page.expect_response("**/attention") as attention_answer:
        page.mouse.click(*cell_center(page, 1, 2, plot="dla-heatmap"))
    attention_id = attention_answer.value.json()["run_id"]
    attention_drawn(page, "L1H2")
    drawn = {"attention": attention_shown(page), "dla": dla_shown(page), "lens": lens_drawn(page)}

    # A fresh page on another experiment: nothing drawn, the form the factual example's.
    page.goto(demo_url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.input_value("#clean_prompt") != IOI_CLEAN
    assert not page.is_checked("#lens-sublayers") and page.is_visible("#lens-empty")
    asked: list[str] = []
    page.on(
        "request",
        lambda r: asked.append(r.url) if r.url.endswith(VIEW_ROUTES) else None,
    )
    total = httpx.get(f"{demo_url}/runs", params={"limit": 1}).json()["total"]

    def reopen(run_id: int) -> dict[str, Any]:
        history_item(page, run_id).locator(".history-open").click()
        page.wait_for_selector(f"body[data-reopened='{run_id}']")
        assert "has no view" not in (page.text_content("#history-note") or "")
        run = httpx.get(f"{demo_url}/runs/{run_id}").json()
        return run["result"]

    stored = reopen(attention_id)
    attention_drawn(page, "L1H2")
    assert attention_shown(page) == drawn["attention"]
    assert plotted(page, "attn-clean")[0]["z"] == stored["clean"]
    assert plotted(page, "attn-corrupt")[0]["z"] == stored["corrupt"]
    assert page.input_value("#clean_prompt") == IOI_CLEAN

    stored = reopen(dla_id)
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    assert dla_shown(page) == drawn["dla"]
    heads, mlp = plotted(page, "dla-heatmap")
    assert heads["z"] == stored["difference"]["heads"]
    assert mlp["z"] == [[v] for v in stored["difference"]["mlp"]]

    stored = reopen(lens_id)
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    assert page.is_checked("#lens-sublayers")  # as the run asked
    assert lens_drawn(page) == drawn["lens"]
    clean, corrupt = plotted(page, "lens-chart")
    assert clean["x"] == stored["labels"] and len(stored["labels"]) == 9
    assert clean["y"] == stored["clean"]["metric"]
    assert corrupt["y"] == stored["corrupt"]["metric"]
    assert texts(page, "#lens-ranks tbody tr[data-run='clean'] td") == [
        str(r) for r in stored["clean"]["target_rank"]
    ]

    # Drawn from the history, not recomputed: no view was asked for, no run was added; and the
    # views belong to the form they put back (no "the experiment has changed" note).
    assert asked == []
    assert httpx.get(f"{demo_url}/runs", params={"limit": 1}).json()["total"] == total
    assert not page.is_visible("#views-stale")
