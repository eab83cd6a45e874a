"""The page's Attribution mode (web/attribution.js) and ablation in the sweep card, in Chromium."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.browser.conftest import MODEL_NAME, needs_chromium
from tests.browser.test_page import open_page

pytestmark = [pytest.mark.browser, needs_chromium]


def run_attribution(page: Any) -> None:
    page.click("#run-attribution")
    page.wait_for_selector("#attr-estimate:not(.hidden) .main-svg")
    page.wait_for_selector("#attr-progress.hidden", state="attached")


def _ioi(page: Any, base_url: str) -> dict[str, Any]:
    open_page(page, base_url)
    page.click("#example-ioi")
    return {
        "clean_prompt": page.input_value("#clean_prompt"),
        "corrupt_prompt": page.input_value("#corrupt_prompt"),
        "target_token": page.input_value("#target_token"),
        "wrong_token": page.input_value("#wrong_token"),
        "component": "z",
    }


def test_attribution_shows_estimate_exact_and_scatter(page: Any, base_url: str) -> None:
    body = _ioi(page, base_url)
    page.select_option("#attr-method", "atp*")
    run_attribution(page)
    page.wait_for_selector("#attr-scatter:not(.hidden) .main-svg")
    assert page.is_visible("#attr-exact")
    expected = httpx.post(
        f"{base_url}/attribute", json={**body, "method": "atp*", "compare": True}, timeout=60
    ).json()
    summary = page.text_content("#attr-summary") or ""
    assert f"computed on {MODEL_NAME}" in summary and "AtP* of z" in summary
    assert f"{expected['agreement']['pearson']:.3f}" in summary
    # the scatter has one AtP* point per cell (144 heads), and plain AtP's beside them
    counts = page.evaluate(
        "() => document.getElementById('attr-scatter').data.map((t) => [t.name, t.x.length])"
    )
    assert ["AtP*", 144] in counts and ["AtP", 144] in counts
    assert "attr=atp" in page.url
    # a random model has no IOI behaviour (the API's own warning says so): no cell is ranked first
    assert any(w["code"] == "no_behaviour" for w in expected["warnings"])
    top = page.text_content("#attr-top") or ""
    assert "No behaviour to localize" in top and page.locator("#attr-top .chip-button").count() == 0


def test_the_cell_ranked_first_is_the_apis_and_patches_exactly(page: Any, demo_url: str) -> None:
    """On the demo model, which knows IOI, the cell ranked first is the API's, named L3H4."""
    body = _ioi(page, demo_url)
    page.select_option("#attr-method", "atp*")
    run_attribution(page)
    expected = httpx.post(
        f"{demo_url}/attribute", json={**body, "method": "atp*", "compare": True}, timeout=60
    ).json()
    assert not any(w["code"] == "no_behaviour" for w in expected["warnings"])
    first = page.locator("#attr-top .chip-button").first
    layer, head = (int(x) for x in re.match(r"L(\d+)H(\d+) ", first.text_content() or "").groups())
    scores = expected["score"]
    best = max((v, i, h) for i, row in enumerate(scores) for h, v in enumerate(row))
    assert (layer, head) == best[1:]
    first.click()
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent"
        f".includes('z · L{layer}H{head} ')"
    )


def test_attribution_errors_and_link(page: Any, base_url: str) -> None:
    _ioi(page, base_url)
    page.select_option("#metric", "rank")
    page.click("#run-attribution")
    page.wait_for_selector("#attr-error:not(.hidden)")
    assert "logit_diff" in (page.text_content("#attr-error") or "")
    page.select_option("#metric", "logit_diff")
    page.select_option("#component", "resid_pre")
    page.uncheck("#attr-compare")
    run_attribution(page)
    assert not page.is_visible("#attr-scatter")
    url = page.url
    assert "attr=atp" in url and "attr_compare=0" in url
    # the link reproduces the attribution
    other = page.context.new_page()
    other.goto(url)
    other.wait_for_selector("#attr-estimate:not(.hidden) .main-svg")
    other.close()


def test_sweep_card_can_ablate(page: Any, base_url: str) -> None:
    _ioi(page, base_url)
    page.select_option("#ablate", "zero")
    page.click("#run-sweep")
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    page.wait_for_function(
        "() => document.querySelector('#sweep-summary').textContent.includes('zero-ablation')"
    )
    assert "ablate=zero" in page.url


def test_a_kept_attribution_reopens_from_the_history(page: Any, base_url: str) -> None:
    _ioi(page, base_url)
    page.select_option("#component", "z")
    run_attribution(page)
    shown = page.text_content("#attr-summary") or ""
    page.click("#history-refresh")
    item = page.locator(".history-item", has_text="attribution").first
    item.wait_for()
    page.evaluate("() => { document.getElementById('attr-summary').textContent = ''; }")
    item.locator(".history-open").click()
    page.wait_for_function(
        "() => document.querySelector('#attr-summary').textContent.includes('AtP of z')"
    )
    assert (page.text_content("#attr-summary") or "").split("·")[1] == shown.split("·")[1]
