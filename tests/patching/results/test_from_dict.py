"""Every patching result comes back from its JSON as the result it was: `from_dict(to_dict())`
writes the same JSON and gives the same table, for each kind computed on the demo model."""

from __future__ import annotations

import json
from typing import Any

import pytest

import actpatch
from actpatch.datasets import ioi
from actpatch.demo import SPEC_EXAMPLE
from actpatch.history import json_text
from actpatch.patching import edge_attribution, evaluate_many, path_patch, verify_edges
from actpatch.patching.experiment import dataset_experiments
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

pd = pytest.importorskip("pandas")

# Three pairs of one token length: resample ablation takes each pair's activation from another.
CLEAN3 = [IOI_CLEAN, IOI_CLEAN.replace("store", "park"), IOI_CLEAN.replace("drink", "book")]
CORRUPT3 = [c.replace(", John gave", ", Mary gave") for c in CLEAN3]


@pytest.fixture(scope="module")
def computed() -> dict[str, Any]:
    """One result of each patching kind (and the variants whose JSON differs: NaN cells, an
    interval over pairs, a patch without a head, AtP without a comparison, chosen senders,
    edges with their per-position scores)."""
    model = actpatch.load_model("demo")
    exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    edges = edge_attribution(exp, "eap", verify=3, by_pos=True)
    three = actpatch.Experiment(model, CLEAN3, CORRUPT3, " Mary", " John")
    return {
        "sweep": actpatch.sweep(exp, "z"),
        "aligned": actpatch.sweep(actpatch.Experiment(model, *SPEC_EXAMPLE), "resid_pre"),
        "dataset": actpatch.sweep_many(dataset_experiments(model, ioi(6, 1)), "resid_pre"),
        "ablation": actpatch.ablate(three, "z", "resample", seed=3),
        "patch": actpatch.patch(exp, layer=3, head=4),
        "patch_pos": actpatch.patch(exp, layer=1, pos=10, component="resid_pre"),
        "attribution": actpatch.attribute(exp, "z", method="atp*", compare=True),
        "attribution_alone": actpatch.attribute(exp, "resid_pre", method="atp"),
        "path": path_patch(exp),
        "path_senders": path_patch(exp, senders=["a3.h4", "m0"]),
        "edges": edges,
        "circuit": evaluate_many([exp], ranked=edges.names, sizes=[5, 20, 100]),
        "verify": verify_edges(exp, edges.names[:3]),
    }


# What each result's JSON says it is: the kinds the brief names, as read_result dispatches on.
KINDS = {
    "sweep": "sweep",
    "aligned": "sweep",
    "dataset": "sweep",
    "ablation": "ablation",
    "patch": "patch",
    "patch_pos": "patch",
    "attribution": "attribution",
    "attribution_alone": "attribution",
    "path": "path",
    "path_senders": "path",
    "edges": "edges",
    "circuit": "circuit",
    "verify": "verify",
}


def as_json(result: Any) -> Any:
    """The result's JSON as the history writes it (NaN as null) and a reader gets it back."""
    return json.loads(json_text(result.to_dict()))


@pytest.mark.parametrize("name", list(KINDS))
def test_a_result_read_back_writes_the_same_json(computed: dict[str, Any], name: str) -> None:
    result = computed[name]
    written = as_json(result)
    assert written["result"] == KINDS[name]
    back = type(result).from_dict(written)
    assert type(back) is type(result)
    assert as_json(back) == written


@pytest.mark.parametrize("name", list(KINDS))
def test_a_result_read_back_gives_the_same_table(computed: dict[str, Any], name: str) -> None:
    """Exactly: these results' JSON holds every float as the tensor held it."""
    result = computed[name]
    back = type(result).from_dict(as_json(result))
    pd.testing.assert_frame_equal(back.to_pandas(), result.to_pandas(), check_exact=True)


def test_what_a_json_holds_is_what_the_object_held(computed: dict[str, Any]) -> None:
    """Beyond the JSON: the fields a reader uses, against the original object's."""
    dataset = computed["dataset"]
    back = type(dataset).from_dict(as_json(dataset))
    assert back.ci is not None and dataset.ci is not None
    assert back.ci.low.equal(dataset.ci.low) and back.position_labels == dataset.position_labels
    aligned = type(computed["aligned"]).from_dict(as_json(computed["aligned"]))
    assert aligned.raw.isnan().sum() == computed["aligned"].raw.isnan().sum() > 0
    patch = computed["patch_pos"]
    assert type(patch).from_dict(as_json(patch)).index == {"layer": 1, "pos": 10}
    edges = computed["edges"]
    back_edges = type(edges).from_dict(as_json(edges))
    assert back_edges.names == edges.names and back_edges.by_pos == edges.by_pos
    assert [c.edge for c in back_edges.verified] == edges.names[:3]
    circuit = type(computed["circuit"]).from_dict(as_json(computed["circuit"]))
    assert [p.n_edges for p in circuit.points] == [5, 20, 100]
    assert circuit.faithfulness == computed["circuit"].faithfulness
    ablation = type(computed["ablation"]).from_dict(as_json(computed["ablation"]))
    assert (ablation.seed, ablation.resample_from) == (3, computed["ablation"].resample_from)


def test_a_file_written_before_the_optional_fields_reads_with_their_defaults(
    computed: dict[str, Any],
) -> None:
    """An older patch's JSON without devices, note or warnings: empty, not an error."""
    written = as_json(computed["patch"])
    for key in ("result", "devices", "note", "warnings", "backend"):
        written.pop(key)
    back = type(computed["patch"]).from_dict(written)
    assert (back.devices, back.note, back.warnings, back.backend) == ([], None, [], "")
    assert back.patched_prob == computed["patch"].patched_prob
