"""The single patch's layer and head boxes: one left empty is said on the page, with the range
to type, and nothing is sent (the server's answer read "layer must be a whole number (got
None)")."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import needs_chromium
from tests.browser.test_page import open_page

pytestmark = [pytest.mark.browser, needs_chromium]

# The browser tests' model: GPT-2 small's shape, 12 layers x 12 heads.
CASES = [("layer", "Layer is empty", "0 to 11"), ("head", "Head is empty", "0 to 11")]


@pytest.mark.parametrize(("field", "said", "range_"), CASES)
def test_an_empty_cell_box_is_said_with_its_range(
    page: Any, base_url: str, field: str, said: str, range_: str
) -> None:
    open_page(page, base_url)
    page.fill(f"#{field}", "")
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.url.endswith("/patch") else None)
    page.click("#run-patch")
    page.wait_for_selector("#patch-error:not(.hidden)")
    text = page.text_content("#patch-error") or ""
    assert said in text and range_ in text and "None" not in text, text
    assert "invalid" in (page.get_attribute(f"#{field}", "class") or "")
    assert said in (page.text_content(f'.field-msg[data-for="{field}"]') or "")
    assert posts == [] and not page.is_disabled("#run-patch")
