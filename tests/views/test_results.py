"""The views' results come back from their JSON: `from_dict(to_dict())` writes the same JSON,
and gives the table the view's CSV export writes from that JSON (the JSON rounds a pattern's
weights and a part's shares to 6 significant digits, so the table read back is the original's
to that precision, and the logit lens's, which rounds nothing, exactly)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

import pytest

import actpatch
from actpatch.export import view_csv
from actpatch.history import json_text
from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pd = pytest.importorskip("pandas")


@pytest.fixture(scope="module")
def views() -> dict[str, Any]:
    model = actpatch.load_model("demo")
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    return {
        "attention": attention_pattern(exp, 3, 4),
        "attention_heads": attention_pattern(exp, 3, [3, 4, 7]),
        "dla": direct_logit_attribution(exp),
        "lens": logit_lens(exp),
    }


KINDS = {"attention": "attention", "attention_heads": "attention", "dla": "dla", "lens": "lens"}


def as_json(result: Any) -> Any:
    return json.loads(json_text(result.to_dict()))


@pytest.mark.parametrize("name", list(KINDS))
def test_a_view_read_back_writes_the_same_json(views: dict[str, Any], name: str) -> None:
    written = as_json(views[name])
    assert written["result"] == KINDS[name]
    back = type(views[name]).from_dict(written)
    assert type(back) is type(views[name])
    assert as_json(back) == written


@pytest.mark.parametrize("name", list(KINDS))
def test_a_view_read_back_gives_the_table_its_csv_export_writes(
    views: dict[str, Any], name: str
) -> None:
    """Cell for cell the CSV export of the same JSON (`view_csv`, plain Python, no tensors)."""
    written = as_json(views[name])
    frame = type(views[name]).from_dict(written).to_pandas()
    rows = list(csv.reader(io.StringIO(view_csv(KINDS[name], written))))
    assert list(frame.columns) == rows[0] and len(frame) == len(rows) - 1
    numbers = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    assert numbers  # weight; clean, corrupt, difference; the lens's metrics and probabilities
    for column in numbers:
        at = rows[0].index(column)
        csv_values = [float(r[at]) if r[at] else math.nan for r in rows[1:]]
        assert frame[column].tolist() == pytest.approx(csv_values, rel=0, abs=0, nan_ok=True)


@pytest.mark.parametrize("name", list(KINDS))
def test_a_view_read_back_has_the_originals_table_to_its_json_precision(
    views: dict[str, Any], name: str
) -> None:
    original = views[name]
    back = type(original).from_dict(as_json(original))
    if name == "lens":  # its JSON keeps every float
        pd.testing.assert_frame_equal(back.to_pandas(), original.to_pandas(), check_exact=True)
        return
    # 6 significant digits: a weight (at most 1) within 5e-7; a share (up to about 10 on the
    # demo model) within 5e-6, and a difference of two shares within twice that.
    atol = 1e-6 if name.startswith("attention") else 2e-5
    pd.testing.assert_frame_equal(back.to_pandas(), original.to_pandas(), rtol=0, atol=atol)


def test_every_head_comes_back_with_its_pattern(views: dict[str, Any]) -> None:
    original = views["attention_heads"]
    back = type(original).from_dict(as_json(original))
    assert (back.heads, back.kv_heads, back.layer) == ([3, 4, 7], original.kv_heads, 3)
    assert back.clean.shape == original.clean.shape
    assert back.clean.sum(-1).sub(1).abs().max() < 1e-4  # each query's row still sums to 1
    assert back.top_attended(head=7) == [
        [(p, pytest.approx(w, rel=1e-5)) for p, w in row] for row in original.top_attended(head=7)
    ]


def test_dla_read_back_keeps_the_totals_it_wrote(views: dict[str, Any]) -> None:
    """The JSON's shares are rounded, so their sum is not its total: the total read back is the
    one written (the sum of the unrounded shares), not a new sum of the rounded ones."""
    original = views["dla"]
    back = type(original).from_dict(as_json(original))
    assert back.clean.total == original.clean.total
    unexplained = original.corrupt.actual - original.corrupt.total
    assert back.to_dict()["corrupt"]["unexplained"] == unexplained
