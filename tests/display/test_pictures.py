"""`_repr_png_`: PNG bytes for every result, without changing the user's matplotlib backend (in
a notebook, switching it to Agg would stop their own plots from showing inline)."""

from __future__ import annotations

import matplotlib
import pytest

from tests.display.test_embed import ALL

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("name", ALL)
def test_every_result_draws_a_png(results, name):
    assert results[name]._repr_png_()[:8] == PNG


def test_the_backend_in_use_is_kept(results):
    before = matplotlib.get_backend()
    matplotlib.use("svg")  # any backend that is not Agg
    try:
        for name in ("sweep", "attention", "circuit", "patch"):
            results[name]._repr_png_()
            assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)
