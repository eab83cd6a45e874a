"""Results' `_repr_html_` in Chromium, as a notebook page holds them (one document, outputs in
order): the first output's plotly.js draws every figure, offline, with the result's numbers;
hostile tokens run nothing; without the bundle a figure says how to get it back."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

import actpatch
from actpatch import display
from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens
from tests.browser.conftest import needs_chromium
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pytestmark = [pytest.mark.browser, needs_chromium]


@pytest.fixture(scope="module")
def shown() -> dict[str, Any]:
    model = actpatch.load_model("demo")
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    return {
        "sweep": actpatch.sweep(exp, "z"),
        "patch": actpatch.patch(exp, layer=3, head=4),
        "attention": attention_pattern(exp, 3, [3, 4]),
        "dla": direct_logit_attribution(exp),
        "lens": logit_lens(exp),
    }


def _notebook_page(page: Any, outputs: list[str]) -> list[str]:
    """Load the outputs as one page; the URLs it asked for."""
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    body = "\n".join(f'<div class="output">{html}</div>' for html in outputs)
    page.set_content(f'<html><head><meta charset="utf-8"></head><body>{body}</body></html>')
    return requests


def test_every_figure_draws_offline_with_the_results_numbers(page: Any, shown) -> None:
    display.reset()
    requests = _notebook_page(page, [result._repr_html_() for result in shown.values()])
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 5")
    assert page.locator(".plotly-graph-div").count() == 5
    assert [url for url in requests if url.startswith("http")] == []
    z = page.evaluate("document.querySelectorAll('.plotly-graph-div')[0].data[0].z")
    expected = shown["sweep"].normalized.tolist()  # denoising: the change from 0
    assert z == [pytest.approx(row, abs=1e-6) for row in expected]
    lens = page.evaluate("document.querySelectorAll('.plotly-graph-div')[4].data[0].y")
    assert lens == pytest.approx(shown["lens"].clean.metric)


def test_hostile_tokens_run_nothing(page: Any, shown) -> None:
    evil = '"><img src=x onerror=alert(1)></script><script>alert(2)</script>'
    sweep = replace(shown["sweep"], model=evil)
    attention = replace(shown["attention"], tokens=[evil] * len(shown["attention"].tokens))
    display.reset()
    _notebook_page(page, [sweep._repr_html_(), attention._repr_html_()])
    page.wait_for_function("document.querySelectorAll('.plotly-graph-div .main-svg').length >= 2")
    assert evil in page.inner_text("body")  # shown as text (the `page` fixture fails on alerts)


def test_without_the_bundle_a_figure_says_what_to_do(page: Any, shown) -> None:
    display.reset()
    shown["lens"]._repr_html_()  # this session's first figure took the bundle with it
    _notebook_page(page, [shown["dla"]._repr_html_()])
    assert "actpatch.display.reset()" in page.inner_text(".plotly-graph-div")
