"""The plotly figures behind `_repr_html_`: valid for plotly itself, and showing the result's
own numbers (a sweep's normalized change from the unpatched run, a (layer, pos, head) sweep's
strongest head, the lens's metric per layer)."""

from __future__ import annotations

import plotly.graph_objects as go
import pytest
import torch

from actpatch.display.figures import figure
from tests.display.test_embed import ALL


@pytest.mark.parametrize("name", ALL)
def test_every_figure_is_valid_for_plotly(results, name):
    fig = figure(results[name])
    go.Figure(data=fig.data, layout=fig.layout)  # plotly's own validation raises on a bad key


def _grid(z: list) -> torch.Tensor:
    return torch.tensor([[float("nan") if v is None else v for v in row] for row in z])


def test_sweep_heatmap_is_the_change_from_the_unpatched_run(results):
    for name, unpatched in (("sweep", 0.0), ("ablation", 1.0)):  # denoising; ablation noises
        result = results[name]
        z = _grid(figure(result).data[0]["z"])
        assert torch.allclose(z, result.normalized.float() - unpatched, equal_nan=True)


def test_unpatched_cells_are_gaps(results):
    z = _grid(figure(results["paris"]).data[0]["z"])
    assert torch.equal(z.isnan(), results["paris"].raw.isnan())


def test_layer_pos_head_sweep_shows_the_strongest_head(results):
    result = results["z_by_pos"]
    trace = figure(result).data[0]
    z = _grid(trace["z"])
    layer, pos = 3, len(result.tokens) - 1
    effects = result.normalized[layer, pos]
    head = int(effects.abs().argmax())
    assert z[layer, pos] == pytest.approx(float(effects[head]))
    assert f"H{head} (strongest head)" in trace["text"][layer][pos]


def test_lens_lines_and_attention_panels(results):
    lens = figure(results["lens"])
    assert [t["y"] for t in lens.data] == [
        results["lens"].clean.metric,
        results["lens"].corrupt.metric,
    ]
    attention = figure(results["attention"])
    assert _grid(attention.data[1]["z"]).tolist() == results["attention"].corrupt[0].tolist()
    buttons = attention.layout["updatemenus"][0]["buttons"]
    assert [b["label"] for b in buttons] == ["L3H3", "L3H4"]
