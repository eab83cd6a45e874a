"""Inside the model (web/views.js) in Chromium: a head's attention pattern, direct logit
attribution and the logit lens, each drawn with the numbers `POST /attention`, `/dla` and `/lens`
answer (those are held to TransformerLens's own in tests/api/routes/test_views.py)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from tests.browser.chromium import cell_center
from tests.browser.conftest import MODEL_NAME, needs_chromium
from tests.browser.test_page import IOI_STATE, open_page, run_sweep
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pytestmark = [pytest.mark.browser, needs_chromium]

IOI = {
    "clean_prompt": IOI_CLEAN,
    "corrupt_prompt": IOI_CORRUPT,
    "target_token": " Mary",
    "wrong_token": " John",
}


def plotted(page: Any, plot: str) -> list[dict[str, Any]]:
    """What Plotly drew in `plot`: each trace's z (heatmaps) or x and y (lines)."""
    return page.evaluate(
        """(plot) => document.getElementById(plot).data.map(
            (t) => ({ z: t.z, x: t.x, y: t.y, name: t.name }))""",
        plot,
    )


def attention_drawn(page: Any, name: str) -> None:
    page.wait_for_selector(f"#attn-panel[data-head='{name}']")
    page.wait_for_selector("#attn-clean .main-svg")


def shown_number(x: float) -> str:
    """A number as the page writes one (4 significant digits; for |x| in [1e-3, 1e4))."""
    return f"{x:.4g}"


def test_clicking_a_head_cell_draws_its_pattern_as_the_api_computes_it(
    page: Any, base_url: str
) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    run_sweep(page)
    page.mouse.click(*cell_center(page, 4, 7))
    attention_drawn(page, "L4H7")
    # The click still runs that cell's single patch.
    page.wait_for_function(
        "() => document.querySelector('#patch-metric').textContent.includes('z · L4H7 · ')"
    )
    expected = httpx.post(f"{base_url}/attention", json={**IOI, "layer": 4, "head": 7}).json()
    clean, corrupt = plotted(page, "attn-clean")[0], plotted(page, "attn-corrupt")[0]
    assert clean["z"] == expected["clean"] and corrupt["z"] == expected["corrupt"]
    # the pattern is causal and each query's row sums to 1 (a property, not the page's numbers)
    for row_index, row in enumerate(clean["z"]):
        assert sum(row) == pytest.approx(1, abs=1e-4)
        assert all(w == 0 for w in row[row_index + 1 :])
    # the tokens label the axes, the corrupted run's own on its side
    ticks = page.locator("#attn-corrupt .xtick text").all_text_contents()
    assert ticks[:3] == ["0 <|endoftext|>", "1 When", "2 ␣Mary"] and ticks[10] == "10 ␣Mary"
    assert page.locator("#attn-clean .xtick text").all_text_contents()[10] == "10 ␣John"
    summary = page.text_content("#attn-summary") or ""
    assert f"computed on {MODEL_NAME}" in summary and "L4H7" in summary
    assert "Attention pattern · L4H7" in (page.text_content("#attn-title") or "")

    # Hovering a cell shows its weight: the final query's most-read key.
    last = expected["clean"][-1]
    key = last.index(max(last))
    page.locator("#attn-clean").scroll_into_view_if_needed()
    box = page.evaluate(
        """([q, k]) => {
            const gd = document.getElementById("attn-clean");
            const r = gd.getBoundingClientRect();
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            return [r.left + xa._offset + xa.l2p(k), r.top + ya._offset + ya.l2p(q)];
        }""",
        [len(last) - 1, key],
    )
    page.mouse.move(*box)
    page.wait_for_selector(".hoverlayer .hovertext")
    hover = page.text_content("#attn-clean .hoverlayer") or ""
    assert f"query {len(last) - 1} ␣to" in hover and f"weight {shown_number(last[key])}" in hover


def test_the_single_patch_of_a_head_offers_its_attention(page: Any, base_url: str) -> None:
    open_page(page, f"{base_url}/?{urlencode(IOI_STATE)}")
    page.wait_for_selector("#show-attention:not(.hidden)")
    assert page.text_content("#show-attention") == "Show attention of L9H9"
    page.click("#show-attention")
    attention_drawn(page, "L9H9")
    expected = httpx.post(f"{base_url}/attention", json={**IOI, "layer": 9, "head": 9}).json()
    assert plotted(page, "attn-clean")[0]["z"] == expected["clean"]
    # a patch of something other than a head offers nothing
    page.select_option("#component", "resid_pre")
    page.fill("#pos", "3")
    page.click("#run-patch")
    page.wait_for_selector("#show-attention.hidden", state="attached")


def test_dla_heatmap_and_parts_are_the_api_numbers(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    run_sweep(page)  # DLA and the lens run beside every sweep of the prompts
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    expected = httpx.post(f"{base_url}/dla", json=IOI).json()
    heads, mlp = plotted(page, "dla-heatmap")
    assert heads["z"] == expected["difference"]["heads"]
    assert mlp["z"] == [[v] for v in expected["difference"]["mlp"]]
    summary = page.text_content("#dla-summary") or ""
    assert f"computed on {MODEL_NAME}" in summary and "clean − corrupted" in summary
    assert "blue raises the metric" in summary and "red lowers it" in summary
    for run in ("clean", "corrupt"):
        page.select_option("#dla-run", run)
        page.wait_for_function(
            f"() => document.querySelector('#dla-summary').textContent"
            f".includes('· {'clean' if run == 'clean' else 'corrupted'} ·')"
        )
        heads, mlp = plotted(page, "dla-heatmap")
        assert heads["z"] == expected[run]["heads"]
        assert mlp["z"] == [[v] for v in expected[run]["mlp"]]
        parts = dict(
            zip(
                page.locator("#dla-parts .part-label").all_text_contents(),
                page.locator("#dla-parts .part-value").all_text_contents(),
                strict=True,
            )
        )
        want = expected[run]
        assert parts["sum of parts (total)"] == shown_number(want["total"])
        assert parts["model's own (actual)"] == shown_number(want["actual"])
        for layer, value in enumerate(want["mlp"]):
            if 1e-3 <= abs(value) < 1e4:
                assert parts[f"MLP {layer}"] == shown_number(value)
    # the largest direct share is the API's, and a click on a head opens its pattern
    page.select_option("#dla-run", "clean")
    page.wait_for_function(
        "() => document.querySelector('#dla-summary').textContent.includes('· clean ·')"
    )
    heads_clean = expected["clean"]["heads"]
    best = max(
        (
            (abs(v), layer, head)
            for layer, row in enumerate(heads_clean)
            for head, v in enumerate(row)
        )
    )
    first = page.locator("#dla-top .chip-button").first.text_content() or ""
    assert first.startswith(f"L{best[1]}H{best[2]} ")
    page.locator("#dla-heatmap").scroll_into_view_if_needed()
    page.mouse.click(*cell_center(page, 2, 5, plot="dla-heatmap"))
    attention_drawn(page, "L2H5")


def test_logit_lens_draws_the_api_numbers(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    page.click("#run-views")
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    expected = httpx.post(f"{base_url}/lens", json=IOI).json()
    clean, corrupt = plotted(page, "lens-chart")
    assert (clean["name"], corrupt["name"]) == ("clean", "corrupted")
    assert clean["x"] == expected["labels"] and len(expected["labels"]) == 13  # 12 layers + out
    assert clean["y"] == expected["clean"]["metric"]
    assert corrupt["y"] == expected["corrupt"]["metric"]
    ranks = {
        row.get_attribute("data-run"): row.locator("td").all_text_contents()
        for row in page.locator("#lens-ranks tbody tr").all()
    }
    assert ranks["clean"] == [str(r) for r in expected["clean"]["target_rank"]]
    assert ranks["corrupt"] == [str(r) for r in expected["corrupt"]["target_rank"]]
    assert f"computed on {MODEL_NAME}" in (page.text_content("#lens-summary") or "")
    # after attention too: a point between each attention layer and its MLP
    page.check("#lens-sublayers")
    page.wait_for_function("() => document.getElementById('lens-chart').data[0].x.length === 25")
    expected = httpx.post(f"{base_url}/lens", json={**IOI, "sublayers": True}).json()
    assert plotted(page, "lens-chart")[0]["y"] == expected["clean"]["metric"]


def test_views_say_when_the_experiment_has_changed(page: Any, base_url: str) -> None:
    open_page(page, base_url)
    page.click("#example-ioi")
    page.click("#run-views")
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    assert not page.is_visible("#views-stale")
    page.fill("#target_token", " John")
    page.wait_for_selector("#views-stale:not(.hidden)")
    page.fill("#target_token", " Mary")  # back to what was computed
    page.wait_for_selector("#views-stale.hidden", state="attached")


def test_pattern_labels_render_tokens_as_text(page: Any, base_url: str) -> None:
    evil = '<script>window.pwned=1</script><img src=x onerror="window.pwned=2">'
    state = {**IOI_STATE, "clean_prompt": evil + " is", "corrupt_prompt": evil + " was"}
    state.update(layer="0", head="1")
    open_page(page, f"{base_url}/?{urlencode(state)}")
    page.click("#show-attention")
    attention_drawn(page, "L0H1")
    page.click("#run-views")
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    assert page.evaluate("() => window.pwned") is None
    assert page.locator("#views img, #views script").count() == 0
    ticks = page.locator("#attn-clean .xtick text").all_text_contents()
    assert ticks[1:4] == ["1 <", "2 script", "3 >"]
