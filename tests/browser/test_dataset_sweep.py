"""A dataset sweep on the page: Enter in the Dataset box runs it, and its link (the URL, so a
reload too) sweeps the same dataset again rather than the prompts above."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from tests.browser.conftest import needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


def sweep_done(page: Any) -> None:
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#sweep-progress.hidden", state="attached")


def dataset_message(page: Any) -> str:
    """The error said under the Dataset box."""
    msg = page.locator('.field-msg.error[data-for="dataset"]')
    msg.wait_for()
    return msg.text_content() or ""


def test_enter_in_the_dataset_box_runs_the_sweep(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.fill("#dataset", "ioi:3")
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/sweep/jobs")) as req:
        page.press("#dataset", "Enter")
    assert req.value.post_data_json["dataset"] == "ioi:3"
    sweep_done(page)
    assert "mean of 3 pairs" in (page.text_content("#sweep-summary") or "")


def test_a_dataset_sweep_survives_a_reload_and_its_link(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.fill("#dataset", "ioi:3")
    page.click("#run-sweep")
    sweep_done(page)
    query = parse_qs(urlparse(page.url).query)
    assert query["dataset"] == ["ioi:3"] and query["sweep"] == ["1"]
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/sweep/jobs")) as req:
        page.reload()
        page.wait_for_selector("body[data-ready='1']")
    assert req.value.post_data_json["dataset"] == "ioi:3"  # not the prompts above
    sweep_done(page)
    assert page.input_value("#dataset") == "ioi:3"
    assert "mean of 3 pairs" in (page.text_content("#sweep-summary") or "")
    # emptying the box takes the dataset out of the link
    page.fill("#dataset", "")
    assert "dataset" not in parse_qs(urlparse(page.url).query)


@pytest.mark.parametrize("spec", ["ioi", "ioi:many", "factual:4:1:2"])
def test_a_malformed_dataset_says_how_to_write_it(page: Any, base_url: str, spec: str) -> None:
    """A known name without its count: the message shows the form to type, and offers no
    file's path (the server reads none that a request names)."""
    open_page(page, base_url)
    page.fill("#dataset", spec)
    page.click("#run-sweep")
    text = dataset_message(page)
    assert not page.is_visible("#sweep-error")  # said under the box only
    name = spec.split(":")[0]
    assert f"'{name}:12'" in text and f"'{name}:12:3'" in text, text
    assert "path" not in text and "file" not in text, text
    assert "invalid" in (page.get_attribute("#dataset", "class") or "")


def test_a_dataset_error_is_said_once_under_its_box(page: Any, base_url: str) -> None:
    """The server's message shows under the Dataset box, and not a second time in the card's
    alert above the heatmap; an error of another field still shows in the alert."""
    open_page(page, base_url)
    page.fill("#dataset", "nope:3")
    page.click("#run-sweep")
    text = dataset_message(page)
    assert text.startswith("Unknown dataset 'nope:3'") and "'ioi:N'" in text, text
    card = page.evaluate("() => document.querySelector('section.sweep').innerText")
    assert card.count("Unknown dataset 'nope:3'") == 1, card
    assert not page.is_visible("#sweep-error")
    assert "invalid" in (page.get_attribute("#dataset", "class") or "")
    # right under the box, not at the card's foot
    box = page.locator("#dataset").bounding_box()
    msg = page.locator('.field-msg[data-for="dataset"]').bounding_box()
    assert box is not None and msg is not None
    assert 0 <= msg["y"] - (box["y"] + box["height"]) < 24, (box, msg)
    # typing in the box takes the message away
    page.fill("#dataset", "ioi:3")
    assert not page.is_visible('.field-msg[data-for="dataset"]')
    assert "invalid" not in (page.get_attribute("#dataset", "class") or "")
    # the prompts' own error (no dataset) is said in the alert, naming its field
    page.fill("#dataset", "")
    page.fill("#clean_prompt", "")
    page.click("#run-sweep")
    alert = page.locator("#sweep-error:not(.hidden)")
    alert.wait_for()
    assert "clean_prompt" in (alert.text_content() or "")
