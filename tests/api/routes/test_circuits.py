"""The circuit routes: each answers what the engine computes, names its model, and teaches."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

import actpatch
from actpatch.models import LoadedModel
from actpatch.patching.circuit import evaluate, verify_edges
from actpatch.patching.edges import edge_attribution
from actpatch.patching.paths import path_patch
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

IOI: dict[str, Any] = {
    "clean_prompt": IOI_CLEAN,
    "corrupt_prompt": IOI_CORRUPT,
    "target_token": " Mary",
    "wrong_token": " John",
}


@pytest.fixture(scope="module")
def exp(tiny_model: LoadedModel) -> actpatch.Experiment:
    return actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")


def test_path_equals_the_engine(client: TestClient, exp) -> None:
    response = client.post("/path", json={**IOI, "receivers": ["2.1.v"], "freeze_mlps": True})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = path_patch(exp, "all", "2.1.v", freeze_mlps=True).to_dict()
    assert body["model"] == "tiny" and body["backend"] == "fast"
    assert body["receivers"] == ["a2.h1<v>"]
    got = [v for row in body["normalized"] for v in row]
    want = [v for row in expected["normalized"] for v in row]
    assert got == pytest.approx(want, abs=1e-6)
    assert body["known_roles"] == {"heads": [], "citation": None, "model": None}


def test_edges_equal_the_engine_and_keep_the_top(client: TestClient, exp) -> None:
    response = client.post("/circuit/edges", json={**IOI, "method": "eap", "top": 5, "verify": 1})
    assert response.status_code == 200, response.text
    body = response.json()
    expected = edge_attribution(exp, "eap").to_dict()
    assert body["n_edges"] == expected["n_edges"] == 262 and len(body["edges"]) == 5
    for got, want in zip(body["edges"], expected["edges"][:5], strict=True):
        assert (got["source"], got["target"]) == (want["source"], want["target"])
        assert got["score"] == pytest.approx(want["score"], rel=1e-5)
    assert body["n_layers"] == 3 and body["n_heads"] == 4 and len(body["verified"]) == 1


def test_evaluate_equals_the_engine(client: TestClient, exp) -> None:
    response = client.post("/circuit/evaluate", json={**IOI, "nodes": ["a0.h1", "m1"]})
    assert response.status_code == 200, response.text
    expected = evaluate(exp, nodes=["a0.h1", "m1"])
    assert response.json()["faithfulness"] == pytest.approx(expected.faithfulness, abs=1e-6)
    curve = client.post(
        "/circuit/evaluate", json={**IOI, "ranked": ["a0.h1->m0", "m0->logits"], "sizes": [0, 2]}
    ).json()
    assert [p["n_edges"] for p in curve["points"]] == [0, 2]


def test_evaluate_needs_exactly_one_circuit(client: TestClient) -> None:
    response = client.post("/circuit/evaluate", json=IOI)
    assert response.status_code == 422
    assert "exactly one" in response.json()["detail"]


def test_verify_equals_the_engine(client: TestClient, exp) -> None:
    names = ["a1.h0->m1", "a2.h1->logits"]
    response = client.post("/circuit/verify", json={**IOI, "edges": names})
    assert response.status_code == 200, response.text
    expected = verify_edges(exp, names)
    for got, want in zip(response.json()["edges"], expected.edges, strict=True):
        assert got["edge"] == want.edge and got["effect"] == pytest.approx(want.effect, abs=1e-5)


def test_bad_edges_teach(client: TestClient) -> None:
    response = client.post("/circuit/verify", json={**IOI, "edges": ["a2.h0->a1.h0<q>"]})
    assert response.status_code == 422
    assert "not an edge" in response.json()["detail"]


def test_roles_are_empty_for_a_model_that_is_not_gpt2_small(client: TestClient) -> None:
    body = client.get("/circuit/roles", params={"model": "other"}).json()
    assert body == {"heads": [], "citation": None, "model": "other"}


def test_edges_and_evaluate_say_their_graph_and_take_the_kv_convention(client: TestClient) -> None:
    """The served tiny GPT-2 is multi-head: both conventions are its per-head graph."""
    for kv in ("ungrouped", "grouped"):
        body = client.post("/circuit/edges", json={**IOI, "method": "eap", "kv": kv}).json()
        assert body["kv"] == kv and body["n_edges"] == 262
        assert body["graph"] == {
            "n_layers": 3, "n_heads": 4, "n_kv_heads": 4, "kv": kv, "parallel": False,
        }  # fmt: skip
    body = client.post("/circuit/evaluate", json={**IOI, "nodes": ["a0.h1"], "kv": "grouped"})
    assert body.status_code == 200 and body.json()["graph"]["kv"] == "grouped"
    bad = client.post("/circuit/edges", json={**IOI, "kv": "per-head"})
    assert bad.status_code == 422


def test_evaluate_with_mib_equals_the_engine(client: TestClient, exp) -> None:
    from actpatch.patching.circuit import evaluate_mib
    from actpatch.patching.graph_tables import graph_for

    scores = {e.name: e.score for e in edge_attribution(exp, "eap").edges}
    names = graph_for(exp).edge_names
    body = {**IOI, "ranked": names, "scores": [scores[n] for n in names], "mib": True}
    response = client.post("/circuit/evaluate", json=body)
    assert response.status_code == 200, response.text
    got = response.json()["mib"]
    want = evaluate_mib([exp], names, [scores[n] for n in names]).mib
    assert want is not None
    assert got["cpr"] == pytest.approx(want["cpr"], abs=1e-6)
    assert got["cmd"] == pytest.approx(want["cmd"], abs=1e-6)
    assert got["n_edges"] == want["n_edges"]
    bad = client.post("/circuit/evaluate", json={**body, "scores": [1.0]})
    assert bad.status_code == 422 and "one score per edge" in bad.text
