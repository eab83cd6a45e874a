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
    box = page.locator("#sweep-error:not(.hidden)")
    box.wait_for()
    text = box.text_content() or ""
    name = spec.split(":")[0]
    assert f"'{name}:12'" in text and f"'{name}:12:3'" in text, text
    assert "path" not in text and "file" not in text, text
    assert "invalid" in (page.get_attribute("#dataset", "class") or "")
