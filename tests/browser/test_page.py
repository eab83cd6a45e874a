"""The explorer page in headless Chromium: the example, sweeps, errors, links, untrusted text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import torch

from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.browser.chromium import cell_center
from tests.browser.conftest import MODEL_NAME, needs_chromium
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pytestmark = [pytest.mark.browser, needs_chromium]

IOI_STATE = {
    "clean_prompt": IOI_CLEAN,
    "corrupt_prompt": IOI_CORRUPT,
    "target_token": " Mary",
    "wrong_token": " John",
    "component": "z",
    "direction": "denoising",
    "layer": "9",
    "head": "9",
}


def open_page(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")


def run_patch(page: Any) -> None:
    page.click("#run-patch")
    page.wait_for_selector("#patch-result:not(.hidden)")


def run_sweep(page: Any) -> None:
    page.click("#run-sweep")
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#sweep-progress.hidden", state="attached")


def test_prefilled_spec_example_runs_and_shows_numbers(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    assert page.input_value("#clean_prompt") == "Paris is the capital of"
    assert page.input_value("#corrupt_prompt") == "Berlin is the capital of"
    assert page.input_value("#target_token") == " France"
    assert (page.input_value("#layer"), page.input_value("#head")) == ("8", "11")
    run_patch(page)
    spec = {
        "clean_prompt": "Paris is the capital of",
        "corrupt_prompt": "Berlin is the capital of",
        "target_token": " France",
        "layer": 8,
        "head": 11,
    }
    expected = httpx.post(f"{base_url}/patch", json=spec).json()
    assert page.text_content("#clean-rank") == str(expected["clean_rank"])
    assert page.text_content("#corrupt-rank") == str(expected["corrupt_rank"])
    assert page.text_content("#patched-rank") == str(expected["patched_rank"])
    assert page.text_content("#recovery") == f"{expected['recovery_pct']:.1f}%"
    for run in ("clean", "corrupt", "patched"):
        assert page.locator(f"#top-{run} li").count() == 10
        first = page.locator(f"#top-{run} li .tok").first.text_content()
        assert first == expected[f"top_{run}"][0]["token"].replace(" ", "␣")
    assert re.search(r"\d", page.text_content("#clean-prob") or "")
    # the model, the path and the devices its weights are on, as the answer gives them
    footer = page.text_content("#patch-footer") or ""
    devices = " + ".join(expected["devices"])
    assert f"computed on {MODEL_NAME} ({expected['backend']} path, {devices})" in footer


def test_tokens_are_aligned_and_answers_checked_live(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.wait_for_selector("#tokens .tok")
    # 'Paris' vs 'Ber' 'lin': the differing middle has no counterpart, so it is marked.
    gaps = page.locator("#tokens .tok.gap").all_text_contents()
    assert gaps == ["Paris", "Ber", "lin"]
    page.fill("#target_token", " Fra nce")
    warning = page.locator('.field-msg[data-for="target_token"]')
    warning.filter(has_text="single token").wait_for()
    page.fill("#target_token", " France")
    page.wait_for_function(
        "() => !document.querySelector('.field-msg[data-for=\"target_token\"]').textContent"
    )
    page.click("#example-ioi")
    page.wait_for_function("() => document.querySelectorAll('#tokens .tok.differ').length == 2")
    assert page.locator("#tokens .tok.differ").all_text_contents() == ["␣John", "␣Mary"]


def test_head_sweep_draws_a_heatmap_and_a_click_shows_the_cell(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    run_sweep(page)
    summary = page.text_content("#sweep-summary") or ""
    assert f"computed on {MODEL_NAME}" in summary and "144 cells" in summary
    x, y = cell_center(page, 4, 7)
    page.mouse.move(x, y)
    page.wait_for_selector(".hoverlayer .hovertext")
    assert "L4H7" in (page.text_content(".hoverlayer") or "")
    page.mouse.click(x, y)
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('z · L4H7 · ')"
    )
    assert (page.input_value("#layer"), page.input_value("#head")) == ("4", "7")
    assert "head=7" in page.url and "sweep=1" in page.url

    # Layers x positions, each column labelled with its token.
    page.select_option("#component", "resid_pre")
    run_sweep(page)
    ticks = page.locator("#heatmap .xtick text").all_text_contents()
    assert ticks[:3] == ["0 <|endoftext|>", "1 When", "2 ␣Mary"]
    assert page.is_visible("#pos-box") and not page.is_visible("#head-box")
    page.mouse.click(*cell_center(page, 3, 10))
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('L3 · pos 10')"
    )


def test_bad_input_shows_its_message(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.fill("#layer", "99")
    page.click("#run-patch")
    page.wait_for_selector("#patch-error:not(.hidden)")
    assert "out of range" in (page.text_content("#patch-error") or "")
    assert "invalid" in (page.get_attribute("#layer", "class") or "")
    page.fill("#layer", "8")
    page.fill("#clean_prompt", "")
    page.click("#run-patch")
    page.locator('.field-msg[data-for="clean_prompt"]').filter(has_text="empty").wait_for()


def test_a_link_reproduces_the_experiment(page: Any, base_url: str) -> None:
    state = {**IOI_STATE, "layer": "2", "head": "5", "sweep": "1", "view": "raw"}
    open_page(page, f"{base_url}/?{urlencode(state)}")
    page.wait_for_selector("#patch-result:not(.hidden)")
    page.wait_for_selector("#heatmap .main-svg")
    assert page.input_value("#clean_prompt") == IOI_CLEAN
    assert page.input_value("#wrong_token") == " John"
    assert page.input_value("#view") == "raw"
    request = {k: v for k, v in IOI_STATE.items() if k not in ("layer", "head")}
    expected = httpx.post(f"{base_url}/patch", json={**request, "layer": 2, "head": 5}).json()
    assert page.text_content("#recovery") == f"{expected['recovery_pct']:.1f}%"
    assert page.text_content("#patched-rank") == str(expected["patched_rank"])


def test_state_goes_into_the_url(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    page.fill("#layer", "3")
    page.dispatch_event("#layer", "change")
    assert "clean_prompt=When+Mary" in page.url and "layer=3" in page.url


def test_token_strings_render_as_text(page: Any, base_url: str) -> None:
    evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    state = {**IOI_STATE, "clean_prompt": evil + " is", "corrupt_prompt": evil + " was"}
    state.update(component="resid_pre", layer="0", pos="1", sweep="1")
    open_page(page, f"{base_url}/?{urlencode(state)}")
    page.wait_for_selector("#heatmap .main-svg")
    page.wait_for_selector("#tokens .tok")
    chips = page.locator("#tokens .tok").all_text_contents()
    assert {"<", "script", ">"} <= set(chips)
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("#tokens script, #tokens img, #heatmap img").count() == 0
    ticks = page.locator("#heatmap .xtick text").all_text_contents()
    assert ticks[1:4] == ["1 <", "2 script", "3 >"]


def test_long_sweep_shows_progress_and_can_be_cancelled(page: Any, base_url: str) -> None:
    # The tiny model sweeps too fast to catch in the act, so the job's answers are stubbed:
    # it runs (5 of 100 cells) until the page sends DELETE, then reports itself cancelled.
    seen: dict[str, bool] = {"deleted": False}

    def job(route: Any) -> None:
        if route.request.method == "DELETE":
            seen["deleted"] = True
        status = "cancelled" if seen["deleted"] else "running"
        body = {
            "id": "stub",
            "status": status,
            "model": MODEL_NAME,
            "component": "z",
            "done": 5,
            "total": 100,
            "elapsed_s": 1.0,
            "result": None,
            "error": {"detail": "The sweep was cancelled.", "field": None}
            if seen["deleted"]
            else None,
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/sweep/jobs/stub$"), job)
    page.route(re.compile(r".*/vendor/plotly.min.js$"), lambda route: route.fulfill(body=""))
    page.route(
        re.compile(r".*/sweep/jobs$"),
        lambda route: route.fulfill(
            status=202,
            content_type="application/json",
            body=json.dumps({"id": "stub", "status": "queued", "done": 0, "total": 0}),
        ),
    )
    open_page(page, base_url)
    page.click("#run-sweep")
    page.locator("#sweep-count").filter(has_text="5 / 100 cells").wait_for()
    assert page.is_disabled("#run-sweep")
    page.click("#patch-title")  # the page stays usable while the sweep runs
    run_patch(page)
    page.click("#cancel-sweep")
    page.locator("#sweep-error").filter(has_text="cancelled").wait_for()
    assert seen["deleted"]
    assert page.is_enabled("#run-sweep")


def test_fallback_notice_is_shown(page: Any, browser_model: LoadedModel) -> None:
    app = create_app(Settings(), {"demo": browser_model})
    notice = "Model 'gpt2' is not available here, so this server runs the 'demo' model instead."
    app.state.workbench.registry.notices.append(notice)
    with serving(app) as url:
        open_page(page, url)
        assert notice in (page.text_content("#notices") or "")
        assert page.input_value("#model") == "demo"


def test_warnings_show_above_the_numbers(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.fill("#target_token", "France")  # no leading space: one token, but not ' France'
    run_patch(page)
    box = page.locator("#patch-warnings")
    box.filter(has_text="did you mean ' France'?").wait_for()
    # above the numbers: the warnings come before the result in the page
    above = page.evaluate(
        "() => document.getElementById('patch-warnings').compareDocumentPosition("
        "document.getElementById('patch-result')) & Node.DOCUMENT_POSITION_FOLLOWING"
    )
    assert above
    page.fill("#target_token", " France")
    run_patch(page)
    page.wait_for_function(
        "() => !document.getElementById('patch-warnings').textContent.includes('did you mean')"
    )


def test_an_error_box_clears_when_its_input_changes(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.fill("#layer", "99")
    page.click("#run-patch")
    page.wait_for_selector("#patch-error:not(.hidden)")
    page.fill("#target_token", " France ")  # another field: the layer error stays
    assert page.is_visible("#patch-error")
    page.fill("#layer", "3")
    page.dispatch_event("#layer", "change")
    page.wait_for_selector("#patch-error.hidden", state="attached")


def test_choices_have_short_labels_and_a_description(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    labels = page.eval_on_selector_all("#component option", "os => os.map(o => o.textContent)")
    assert "z" in labels and all(" " not in label for label in labels)
    assert "attention head output" in (page.text_content("#component-hint") or "")
    page.select_option("#metric", "logprob")
    assert "log-probability" in (page.text_content("#metric-hint") or "")
    # every drop-down shows its whole chosen label at the default width
    for select in ("#component", "#metric", "#direction"):
        assert page.eval_on_selector(select, "s => s.scrollWidth <= s.clientWidth + 1")


def test_a_small_model_gets_the_head_that_matters(page: Any, demo_url: str) -> None:
    """L8H11 does not exist on the 4 x 8 demo model, which knows the example: the page picks
    the head whose patch moves the metric most on it (the library's own head sweep says which)."""
    import actpatch

    exp = actpatch.Experiment(
        actpatch.load_model("demo"),
        "Paris is the capital of",
        "Berlin is the capital of",
        " France",
    )
    (best, value), *_ = actpatch.sweep(exp, "z").top(1)
    open_page(page, demo_url)
    assert (int(page.input_value("#layer")), int(page.input_value("#head"))) == best
    info = page.text_content("#patch-info") or ""
    assert f"L{best[0]}H{best[1]} is selected instead" in info and "moves the metric most" in info
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")  # the sweep that chose it
    page.wait_for_selector("#patch-result:not(.hidden)")  # and its patch, at once
    # its cells are named as heads are everywhere (L3H4), with their normalized value in %
    chip = page.locator("#sweep-top .chip-button").first.text_content()
    assert chip == f"L{best[0]}H{best[1]} {100 * float(value):.1f}%"


def test_no_best_head_where_the_example_shows_no_behaviour(
    page: Any, tiny_model: LoadedModel, tiny_model_dir: Path
) -> None:
    """On a random 3 x 4 model the example has no behaviour (Hugging Face's own forward: the
    clean run's top token is not ' France'), so no head is announced as the one that matters,
    in the patch card's note or among the sweep's cells: the page says there is nothing to
    localize."""
    from transformers import AutoTokenizer, GPT2LMHeadModel

    hf = GPT2LMHeadModel.from_pretrained(tiny_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tokenizer("Paris is the capital of", return_tensors="pt").input_ids
    with torch.no_grad():
        top = int(hf(ids).logits[0, -1].argmax())
    assert tokenizer.decode([top]) != " France"
    with serving(create_app(Settings(), {"tiny": tiny_model})) as url:
        open_page(page, url)
        page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
        info = page.text_content("#patch-info") or ""
        assert "no behaviour to localize" in info and "moves the metric most" not in info
        assert (page.input_value("#layer"), page.input_value("#head")) == ("2", "3")  # nearest
        top_cells = page.locator("#sweep-top")
        assert "No behaviour to localize" in (top_cells.text_content() or "")
        assert top_cells.locator(".chip-button").count() == 0


# -- the history panel (issue 11) ---------------------------------------------------------------


def _z(page: Any) -> list:
    return page.evaluate("document.getElementById('heatmap').data[0].z")


@pytest.mark.browser
@needs_chromium
def test_history_reopens_a_run_without_recomputing_and_compares(page: Any, base_url: str) -> None:
    page.goto(base_url)
    page.wait_for_selector("body[data-ready='1']")
    stored = page.evaluate(
        """async () => {
            const r = await fetch('/sweep', {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({dataset: 'ioi:4:1', component: 'z'})});
            return await r.json();
        }"""
    )
    other = page.evaluate(
        """async () => {
            const r = await fetch('/sweep', {method: 'POST',
              headers: {'Content-Type': 'application/json'},
              body: JSON.stringify({dataset: 'ioi:4:2', component: 'z'})});
            return await r.json();
        }"""
    )
    page.click("#history-refresh")
    page.click(f".history-open[data-run='{stored['run_id']}']")
    page.wait_for_selector(f"body[data-reopened='{stored['run_id']}']")
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    shown = _z(page)
    assert shown == stored["normalized"]  # the stored numbers, not a recomputation
    hover = page.evaluate("document.getElementById('heatmap').data[0].customdata[0][0][3]")
    assert "4 pairs" in hover and "±" in hover and "95% interval" in hover
    # The toggle greys out (empties) exactly the cells whose interval contains 0.
    page.check("#grey-ci")
    greyed = _z(page)
    ci = stored["ci"]
    for layer, row in enumerate(greyed):
        for head, value in enumerate(row):
            spans = ci["low"][layer][head] <= 0 <= ci["high"][layer][head]
            assert (value is None) == spans
    # Compare: the difference heatmap is the second run minus the first.
    page.check(f".history-tick[data-run='{stored['run_id']}']")
    page.check(f".history-tick[data-run='{other['run_id']}']")
    page.click("#history-compare")
    page.wait_for_selector("#history-diff:not(.hidden) .main-svg")
    diff = page.evaluate("document.getElementById('history-diff').data[0].z")
    expected = [
        [b - a for a, b in zip(ra, rb, strict=True)]
        for ra, rb in zip(stored["normalized"], other["normalized"], strict=True)
    ]
    for row, want in zip(diff, expected, strict=True):
        assert row == pytest.approx(want, abs=1e-9)
