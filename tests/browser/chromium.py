"""Driving the page in Debian's headless Chromium: shared by the browser tests and by
`docs/make_screenshots.py`, so the pictures come from the browser the tests use."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright: Any) -> Any:
    """Chromium through Playwright, offline and headless (`make browser-deps` installs it)."""
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
    )


def cell_center(page: Any, layer: int, x: int, plot: str = "heatmap") -> tuple[float, float]:
    """The page coordinates of cell (layer, x) of the heatmap `plot` (the sweep's unless told),
    from Plotly's own axes."""
    return page.evaluate(
        """([layer, x, plot]) => {
            const gd = document.getElementById(plot);
            const box = gd.getBoundingClientRect();
            const xa = gd._fullLayout.xaxis, ya = gd._fullLayout.yaxis;
            return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(layer)];
        }""",
        [layer, x, plot],
    )
