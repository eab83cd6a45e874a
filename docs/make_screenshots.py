"""Regenerate docs/screenshots/: the page on the bundled demo model, in headless Chromium.

    make screenshots          # = python docs/make_screenshots.py docs/screenshots

Starts the app on `demo` in a background thread, opens the page with Playwright and Debian's
Chromium (`make browser-deps`), and saves: the first screen (the specification's example, with
the head that matters picked by a head sweep), a head sweep on IOI with a cell's patch, a
position sweep, the error messages, and the views inside the model: the clicked head's attention
pattern beside the sweep, direct logit attribution and the logit lens (05 to 07).
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from actpatch.api import Settings, create_app
from actpatch.models import load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from tests.browser.chromium import cell_center, launch


def start_server() -> tuple[uvicorn.Server, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    # A fresh history, so the pictures show only the runs they make.
    data_dir = tempfile.mkdtemp(prefix="actpatch-screenshots-")
    app = create_app(Settings(data_dir=data_dir), {"demo": load_model("demo")})
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, f"http://127.0.0.1:{port}"


def run_sweep(page: Any) -> None:
    page.click("#run-sweep")
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#sweep-progress.hidden", state="attached")


def take(page: Any, url: str, folder: Path) -> None:
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.wait_for_selector("#patch-result:not(.hidden)")
    page.screenshot(path=str(folder / "01-spec-example.png"), full_page=True)
    page.click("#example-ioi")
    page.wait_for_function("() => document.querySelectorAll('#tokens .tok.differ').length == 2")
    run_sweep(page)
    layer, head = int(page.input_value("#layer")), int(page.input_value("#head"))
    page.mouse.click(*cell_center(page, layer, head))
    page.wait_for_function(
        f"() => document.querySelector('#patch-metric').textContent.includes('L{layer}H{head} ·')"
    )
    page.mouse.move(*cell_center(page, layer, head))
    page.wait_for_selector(".hoverlayer .hovertext")
    page.screenshot(path=str(folder / "02-head-sweep.png"), full_page=True)
    take_views(page, folder, layer, head)
    page.select_option("#component", "resid_pre")
    run_sweep(page)
    page.mouse.click(*cell_center(page, layer, 10))  # the second mention of the subject
    page.wait_for_function(
        f"() => document.querySelector('#patch-metric').textContent.includes('L{layer} · pos 10')"
    )
    page.screenshot(path=str(folder / "03-position-sweep.png"), full_page=True)
    page.fill("#target_token", " Mary Ann")
    page.fill("#layer", "99")
    page.click("#run-patch")
    page.wait_for_selector("#patch-error:not(.hidden)")
    page.screenshot(path=str(folder / "04-errors.png"), full_page=True)


def hover(page: Any, plot: str, x: Any, y: Any, axes: str = "") -> None:
    """Move the mouse over point (x, y) of Plotly plot `plot` (on its axes x{axes}, y{axes})."""
    point = page.evaluate(
        """([plot, x, y, axes]) => {
            const gd = document.getElementById(plot), r = gd.getBoundingClientRect();
            const xa = gd._fullLayout["xaxis" + axes], ya = gd._fullLayout["yaxis" + axes];
            return [r.left + xa._offset + xa.d2p(x), r.top + ya._offset + ya.d2p(y)];
        }""",
        [plot, x, y, axes],
    )
    page.mouse.move(*point)
    page.wait_for_selector(f"#{plot} .hoverlayer .hovertext")


def take_views(page: Any, folder: Path, layer: int, head: int) -> None:
    """The views inside the model, after a head sweep and a click on head (layer, head)."""
    page.wait_for_selector(f"#attn-panel[data-head='L{layer}H{head}']")
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    # The pattern beside the sweep: the final query's row, on the key it reads most.
    clean = page.evaluate("() => document.getElementById('attn-clean').data[0]")
    last = clean["z"][-1]
    page.locator("#attn-panel").scroll_into_view_if_needed()
    hover(page, "attn-clean", clean["x"][last.index(max(last))], clean["y"][-1])
    sweep = page.locator(".card.sweep").bounding_box()
    panel = page.locator("#attn-panel").bounding_box()
    scrolled = page.evaluate("() => window.scrollY")  # the boxes are the viewport's
    top = min(sweep["y"], panel["y"]) - 8
    bottom = max(sweep["y"] + sweep["height"], panel["y"] + panel["height"]) + 8
    clip = {"x": 0, "y": top + scrolled, "width": 1440, "height": bottom - top}
    page.screenshot(path=str(folder / "05-attention.png"), clip=clip, full_page=True)
    # Direct logit attribution: the head the sweep found, hovered.
    page.locator("#dla-panel").scroll_into_view_if_needed()
    hover(page, "dla-heatmap", head, layer)
    page.locator("#dla-panel").screenshot(path=str(folder / "06-dla.png"))
    # The logit lens, hovered at the model's own output.
    labels = page.evaluate("() => document.getElementById('lens-chart').data[0].x")
    values = page.evaluate("() => document.getElementById('lens-chart').data[0].y")
    page.locator("#lens-panel").scroll_into_view_if_needed()
    hover(page, "lens-chart", labels[-1], values[-1])
    page.locator("#lens-panel").screenshot(path=str(folder / "07-lens.png"))
    # Path patching: every head's path into the logits, the card's defaults.
    page.locator("#path-card").scroll_into_view_if_needed()
    page.click("#run-path")
    page.wait_for_selector("#path-heatmap[data-drawn] .main-svg")
    page.locator("#path-card").screenshot(path=str(folder / "08-path-patching.png"))


def main() -> None:
    from playwright.sync_api import sync_playwright

    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    server, url = start_server()
    try:
        with sync_playwright() as playwright:
            browser = launch(playwright)
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            page.set_default_timeout(30_000)
            take(page, url, folder)
            browser.close()
    finally:
        server.should_exit = True
    print(f"saved screenshots in {folder}")


if __name__ == "__main__":
    main()
