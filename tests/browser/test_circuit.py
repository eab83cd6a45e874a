"""The circuit view (web/circuit.js) in headless Chromium: the graph, hover, exact checks of a
clicked edge, the faithfulness curve, exports, and GPT-2 small's role labels."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.browser.conftest import MODEL_NAME, needs_chromium
from tests.browser.test_page import open_page, run_sweep

pytestmark = [pytest.mark.browser, needs_chromium]


def find_edges(page: Any, method: str = "eap", top: int = 30) -> None:
    page.click("#example-ioi")
    page.select_option("#circuit-method", method)
    page.fill("#circuit-top", str(top))
    page.click("#run-edges")
    page.wait_for_selector("#circuit-graph:not(.hidden) svg .circuit-edge-path")


def edges_request(page: Any, top: int = 30) -> dict[str, Any]:
    """The /circuit/edges request for the page's prompts (EAP, the top `top` edges)."""
    return {
        "clean_prompt": page.input_value("#clean_prompt"),
        "corrupt_prompt": page.input_value("#corrupt_prompt"),
        "target_token": page.input_value("#target_token"),
        "wrong_token": page.input_value("#wrong_token"),
        "method": "eap",
        "top": top,
    }


def point_on(page: Any, edge: str) -> tuple[float, float]:
    """Viewport coordinates of the middle of an edge's drawn curve (on its stroke)."""
    page.locator(f'.circuit-edge-path[data-edge="{edge}"]').scroll_into_view_if_needed()
    return page.evaluate(
        """(edge) => {
            const path = document.querySelector(`.circuit-edge-path[data-edge="${edge}"]`);
            const p = path.getPointAtLength(path.getTotalLength() / 2);
            const m = path.getScreenCTM();
            return [m.a * p.x + m.c * p.y + m.e, m.b * p.x + m.d * p.y + m.f];
        }""",
        edge,
    )


def test_edges_are_drawn_hovered_and_checked_exactly(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    find_edges(page, "eap", 30)
    paths = page.locator("#circuit-svg .circuit-edge-path")
    assert paths.count() == 30
    summary = page.text_content("#circuit-summary") or ""
    assert f"computed on {MODEL_NAME}" in summary and "eap" in summary
    # the strongest edge, as the API ranks it, is drawn last (on top) and widest
    body = edges_request(page)
    api = httpx.post(f"{base_url}/circuit/edges", json=body, timeout=60).json()
    strongest = f"{api['edges'][0]['source']}->{api['edges'][0]['target']}"
    last = paths.nth(29)
    assert last.get_attribute("data-edge") == strongest
    widths = [float(paths.nth(i).get_attribute("stroke-width")) for i in range(30)]
    assert widths[-1] == max(widths)
    x, y = point_on(page, strongest)
    page.mouse.move(x, y)
    page.wait_for_selector("#circuit-tooltip:not(.hidden)")
    assert strongest in (page.text_content("#circuit-tooltip") or "")
    page.mouse.click(x, y)
    page.wait_for_selector("#circuit-exact")
    exact = httpx.post(
        f"{base_url}/circuit/verify",
        json={k: v for k, v in body.items() if k not in ("method", "top")} | {"edges": [strongest]},
        timeout=60,
    ).json()["edges"][0]["effect"]
    shown = page.text_content("#circuit-exact") or ""
    assert shown.startswith("exact effect: ") and abs(float(shown.split()[2]) - exact) < 1e-3
    assert page.locator(".circuit-edge-path.selected").get_attribute("data-edge") == strongest
    # fewer edges shown: redrawn without a new request
    page.fill("#circuit-top", "5")
    page.dispatch_event("#circuit-top", "change")
    page.wait_for_function("() => document.querySelectorAll('.circuit-edge-path').length === 5")


def test_faithfulness_curve_and_exports(page: Any, base_url: str, tmp_path: Path) -> None:
    open_page(page, base_url)
    find_edges(page, "eap-ig", 20)
    page.click("#run-curve")
    page.wait_for_selector("#circuit-curve:not(.hidden) #curve-svg")
    points = page.locator("#curve-svg .curve-point title").all_text_contents()
    assert points[0].startswith("top 0 edges") and points[-1].startswith("top 2000 edges")
    with page.expect_download() as info:
        page.click("#export-json")
    saved = tmp_path / "circuit.json"
    info.value.save_as(saved)
    data = json.loads(saved.read_text())
    assert data["method"] == "eap-ig" and data["model"] == MODEL_NAME and len(data["edges"]) == 2000
    with page.expect_download() as info:
        page.click("#export-svg")
    svg = tmp_path / "circuit.svg"
    info.value.save_as(svg)
    assert svg.read_text().startswith("<svg") and "circuit-edge-path" in svg.read_text()
    with page.expect_download() as info:
        page.click("#export-png")
    png = tmp_path / "circuit.png"
    info.value.save_as(png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000


@pytest.fixture(scope="module")
def gpt2_named_url(browser_model: LoadedModel) -> Iterator[str]:
    """The same random model served under the name 'gpt2': the page labels heads by name."""
    with serving(create_app(Settings(model="gpt2"), {"gpt2": browser_model})) as url:
        yield url


def test_gpt2_small_heads_carry_their_known_roles(page: Any, gpt2_named_url: str) -> None:
    open_page(page, gpt2_named_url)
    page.wait_for_selector("body[data-roles~='gpt2']", state="attached")  # roles.js has them
    page.click("#example-ioi")
    run_sweep(page)
    labels = page.locator("#heatmap .annotation-text").all_text_contents()
    assert sorted(labels).count("NM") == 3 and "SI" in labels and "nNM" in labels
    find_edges(page, "eap", 2000)
    roles = page.locator("#circuit-svg .circuit-role").all_text_contents()
    assert roles and set(roles) <= {"NM", "bNM", "nNM", "SI", "Ind", "DT", "PT"}
    assert "Wang et al. 2022" in (page.text_content("#circuit-svg") or "")


def test_graph_and_heatmap_share_one_colour_convention(page: Any, base_url: str) -> None:
    """Blue raises the metric in both: the heatmap's colour scale is blue at its positive end,
    a positive edge is drawn in a blue of that scale and a negative one in a red of it, and
    both legends say so."""
    open_page(page, base_url)
    page.click("#example-ioi")
    from tests.browser.test_page import run_sweep

    run_sweep(page)
    scale = page.evaluate("() => document.getElementById('heatmap').data[0].colorscale")
    assert "blue raises the metric, red lowers it" in (page.text_content("#sweep-summary") or "")
    blues = {colour.lower() for at, colour in scale if at > 0.5}
    reds = {colour.lower() for at, colour in scale if at < 0.5}
    find_edges(page, "eap", 30)
    legend = page.text_content("#circuit-svg") or ""
    assert "blue raises the metric, red lowers it" in legend
    scores = page.evaluate(
        """() => Array.from(document.querySelectorAll('#circuit-svg .circuit-edge-path'))
            .map((p) => [p.getAttribute('data-edge'), p.getAttribute('stroke')])"""
    )
    body = edges_request(page)
    api = httpx.post(f"{base_url}/circuit/edges", json=body, timeout=60).json()
    sign = {f"{e['source']}->{e['target']}": e["score"] >= 0 for e in api["edges"]}
    assert len(set(sign.values())) == 2  # both kinds drawn
    for edge, stroke in scores:
        assert stroke.lower() in (blues if sign[edge] else reds), (edge, stroke)
