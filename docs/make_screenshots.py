"""Regenerate docs/screenshots/: the page on the bundled demo model, in headless Chromium.

    make screenshots          # = python docs/make_screenshots.py docs/screenshots

Starts the app on `demo` in a background thread, opens the page with Playwright and Debian's
Chromium (`make browser-deps`), and saves: the first screen (the specification's example, with
the head that matters picked by a head sweep), a head sweep on IOI with a cell's patch, a
position sweep, and the error messages.
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
        f"() => document.querySelector('#patch-metric').textContent"
        f".includes('layer {layer} · head {head}')"
    )
    page.mouse.move(*cell_center(page, layer, head))
    page.wait_for_selector(".hoverlayer .hovertext")
    page.screenshot(path=str(folder / "02-head-sweep.png"), full_page=True)
    page.select_option("#component", "resid_pre")
    run_sweep(page)
    page.mouse.click(*cell_center(page, layer, 10))  # the second mention of the subject
    page.wait_for_function(
        f"() => document.querySelector('#patch-metric').textContent"
        f".includes('layer {layer} · pos 10')"
    )
    page.screenshot(path=str(folder / "03-position-sweep.png"), full_page=True)
    page.fill("#target_token", " Mary Ann")
    page.fill("#layer", "99")
    page.click("#run-patch")
    page.wait_for_selector("#patch-error:not(.hidden)")
    page.screenshot(path=str(folder / "04-errors.png"), full_page=True)


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
