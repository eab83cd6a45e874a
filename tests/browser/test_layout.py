"""The page at a laptop's width and narrower: nothing the user needs is squeezed out of sight."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import MODEL_NAME, needs_chromium

pytestmark = [pytest.mark.browser, needs_chromium]

# The chosen option's text, measured in the select's own font, beside the select's inner width
# (its box less its padding, borders and the drop-down arrow's room).
FIT = """() => {
  const select = document.getElementById('model');
  const style = getComputedStyle(select);
  const probe = document.createElement('span');
  probe.style.font = style.font;
  probe.style.whiteSpace = 'pre';
  probe.textContent = select.options[select.selectedIndex].text;
  document.body.append(probe);
  const text = probe.getBoundingClientRect().width;
  probe.remove();
  const pad = ['paddingLeft', 'paddingRight', 'borderLeftWidth', 'borderRightWidth']
    .reduce((sum, key) => sum + parseFloat(style[key]), 0);
  const tag = document.getElementById('model-backend').getBoundingClientRect();
  const line = parseFloat(getComputedStyle(document.getElementById('model-backend')).lineHeight)
    || 1.45 * parseFloat(getComputedStyle(document.getElementById('model-backend')).fontSize);
  return {room: select.getBoundingClientRect().width - pad - 16, text, tag: tag.height, line};
}"""


@pytest.mark.parametrize("width", [1024, 800])
def test_the_model_name_stays_readable_in_the_top_bar(page: Any, base_url: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(base_url)
    page.wait_for_selector("body[data-ready='1']")
    assert page.input_value("#model") == MODEL_NAME
    fit = page.evaluate(FIT)
    assert fit["room"] >= fit["text"], fit  # the name is not cut to "ti…"
    assert fit["tag"] < 1.6 * fit["line"], fit  # "fast path" on one line, not two
    # and nothing makes the page scroll sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= width
