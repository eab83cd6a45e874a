"""`_repr_html_`: a plotly div naming the model for every result, plotly.js from the installed
package embedded once per kernel session (every time in Colab), and text that cannot break out
of the page's script."""

from __future__ import annotations

import re
import sys
from dataclasses import replace

import pytest
from plotly.offline import get_plotlyjs

from actpatch import display

ALL = [
    "sweep", "resid", "z_by_pos", "paris", "dataset", "ablation", "patch", "attribution", "path",
    "path_senders", "edges", "circuit", "verify", "attention", "dla", "lens",
]  # fmt: skip
BUNDLE = get_plotlyjs()[-400:]  # the end of the installed plotly.min.js


@pytest.fixture(autouse=True)
def fresh_session():
    display.reset()
    yield
    display.reset()


@pytest.mark.parametrize("name", ALL)
def test_every_result_shows_a_plotly_figure_naming_its_model(results, name):
    result = results[name]
    html = result._repr_html_()
    assert 'class="plotly-graph-div"' in html
    assert "window.Plotly.newPlot(" in html
    assert result.model in html


def test_plotly_js_is_embedded_once_per_session(results):
    first = results["sweep"]._repr_html_()
    later = [results[name]._repr_html_() for name in ("dla", "lens", "sweep")]
    assert first.count(BUNDLE) == 1
    assert all(BUNDLE not in html for html in later)
    display.reset()  # e.g. after clearing the output that held it
    assert BUNDLE in results["lens"]._repr_html_()


def test_nothing_is_fetched_from_a_network(results):
    html = results["sweep"]._repr_html_() + results["lens"]._repr_html_()
    html = html.replace(get_plotlyjs(), "")  # the bundle's own text names its web site
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "cdn.plot.ly" not in html


def test_in_colab_every_figure_embeds_it(results, monkeypatch):
    monkeypatch.setitem(sys.modules, "google.colab", object())  # each output is its own frame
    assert all(BUNDLE in results["dla"]._repr_html_() for _ in range(2))


def test_tokens_and_names_cannot_close_the_script(results):
    evil = "</script><script>alert(1)</script>"
    sweep = replace(results["resid"], model=evil, tokens=[evil] * len(results["resid"].tokens))
    html = sweep._repr_html_()
    assert "<script>alert" not in html
    assert html.count("</script>") == 2  # plotly.js's and the figure's own
    assert "&lt;/script&gt;" in html  # the model name, as text in the caption


def test_warnings_are_shown(results):
    from actpatch.patching.results import ResultWarning

    warned = replace(results["sweep"], warnings=[ResultWarning("no_effect", "Nothing & more")])
    assert "warning: Nothing &amp; more" in warned._repr_html_()
