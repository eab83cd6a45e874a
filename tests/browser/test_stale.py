"""Results tied to the inputs that made them (web/stale.js): once an input a card's result was
computed from changes, the card greys its result under "from the previous inputs — run again",
and ungreys it when the inputs come back or the card runs again."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.browser.conftest import needs_chromium
from tests.browser.test_attribution import run_attribution
from tests.browser.test_page import open_page, run_patch, run_sweep

pytestmark = [pytest.mark.browser, needs_chromium]

STALE = "from the previous inputs — run again"


def stale(page: Any, card: str, part: str) -> bool:
    """Whether `card`'s result (its element `part`) is greyed under the note."""
    greyed = "stale-result" in (page.get_attribute(f"#{part}", "class") or "").split()
    note = page.locator(f".stale-note[data-card='{card}']")
    shown = note.is_visible() and STALE in (note.text_content() or "").lower()
    assert greyed == shown, (card, greyed, shown)
    return greyed


def test_an_example_greys_the_patch_it_did_not_make(page: Any, base_url: str) -> None:
    open_page(page, base_url)  # the start-up patch: Paris -> France, L8H11
    assert not stale(page, "patch", "patch-result")
    paris = page.text_content("#patched-prob")
    page.click("#example-ioi")
    assert stale(page, "patch", "patch-result")
    note = page.text_content(".stale-note[data-card='patch']") or ""
    assert "clean prompt" in note and "target answer" in note and "layer" in note
    assert page.text_content("#patched-prob") == paris  # kept, greyed, not passed off as IOI's
    run_patch(page)
    page.wait_for_function(
        "() => !document.getElementById('patch-result').classList.contains('stale-result')"
    )
    expected = httpx.post(
        f"{base_url}/patch",
        json={
            "clean_prompt": page.input_value("#clean_prompt"),
            "corrupt_prompt": page.input_value("#corrupt_prompt"),
            "target_token": " Mary",
            "wrong_token": " John",
            "layer": 9,
            "head": 9,
        },
    ).json()
    assert page.text_content("#recovery") == f"{expected['recovery_pct']:.1f}%"
    # typing greys it at once; typing the prompt back as it was ungreys it
    clean = page.input_value("#clean_prompt")
    page.fill("#clean_prompt", clean + " her")
    assert stale(page, "patch", "patch-result")
    page.fill("#clean_prompt", clean)
    assert not stale(page, "patch", "patch-result")
    page.fill("#head", "3")
    assert stale(page, "patch", "patch-result")  # another cell than the one shown


def test_sweep_attribution_and_circuit_cards_grey_too(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    run_sweep(page)
    run_attribution(page)
    page.select_option("#circuit-method", "eap")
    page.click("#run-edges")
    page.wait_for_selector("#circuit-graph:not(.hidden) svg .circuit-edge-path", state="attached")
    for card, part in (
        ("sweep", "heatmap"),
        ("attribution", "attr-estimate"),
        ("circuit", "circuit-graph"),
    ):
        assert not stale(page, card, part)
    assert "sweep=1" in page.url
    # a display control is not an input: the heatmap's view changes nothing
    page.select_option("#view", "raw")
    assert not stale(page, "sweep", "heatmap")
    # the target answer feeds every card
    page.fill("#target_token", " John")
    page.fill("#wrong_token", " Mary")
    for card, part in (
        ("sweep", "heatmap"),
        ("attribution", "attr-estimate"),
        ("circuit", "circuit-graph"),
    ):
        assert stale(page, card, part)
    assert "sweep=1" not in page.url  # a link no longer claims the old heatmap
    page.fill("#target_token", " Mary")
    page.fill("#wrong_token", " John")
    assert not stale(page, "sweep", "heatmap") and not stale(page, "circuit", "circuit-graph")
    # each card's own inputs: the component (not read by the circuit), the method
    page.select_option("#component", "resid_pre")
    assert stale(page, "sweep", "heatmap") and stale(page, "attribution", "attr-estimate")
    assert not stale(page, "circuit", "circuit-graph")
    page.select_option("#circuit-method", "eap-ig")
    assert stale(page, "circuit", "circuit-graph")
    run_sweep(page)
    assert not stale(page, "sweep", "heatmap")
    page.fill("#dataset", "ioi:4")
    assert stale(page, "sweep", "heatmap")


def test_an_example_marks_the_views_of_the_previous_prompts(page: Any, base_url: str) -> None:
    """Inside the model keeps its own note: an example written into the form (no input event)
    shows it too."""
    open_page(page, base_url)
    page.click("#example-ioi")
    page.click("#run-views")
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    assert not page.is_visible("#views-stale")
    page.click("#example-factual")
    page.wait_for_selector("#views-stale:not(.hidden)")
    assert (
        page.evaluate("() => getComputedStyle(document.getElementById('views-stale')).opacity")
        == "1"
    )


def test_an_example_that_picks_its_head_shows_that_heads_patch(page: Any, demo_url: str) -> None:
    """On the demo model (4 layers x 8 heads) the IOI example's L9H9 does not exist, so the
    example sweeps the heads and selects the one that matters most; then, as at start-up, it
    patches that head on its own prompts: the patch card shows IOI's patch, not Paris's greyed."""
    open_page(page, demo_url)  # the start-up: Paris -> France, on the head its sweep picked
    assert "prob" in (page.text_content("#patch-metric") or "")
    page.click("#example-ioi")
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('logit_diff')"
    )
    assert not stale(page, "patch", "patch-result")
    layer, head = int(page.input_value("#layer")), int(page.input_value("#head"))
    assert f"z · L{layer}H{head} · " in (page.text_content("#patch-metric") or "")
    prompts = {
        "clean_prompt": "When Mary and John went to the store, John gave a drink to",
        "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
        "target_token": " Mary",
        "wrong_token": " John",
    }
    assert page.input_value("#clean_prompt") == prompts["clean_prompt"]
    # the head selected is the one whose patch moves the metric most (denoising: away from 0)
    sweep = httpx.post(f"{demo_url}/sweep", json={**prompts, "component": "z"}).json()
    grid = sweep["normalized"]
    cells = [(abs(v), i, h) for i, row in enumerate(grid) for h, v in enumerate(row)]
    assert max(cells)[1:] == (layer, head)
    expected = httpx.post(f"{demo_url}/patch", json={**prompts, "layer": layer, "head": head})
    assert page.text_content("#recovery") == f"{expected.json()['recovery_pct']:.1f}%"
