"""The history panel (web/history.js): titles that say what ran on which prompts, "Open" that
puts a run's whole form back, circuit runs kept too, the data directory it lists, and runs of
a model this server does not serve."""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

from actpatch.history import History
from tests.browser.conftest import MODEL_NAME, needs_chromium
from tests.browser.test_page import open_page, run_patch
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pytestmark = [pytest.mark.browser, needs_chromium]


def history_item(page: Any, run_id: int) -> Any:
    page.click("#history-refresh")
    item = page.locator(f".history-item[data-run='{run_id}']")
    item.wait_for()
    return item


def latest_run(base_url: str, kind: str) -> dict[str, Any]:
    return httpx.get(f"{base_url}/runs", params={"kind": kind, "limit": 1}).json()["runs"][0]


def test_a_patch_reopens_with_its_whole_form(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    page.select_option("#metric", "logprob")
    page.select_option("#direction", "noising")
    page.fill("#layer", "3")
    page.fill("#head", "5")
    run_patch(page)
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('L3H5')"
    )
    run = latest_run(base_url, "patch")
    stored = httpx.get(f"{base_url}/runs/{run['id']}").json()
    item = history_item(page, run["id"])
    # the title: kind, model's short name, component and head, the prompts whole (no cut at 40)
    title = item.locator(".history-label").text_content() or ""
    assert title == f"patch · {MODEL_NAME} · z L3H5 · {IOI_CLEAN!r} vs {IOI_CORRUPT!r} → ' Mary'"
    assert f"model: {MODEL_NAME}" in (item.get_attribute("title") or "")  # the rest on hover
    # another experiment in the form, then "Open": every field comes back, and the numbers
    page.click("#example-factual")
    page.select_option("#metric", "")
    page.select_option("#direction", "denoising")
    item.locator(".history-open").click()
    page.wait_for_selector(f"body[data-reopened='{run['id']}']")
    form = {
        f: page.input_value(f"#{f}")
        for f in ("clean_prompt", "corrupt_prompt", "target_token", "wrong_token")
    }
    form |= {f: page.input_value(f"#{f}") for f in ("component", "metric", "direction")}
    form |= {f: page.input_value(f"#{f}") for f in ("layer", "head")}
    assert form == {
        "clean_prompt": IOI_CLEAN,
        "corrupt_prompt": IOI_CORRUPT,
        "target_token": " Mary",
        "wrong_token": " John",
        "component": "z",
        "metric": "logprob",
        "direction": "noising",
        "layer": "3",
        "head": "5",
    }
    assert stored["request"]["metric"] == "logprob" and stored["request"]["head"] == 5
    assert page.text_content("#recovery") == f"{stored['result']['recovery_pct']:.1f}%"
    # the card shows the reopened run as the form's own result: not greyed
    assert "stale-result" not in (page.get_attribute("#patch-result", "class") or "")
    assert "clean_prompt=When+Mary" in page.url and "metric=logprob" in page.url


def test_circuit_runs_are_kept_and_reopen(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    page.select_option("#circuit-method", "eap")
    page.click("#run-edges")
    page.wait_for_selector("#circuit-graph:not(.hidden) .circuit-edge-path", state="attached")
    page.click("#run-curve")
    page.wait_for_selector("#circuit-curve:not(.hidden) #curve-svg")
    edges = latest_run(base_url, "edges")
    curve = latest_run(base_url, "evaluation")
    assert edges["label"].startswith(f"eap · {IOI_CLEAN!r}")
    assert curve["label"].startswith("faithfulness curve to 2000 edges")
    stored = httpx.get(f"{base_url}/runs/{edges['id']}").json()["result"]
    # another method and prompts in the form; "Open" puts the edges' back and redraws them
    page.click("#example-factual")
    page.select_option("#circuit-method", "eap-ig")
    page.evaluate("() => { document.getElementById('circuit-graph').textContent = ''; }")
    item = history_item(page, edges["id"])
    assert (item.locator(".history-label").text_content() or "").startswith(
        f"edges · {MODEL_NAME} · eap · "
    )
    item.locator(".history-open").click()
    page.wait_for_selector(f"body[data-reopened='{edges['id']}']")
    page.wait_for_selector("#circuit-graph .circuit-edge-path", state="attached")
    assert page.input_value("#circuit-method") == "eap"
    assert page.input_value("#clean_prompt") == IOI_CLEAN
    drawn = page.locator(".circuit-edge-path").last.get_attribute("data-edge")
    assert drawn == f"{stored['edges'][0]['source']}->{stored['edges'][0]['target']}"
    assert "stale-result" not in (page.get_attribute("#circuit-graph", "class") or "")


def test_the_panel_names_its_data_directory_and_runs_of_another_model(
    page: Any, base_url: str
) -> None:
    # tests/conftest.py points ACTPATCH_DATA_DIR at a fresh folder: the server keeps runs there,
    # and so does the CLI's --save (here: History(), as `actpatch runs` opens it)
    data_dir = os.environ["ACTPATCH_DATA_DIR"]
    history = History()
    request = {"clean_prompt": "a b", "corrupt_prompt": "a c", "target_token": " x"}
    result = {
        "model": "elsewhere/gpt2-xl",
        "backend": "fast",
        "component": "z",
        "layer": 1,
        "head": 0,
        "pos": None,
        "clean_prob": 0.5,
        "corrupt_prob": 0.1,
        "patched_prob": 0.3,
        "recovery_pct": 50.0,
        "clean_rank": 1,
        "corrupt_rank": 2,
        "patched_rank": 1,
        "top_clean": [],
        "top_corrupt": [],
        "top_patched": [],
        "metric": "prob",
        "metric_clean": 0.5,
        "metric_corrupt": 0.1,
        "metric_patched": 0.3,
        "metric_normalized": 0.5,
        "direction": "denoising",
        "warnings": [],
        "seconds": 0.01,
    }
    run_id = history.store("patch", request, result)
    history.close()
    open_page(page, base_url)
    assert data_dir in (page.text_content("#history-where") or "")
    item = history_item(page, run_id)
    assert (item.locator(".history-label").text_content() or "").startswith("patch · gpt2-xl · ")
    assert item.locator(".history-other").text_content() == "another model"
    item.locator(".history-open").click()
    page.wait_for_selector(f"body[data-reopened='{run_id}']")
    note = page.text_content("#history-note") or ""
    assert "computed on elsewhere/gpt2-xl, which this server does not serve" in note
    assert page.input_value("#model") == MODEL_NAME and page.input_value("#clean_prompt") == "a b"
    assert page.text_content("#recovery") == "50.0%"


def test_pin_and_unpin_a_run_from_its_row(page: Any, base_url: str) -> None:
    """Each row's Pin button pins the run on the server (`PATCH /runs/{id}`), marks the row, and
    turns into Unpin; a fresh page reads the mark from the server; a run deleted meanwhile says
    why it could not be pinned."""
    history = History()
    request = {"clean_prompt": "pin me", "corrupt_prompt": "pin you", "target_token": " x"}
    run_id, gone_id = (history.store("patch", request, {"model": MODEL_NAME}) for _ in range(2))
    history.close()

    def pinned_on_server(run_id: int) -> bool:
        return httpx.get(f"{base_url}/runs/{run_id}").json()["pinned"]

    open_page(page, base_url)
    item = history_item(page, run_id)
    button = item.locator(".history-pin")
    assert button.text_content() == "Pin" and button.get_attribute("aria-pressed") == "false"
    assert "pinned" not in (item.get_attribute("class") or "").split()
    button.click()
    page.wait_for_selector(f".history-item.pinned[data-run='{run_id}']")
    assert pinned_on_server(run_id) and not pinned_on_server(gone_id)
    assert button.text_content() == "Unpin" and button.get_attribute("aria-pressed") == "true"
    assert item.locator(".history-pinned").text_content() == "pinned"

    open_page(page, base_url)  # the mark is the server's, not the page's memory
    item = history_item(page, run_id)
    assert "pinned" in (item.get_attribute("class") or "").split()
    item.locator(".history-pin").click()
    page.wait_for_selector(f".history-item:not(.pinned)[data-run='{run_id}']")
    assert not pinned_on_server(run_id)
    assert item.locator(".history-pin").text_content() == "Pin"
    assert item.locator(".history-pinned").count() == 0

    gone = history_item(page, gone_id)
    httpx.delete(f"{base_url}/runs/{gone_id}").raise_for_status()
    gone.locator(".history-pin").click()
    page.wait_for_selector("#history-note:not(.hidden)")
    note = page.text_content("#history-note") or ""
    assert f"Run #{gone_id} could not be pinned" in note and f"no run {gone_id}" in note


def test_a_run_deleted_meanwhile_is_said_not_thrown(page: Any, base_url: str) -> None:
    """Open or Compare on a run that retention or another tab deleted since the list was read:
    the panel says so under the list and drops its row (it threw, and showed nothing)."""
    open_page(page, base_url)
    for component in ("z", "resid_pre"):  # two sweeps: the same one again would be one run
        page.select_option("#component", component)
        page.click("#run-sweep")
        page.wait_for_selector("#sweep-progress.hidden", state="attached")
        page.wait_for_selector("#heatmap .main-svg")
    run_patch(page)
    patch = latest_run(base_url, "patch")
    sweeps = httpx.get(f"{base_url}/runs", params={"kind": "sweep", "limit": 2}).json()["runs"]
    history_item(page, patch["id"])
    assert httpx.delete(f"{base_url}/runs/{patch['id']}").status_code == 200
    page.click(f".history-open[data-run='{patch['id']}']")
    note = page.locator("#history-note")
    note.filter(has_text=f"Run #{patch['id']} cannot be opened").wait_for()
    assert "deleted" in (note.text_content() or "")  # the server's reason, as it says it
    page.locator(f".history-item[data-run='{patch['id']}']").wait_for(state="detached")
    # two sweeps ticked, one of them deleted before Compare
    for run in sweeps:
        page.check(f".history-tick[data-run='{run['id']}']")
    assert httpx.delete(f"{base_url}/runs/{sweeps[0]['id']}").status_code == 200
    page.click("#history-compare")
    note.filter(has_text="cannot be compared").wait_for()
    page.locator(f".history-item[data-run='{sweeps[0]['id']}']").wait_for(state="detached")
