"""The page: index.html, its scripts and styles, and Plotly.js from the installed package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import plotly
from fastapi.responses import FileResponse

from ..routing import make_router

router = make_router(include_in_schema=False)
WEB_DIR = Path(str(resources.files("actpatch") / "web"))
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
NO_CACHE = {"Cache-Control": "no-cache"}


@router.get("/")
def index() -> FileResponse:
    """The explorer page."""
    return FileResponse(WEB_DIR / "index.html", headers=NO_CACHE)


@router.get("/vendor/plotly.min.js")
def plotly_js() -> FileResponse:
    """Plotly.js as shipped inside the installed `plotly` package (no CDN: works offline)."""
    return FileResponse(
        PLOTLY_JS, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
    )
