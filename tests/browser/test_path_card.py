"""The Path patching card (web/paths.js) in headless Chromium: its heatmap is the API's own
`POST /path` answer for the same request, a bad receiver is explained under its field, a link
carries the card's inputs, and "Open" on a path run in the history redraws the stored result
with no new request."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from tests.browser.conftest import needs_chromium
from tests.browser.test_history_panel import history_item
from tests.browser.test_page import open_page
from tests.browser.test_stale import stale
from tests.browser.test_views import plotted
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pytestmark = [pytest.mark.browser, needs_chromium]

IOI = {"clean_prompt": IOI_CLEAN, "corrupt_prompt": IOI_CORRUPT, "target_token": " Mary"}


def flat(grid: Any) -> list[Any]:
    """A nested list's values in order (pytest.approx compares flat lists)."""
    return [v for row in grid for v in flat(row)] if isinstance(grid, list) else [grid]


def same(page_values: Any, api_values: Any) -> bool:
    """The page's values are the API's (to float precision), with the same shape."""
    shape = json.dumps(page_values, default=str).count("[")
    return shape == json.dumps(api_values).count("[") and flat(page_values) == pytest.approx(
        flat(api_values), abs=1e-6
    )


def ioi_page(page: Any, url: str) -> None:
    """The page on the IOI example, once the start-up's head sweep and patch are done."""
    open_page(page, url)
    page.click("#example-ioi")
    # the demo model has no L9H9: the page picks the IOI head that matters (by a sweep) first
    page.wait_for_function(
        "() => document.getElementById('patch-info').textContent.includes('L9H9')"
    )


def run_path(page: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Click Run; the request the page sent and the answer it drew. The button is disabled
    from the click until the answer is drawn."""
    drawn = page.evaluate("() => document.getElementById('path-heatmap').dataset.drawn || '0'")
    with page.expect_response("**/path") as answer:
        busy = page.evaluate(
            """() => { const b = document.getElementById('run-path'); b.click();
                       return [b.disabled, b.textContent]; }"""
        )
    assert busy == [True, "Patching paths…"]
    page.wait_for_function(
        "(n) => document.getElementById('path-heatmap').dataset.drawn !== n", arg=drawn
    )
    assert not page.is_disabled("#run-path")
    request = json.loads(answer.value.request.post_data or "{}")
    return request, answer.value.json()


def test_heatmap_is_the_apis_answer_for_the_same_request(page: Any, demo_url: str) -> None:
    ioi_page(page, demo_url)
    assert page.input_value("#receivers") == "logits"  # the default: every head's direct effect
    assert page.input_value("#senders") == "all"
    page.fill("#receivers", "3.4.v")
    page.check("#freeze_mlps")
    request, shown = run_path(page)
    assert request["receivers"] == "3.4.v" and request["senders"] == "all"
    assert request["freeze_mlps"] is True
    assert {k: request[k] for k in IOI} == IOI and request["wrong_token"] == " John"

    # The same request, asked of the API directly: the heatmap holds its normalized values.
    api = httpx.post(f"{demo_url}/path", json=request, timeout=60).json()
    assert api["receivers"] == ["a3.h4<v>"] and len(api["normalized"]) == 4  # 4 layers x 8
    (heads,) = plotted(page, "path-heatmap")
    assert same(heads["z"], api["normalized"])
    assert same(shown["normalized"], api["normalized"])
    devices = " + ".join(api["devices"])
    summary = page.text_content("#path-summary") or ""
    assert f"computed on demo ({api['backend']} path, {devices})" in summary
    assert "a3.h4<v>" in summary and "MLPs frozen" in summary

    # The largest path listed first is the cell farthest from the unpatched run (0, denoising).
    cells = [
        (abs(v), f"L{layer}H{h}")
        for layer, row in enumerate(api["normalized"])
        for h, v in enumerate(row)
        if v is not None
    ]
    first = page.locator("#path-top li").first
    assert first.locator(".path-sender").text_content() == max(cells)[1]

    # The link carries the card's inputs: opened, it runs the same path patching again.
    assert "path=3.4.v" in page.url and "path_freeze=1" in page.url
    with page.expect_response("**/path"):
        page.goto(page.url)
    page.wait_for_selector("#path-heatmap[data-drawn] .main-svg")
    assert page.input_value("#receivers") == "3.4.v" and page.is_checked("#freeze_mlps")
    assert same(plotted(page, "path-heatmap")[0]["z"], api["normalized"])


def test_chosen_senders_land_in_their_cells_and_the_mlp_column(page: Any, demo_url: str) -> None:
    ioi_page(page, demo_url)
    page.fill("#senders", "3.4,1.2,m0")
    request, _ = run_path(page)
    api = httpx.post(f"{demo_url}/path", json=request, timeout=60).json()
    assert api["senders"] == ["a3.h4", "a1.h2", "m0"]
    heads, mlps = plotted(page, "path-heatmap")
    assert heads["z"][3][4] == pytest.approx(api["normalized"][0], abs=1e-6)
    assert heads["z"][1][2] == pytest.approx(api["normalized"][1], abs=1e-6)
    assert mlps["z"][0] == [pytest.approx(api["normalized"][2], abs=1e-6)]
    # every other head was not a sender: an empty cell, not a zero
    assert sum(v is not None for row in heads["z"] for v in row) == 2
    assert mlps["z"][1:] == [[None], [None], [None]]


def test_a_bad_receiver_shows_the_servers_message_under_the_field(page: Any, demo_url: str) -> None:
    ioi_page(page, demo_url)
    page.fill("#receivers", "9.9.q")  # the demo model has 4 layers
    with page.expect_response("**/path") as answer:
        page.click("#run-path")
    assert answer.value.status == 422
    request = json.loads(answer.value.request.post_data or "{}")
    api = httpx.post(f"{demo_url}/path", json=request, timeout=60)
    assert api.status_code == 422 and api.json()["field"] == "receivers"
    msg = page.locator(".field-msg.error[data-for='receivers']")
    msg.wait_for()
    assert msg.text_content() == api.json()["detail"]
    assert "layer 9 is out of range" in (msg.text_content() or "")
    assert "invalid" in (page.get_attribute("#receivers", "class") or "")
    assert api.json()["detail"] in (page.text_content("#path-error") or "")
    assert not page.is_disabled("#run-path")
    # editing the field takes its error away
    page.fill("#receivers", "3.4.q")
    assert not page.is_visible(".field-msg.error[data-for='receivers']")
    assert not page.is_visible("#path-error")


def test_open_from_the_history_redraws_the_stored_run_without_a_request(
    page: Any, demo_url: str
) -> None:
    ioi_page(page, demo_url)
    page.fill("#receivers", "3.3.q,3.3.k")
    request, shown = run_path(page)
    run_id = shown["run_id"]
    drawn = plotted(page, "path-heatmap")

    # A fresh page on the factual example, the card at its defaults.
    page.goto(demo_url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.input_value("#receivers") == "logits" and page.is_visible("#path-empty")
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if r.url.endswith("/path") else None)
    total = httpx.get(f"{demo_url}/runs", params={"limit": 1}).json()["total"]

    history_item(page, run_id).locator(".history-open").click()
    page.wait_for_selector(f"body[data-reopened='{run_id}']")
    page.wait_for_selector("#path-heatmap[data-drawn] .main-svg")
    assert "has no view" not in (page.text_content("#history-note") or "")
    stored = httpx.get(f"{demo_url}/runs/{run_id}").json()
    assert stored["kind"] == "path"
    assert plotted(page, "path-heatmap")[0]["z"] == stored["result"]["normalized"]
    assert plotted(page, "path-heatmap") == drawn
    assert page.input_value("#receivers") == "3.3.q,3.3.k"
    assert page.input_value("#clean_prompt") == IOI_CLEAN
    assert not stale(page, "path", "path-body")  # its inputs are back: the result is theirs
    assert "a3.h3<q>, a3.h3<k>" in (page.text_content("#path-summary") or "")

    # Nothing recomputed: no request to /path, no run added.
    assert asked == []
    assert httpx.get(f"{demo_url}/runs", params={"limit": 1}).json()["total"] == total
    assert request["receivers"] == stored["request"]["receivers"]

    # Another receiver typed: the reopened result greys as the previous inputs'.
    page.fill("#receivers", "logits")
    assert stale(page, "path", "path-body")
