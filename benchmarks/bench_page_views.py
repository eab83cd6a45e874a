"""Time the page's attention view: from a click on a head cell to the pattern drawn.

    python benchmarks/bench_page_views.py                 # the bundled demo model, 20 clicks
    python benchmarks/bench_page_views.py --clicks 30 --model demo

The server is the real one (`actpatch.api.serve`) in a subprocess with a fresh history; the page
runs in Debian's headless Chromium through Playwright (`make browser-deps`), 1440 x 1000. On the
IOI pair it runs a head sweep (z), then clicks distinct head cells of the heatmap one after
another (each head once: nothing comes from the page's own cache of patterns), then the heads
not clicked yet on the DLA heatmap (which opens the pattern without a patch). Per click:

- click to drawn: from the mouse button going down on the cell to the first frame after both
  patterns (clean and corrupted) are drawn by Plotly (a `requestAnimationFrame` then a task,
  i.e. after the browser has painted them). The click also runs that cell's single patch, as
  it does on the page: the two requests share the server;
- request: the `POST /attention` request's own time, as the browser's resource timing saw it;
- server: the time the server reports for it (`seconds`: the experiment is the sweep's, cached).
The issue's target: the pattern within 100 ms of a click on the demo model.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository, for tests/
from tests.browser.chromium import cell_center, launch

# Each click's times, recorded in the page: the button going down (capture phase, before Plotly
# sees it) and the first frame painted after the attention panel says a pattern was drawn.
PROBE = """
window.__clicks = [];
document.addEventListener("mousedown", () => {
  window.__clicks.push({ down: performance.now() });
}, true);
window.addEventListener("DOMContentLoaded", () => {
  const panel = document.getElementById("attn-panel");
  new MutationObserver(() => {
    const click = window.__clicks[window.__clicks.length - 1];
    requestAnimationFrame(() => setTimeout(() => {
      if (click && click.drawn === undefined) click.drawn = performance.now();
    }, 0));
  }).observe(panel, { attributes: true, attributeFilter: ["data-drawn"] });
});
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: str, port: int, data_dir: str) -> subprocess.Popen[bytes]:
    code = f"from actpatch.api import serve; serve(model={model!r}, port={port})"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACTPATCH_DATA_DIR": data_dir}
    quiet = subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=quiet, stderr=quiet)


def wait_until_up(url: str, server: subprocess.Popen[bytes], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "min_ms": round(ms[0], 1),
        "max_ms": round(ms[-1], 1),
        "n": len(ms),
    }


def click_series(page: Any, plot: str, heads: list[tuple[int, int]]) -> dict[str, Any]:
    """Click each head of heatmap `plot` in turn; the times from click to drawn, and the
    `/attention` requests' own."""
    server_ms: list[float] = []

    def on_response(response: Any) -> None:
        if response.url.endswith("/attention"):
            server_ms.append(1000 * response.json()["seconds"])

    page.on("response", on_response)
    page.locator(f"#{plot}").scroll_into_view_if_needed()
    page.evaluate("() => { window.__clicks = []; performance.clearResourceTimings(); }")
    for i, (layer, head) in enumerate(heads):
        page.mouse.click(*cell_center(page, layer, head, plot=plot))
        page.wait_for_selector(f"#attn-panel[data-head='L{layer}H{head}']")
        page.wait_for_function(f"() => window.__clicks[{i}].drawn !== undefined")
        page.wait_for_selector("#run-patch:not([disabled])")  # a sweep click's patch, too
        time.sleep(0.1)  # the next click starts from a quiet page
    page.remove_listener("response", on_response)
    clicks = page.evaluate("() => window.__clicks")
    requests = page.evaluate(
        """() => performance.getEntriesByType("resource")
            .filter((e) => e.name.endsWith("/attention")).map((e) => e.responseEnd - e.startTime)"""
    )
    return {
        "heads": " ".join(f"L{layer}H{head}" for layer, head in heads),
        "click_to_drawn": summary([c["drawn"] - c["down"] for c in clicks]),
        "attention_request": summary(requests),
        "attention_server": summary(server_ms),
    }


def measure(page: Any, url: str, n_clicks: int) -> dict[str, Any]:
    page.add_init_script(PROBE)
    page.goto(url)
    page.wait_for_selector("body[data-ready='1']")
    page.click("#example-ioi")
    page.wait_for_function("() => document.querySelectorAll('#tokens .tok.differ').length == 2")
    page.click("#run-sweep")
    page.wait_for_selector("#heatmap:not(.hidden) .main-svg")
    page.wait_for_selector("#sweep-progress.hidden", state="attached")
    page.wait_for_selector("#dla-heatmap:not(.hidden) .main-svg")  # DLA and lens run with it
    page.wait_for_selector("#lens-chart:not(.hidden) .main-svg")
    shape = page.evaluate("() => document.getElementById('heatmap').data[0].z")
    heads = [(layer, head) for layer in range(len(shape)) for head in range(len(shape[0]))]
    if n_clicks > len(heads):
        raise SystemExit(f"the model has {len(heads)} heads: ask for at most that many clicks")
    return {
        # the sweep's heatmap: the click opens the pattern and runs the cell's patch alongside
        "sweep_click": click_series(page, "heatmap", heads[:n_clicks]),
        # the DLA's heatmap, on the heads not clicked yet: the pattern alone
        "dla_click_no_patch": click_series(page, "dla-heatmap", heads[n_clicks:][:n_clicks]),
    }


def run(model: str, n_clicks: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="actpatch-bench-") as data_dir:
        server = start_server(model, port, data_dir)
        try:
            wait_until_up(url, server)
            with sync_playwright() as playwright:
                browser = launch(playwright)
                page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
                page.set_default_timeout(60_000)
                result = measure(page, url, n_clicks)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    return {"model": model, "target_ms": 100, **result}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--clicks", type=int, default=20)
    args = parser.parse_args()
    print(json.dumps(run(args.model, args.clicks), indent=2))


if __name__ == "__main__":
    main()
