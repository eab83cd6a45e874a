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
from tests.browser.test_page import open_page, run_patch
from tests.browser.test_stale import stale
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


def run_views(page: Any) -> tuple[int, int, int]:
    """Run DLA and the lens, then click L1H2 on the DLA map for its attention: the three runs'
    ids, each drawn."""
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
    attention_drawn(page, "L1H2")
    return attention_answer.value.json()["run_id"], dla_id, lens_id


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
    attention_id, dla_id, lens_id = run_views(page)
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


def form_of(page: Any) -> dict[str, str]:
    return {f: page.input_value(f"#{f}") for f in ("metric", "direction", "layer", "head")}


def open_run(page: Any, run_id: int) -> None:
    """Click the run's "Open" and wait until the page has reopened it (even if it was the run
    reopened last)."""
    page.evaluate("() => { delete document.body.dataset.reopened; }")
    history_item(page, run_id).locator(".history-open").click()
    page.wait_for_selector(f"body[data-reopened='{run_id}']")


def test_open_of_a_view_leaves_the_patch_and_what_the_view_did_not_read(
    page: Any, demo_url: str
) -> None:
    """A view reads the prompts, answers and model (the lens its metric too, the pattern its own
    head): "Open" puts those back and leaves the rest of the form (the patch's layer and head,
    the direction, DLA's metric) as it is, so the patch computed on the same experiment is not
    greyed as stale, nor the sweep's state changed."""
    open_page(page, demo_url)
    page.click("#example-ioi")
    page.wait_for_function(
        "() => document.getElementById('patch-info').textContent.includes('L9H9')"
    )
    page.wait_for_selector("#run-views:not([disabled])")
    page.select_option("#metric", "logprob")
    page.select_option("#direction", "noising")
    page.fill("#layer", "3")
    page.fill("#head", "5")
    run_patch(page)
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('L3H5')"
        " && !document.getElementById('patch-result').classList.contains('stale-result')"
    )
    attention_id, dla_id, lens_id = run_views(page)
    lens_request = httpx.get(f"{demo_url}/runs/{lens_id}").json()["request"]
    assert lens_request["metric"] == "logprob"  # the lens reads the form's metric

    form = {"metric": "logprob", "direction": "noising", "layer": "3", "head": "5"}
    assert form_of(page) == form and not stale(page, "patch", "patch-result")
    sweep_stale = stale(page, "sweep", "heatmap")  # its sweep ran with auto and denoising
    for run_id in (attention_id, dla_id, lens_id):
        open_run(page, run_id)
        assert form_of(page) == form, run_id
        assert not stale(page, "patch", "patch-result"), run_id
        assert stale(page, "sweep", "heatmap") == sweep_stale, run_id
        assert not page.is_visible("#views-stale")

    # Another metric in the form: the lens puts back the one it read; DLA reads none (its
    # metric follows from the answers: logit_diff with a wrong answer) and leaves the form's.
    page.select_option("#metric", "prob")
    open_run(page, lens_id)
    assert page.input_value("#metric") == "logprob"
    page.select_option("#metric", "prob")
    open_run(page, dla_id)
    assert page.input_value("#metric") == "prob"
    assert "logit_diff" in (page.text_content("#dla-summary") or "")
