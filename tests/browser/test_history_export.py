"""Exporting a run from the history panel (web/history.js): each row's Export menu offers the
formats the server exports that run's kind in (`GET /runs/{id}/export/{fmt}`), and choosing one
downloads the server's file under a name that says the run and its kind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import needs_chromium
from tests.browser.test_history_panel import history_item, latest_run
from tests.browser.test_page import open_page, run_sweep

pytestmark = [pytest.mark.browser, needs_chromium]

FORMATS = ("csv", "json", "png", "svg", "ipynb")


def offered(item: Any) -> list[str]:
    """The formats a row's Export menu offers (its first, empty choice is the menu's name)."""
    values = item.locator(".history-export option").evaluate_all("os => os.map(o => o.value)")
    assert values[0] == ""
    return list(values[1:])


def test_a_sweep_downloads_its_csv_from_the_panel(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    run_sweep(page)
    run = latest_run(base_url, "sweep")
    item = history_item(page, run["id"])
    with page.expect_download() as info:
        item.locator(".history-export").select_option("csv")
    download = info.value
    assert download.suggested_filename == f"actpatch-run-{run['id']}-sweep.csv"
    served = httpx.get(f"{base_url}/runs/{run['id']}/export/csv")
    assert served.status_code == 200
    assert Path(download.path()).read_bytes() == served.content
    assert served.content.startswith(b"layer,head,raw,normalized")
    # the menu reads "Export" again, ready for another format
    assert item.locator(".history-export").input_value() == ""
    with page.expect_download() as info:
        item.locator(".history-export").select_option("png")
    assert Path(info.value.path()).read_bytes()[:4] == b"\x89PNG"


def test_each_kind_offers_exactly_what_the_server_exports(page: Any, base_url: str) -> None:
    """A patch, a sweep and the views run with it (DLA, the lens): the menu offers a format
    when, and only when, the server answers it with a file."""
    open_page(page, base_url)  # the start-up patch
    run_sweep(page)  # and, beside it, DLA and the lens of the same prompts
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    for kind in ("patch", "sweep", "dla", "lens"):
        run = latest_run(base_url, kind)
        item = history_item(page, run["id"])
        answers = {
            fmt: httpx.get(f"{base_url}/runs/{run['id']}/export/{fmt}").status_code
            for fmt in FORMATS
        }
        assert set(answers.values()) <= {200, 422}, (kind, answers)
        assert set(offered(item)) == {f for f, s in answers.items() if s == 200}, (kind, answers)
    # a view run has no picture: no PNG (nor SVG) offered, and the server refuses one
    dla = history_item(page, latest_run(base_url, "dla")["id"])
    assert offered(dla) == ["csv", "json"]
    assert "PNG" not in (dla.locator(".history-export").text_content() or "")


# Runs of the other kinds, posted to the API (the page keeps them as it keeps its own): the body
# of each beside the prompts.
PROMPTS = {
    "clean_prompt": "When Mary and John went to the zoo, John gave a drink to",
    "corrupt_prompt": "When Mary and John went to the zoo, Mary gave a drink to",
    "target_token": " Mary",
    "wrong_token": " John",
}
POSTED = {
    "attribution": ("/attribute", {"component": "resid_pre", "method": "atp"}),
    "path": ("/path", {"receivers": ["2.1.v"]}),
    "edges": ("/circuit/edges", {"method": "eap", "top": 5}),
    "evaluation": ("/circuit/evaluate", {"ranked": ["a0.h1->m0", "m0->logits"], "sizes": [0, 2]}),
}


def test_the_patching_kinds_offer_their_csv_as_the_server_exports_it(
    page: Any, base_url: str
) -> None:
    """An attribution, path patching, edges and a circuit's evaluation: each row offers CSV
    (their tidy table) when, and only when, the server answers it with a file."""
    open_page(page, base_url)
    for kind, (route, body) in POSTED.items():
        answer = httpx.post(f"{base_url}{route}", json={**PROMPTS, **body}, timeout=120)
        assert answer.status_code == 200, (kind, answer.text)
        run = latest_run(base_url, kind)
        assert run["id"] == answer.json()["run_id"]
        item = history_item(page, run["id"])
        answers = {
            fmt: httpx.get(f"{base_url}/runs/{run['id']}/export/{fmt}").status_code
            for fmt in FORMATS
        }
        assert set(answers.values()) <= {200, 422}, (kind, answers)
        assert set(offered(item)) == {f for f, s in answers.items() if s == 200}, (kind, answers)
        assert "csv" in offered(item), kind
        with page.expect_download() as info:
            item.locator(".history-export").select_option("csv")
        served = httpx.get(f"{base_url}/runs/{run['id']}/export/csv").content
        assert Path(info.value.path()).read_bytes() == served


def test_a_run_deleted_meanwhile_is_said_not_downloaded(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    run_sweep(page)
    run = latest_run(base_url, "sweep")
    item = history_item(page, run["id"])
    assert httpx.delete(f"{base_url}/runs/{run['id']}").status_code == 200
    downloads: list[Any] = []
    page.on("download", lambda download: downloads.append(download))
    item.locator(".history-export").select_option("csv")
    note = page.locator("#history-note:not(.hidden)")
    note.wait_for()
    assert f"Run #{run['id']} cannot be exported as CSV" in (note.text_content() or "")
    page.wait_for_selector(f".history-item[data-run='{run['id']}']", state="detached")
    assert downloads == []
