"""docs/ioi_walkthrough.ipynb: written by docs/make_walkthrough.py, and run in a real Jupyter
kernel (nbclient), offline, as a reader would: every result cell shows its plotly figure and its
PNG, every table cell a table, and plotly.js is embedded in one output only."""

from __future__ import annotations

import base64
import importlib.util
from pathlib import Path
from typing import Any

import nbclient
import nbformat
import pytest
from plotly.offline import get_plotlyjs

DOCS = Path(__file__).resolve().parent.parent / "docs"
RESULTS = ("resid", "heads", "pattern", "dla", "lens")  # the cells that end by showing a result


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("make_walkthrough", DOCS / "make_walkthrough.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_notebook_is_what_the_script_writes():
    script = _script()
    committed = (DOCS / "ioi_walkthrough.ipynb").read_text(encoding="utf-8")
    assert committed == script.text(), "run `python docs/make_walkthrough.py` and commit it"
    nb = nbformat.reads(committed, as_version=4)
    nbformat.validate(nb)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Any:
    nb = nbformat.read(DOCS / "ioi_walkthrough.ipynb", as_version=4)
    folder = tmp_path_factory.mktemp("walkthrough")
    client = nbclient.NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": folder}}
    )
    client.execute()  # raises CellExecutionError if any cell fails
    return nb


def _result_of(nb: Any, last_line: str) -> dict[str, Any]:
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.source.splitlines()[-1] == last_line:
            (out,) = [o for o in cell.outputs if o.output_type == "execute_result"]
            return dict(out["data"])
    raise AssertionError(f"no cell ends with {last_line!r}")


@pytest.mark.slow
def test_each_result_shows_its_figure_and_png(executed):
    for name in RESULTS:
        data = _result_of(executed, name)
        assert 'class="plotly-graph-div"' in data["text/html"], name
        assert "demo" in data["text/html"], name
        assert base64.b64decode(data["image/png"])[:8] == b"\x89PNG\r\n\x1a\n", name


@pytest.mark.slow
def test_tables_show_as_tables(executed):
    tables = [c for c in executed.cells if c.cell_type == "code" and "to_pandas()" in c.source]
    assert len(tables) == 3
    for cell in tables:
        (out,) = [o for o in cell.outputs if o.output_type == "execute_result"]
        assert "<table" in out["data"]["text/html"]


@pytest.mark.slow
def test_plotly_js_is_embedded_in_one_output_only(executed):
    bundle = get_plotlyjs()[-400:]
    carrying = [
        i
        for i, cell in enumerate(executed.cells)
        for out in cell.get("outputs", [])
        if bundle in out.get("data", {}).get("text/html", "")
    ]
    assert len(carrying) == 1
    first_figure = next(
        i
        for i, cell in enumerate(executed.cells)
        for out in cell.get("outputs", [])
        if "plotly-graph-div" in out.get("data", {}).get("text/html", "")
    )
    assert carrying == [first_figure]
