"""POST /attribute and the /attribute/jobs routes; ablation through POST /sweep."""

from __future__ import annotations

import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

import actpatch
from actpatch.models import LoadedModel
from tests.api.routes.test_sweep import IOI, assert_same_grid
from tests.conftest import ATTRIBUTE_FIELDS, IOI_CLEAN, IOI_CORRUPT

FIELDS = set(ATTRIBUTE_FIELDS)


def _exp(model: LoadedModel) -> actpatch.Experiment:
    return actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")


@pytest.mark.parametrize(("component", "method"), [("z_by_pos", "atp*"), ("resid_pre", "atp")])
def test_attribute_equals_the_library(
    client: TestClient, tiny_model: LoadedModel, component: str, method: str
) -> None:
    request = {**IOI, "component": component, "method": method, "compare": True, "verify": 2}
    response = client.post("/attribute", json=request)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= FIELDS | {"exact", "agreement"}
    assert body["model"] == "tiny" and body["method"] == method
    expected = actpatch.attribute(_exp(tiny_model), component, method, compare=True).to_dict()
    assert_same_grid(body["estimate"], expected["estimate"])
    assert_same_grid(body["exact"], expected["exact"])
    assert body["agreement"]["pearson"] == pytest.approx(expected["agreement"]["pearson"])
    assert len(body["verified"]) == 2


def test_attribute_refuses_rank_with_the_field(client: TestClient) -> None:
    response = client.post("/attribute", json={**IOI, "metric": "rank"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "metric" and "logprob" in body["detail"]
    response = client.post("/attribute", json={**IOI, "method": "eap"})
    assert response.status_code == 422 and response.json()["field"] == "method"


def _wait(client: TestClient, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/attribute/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running"):
            return job
        assert time.monotonic() < deadline
        time.sleep(0.05)


def test_attribute_job_reports_progress_and_its_result(
    client: TestClient, tiny_model: LoadedModel
) -> None:
    request = {**IOI, "component": "z", "method": "atp*", "compare": True}
    response = client.post("/attribute/jobs", json=request)
    assert response.status_code == 202, response.text
    job = _wait(client, response.json()["id"])
    assert job["status"] == "done" and job["done"] == job["total"] > 0
    expected = actpatch.attribute(_exp(tiny_model), "z", "atp*").to_dict()
    assert_same_grid(job["result"]["estimate"], expected["estimate"])
    # the two kinds of job are separate: this id is no sweep job, and a bad id answers 404
    assert client.get(f"/sweep/jobs/{job['id']}").status_code == 404
    missing = client.get("/attribute/jobs/nope")
    assert missing.status_code == 404 and "POST /attribute/jobs" in missing.json()["detail"]


def test_attribute_job_checks_input_at_once_and_cancels(client: TestClient) -> None:
    response = client.post("/attribute/jobs", json={**IOI, "metric": "rank"})
    assert response.status_code == 422
    job = client.post("/attribute/jobs", json={**IOI, "component": "k_by_pos", "compare": True})
    cancelled = client.delete(f"/attribute/jobs/{job.json()['id']}")
    assert cancelled.status_code == 200
    assert _wait(client, job.json()["id"])["status"] in ("cancelled", "done")


def test_sweep_ablate_equals_the_library(client: TestClient, tiny_model: LoadedModel) -> None:
    response = client.post("/sweep", json={**IOI, "component": "z", "ablate": "zero"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["ablation"] == "zero" and body["direction"] == "noising"
    expected = actpatch.ablate(_exp(tiny_model), "z", "zero").to_dict()
    assert_same_grid(body["raw"], expected["raw"])
    refused = client.post("/sweep", json={**IOI, "ablate": "mean", "direction": "denoising"})
    assert refused.status_code == 422 and refused.json()["field"] == "direction"
    one_pair = client.post("/sweep", json={**IOI, "ablate": "resample"})
    assert one_pair.status_code == 422 and one_pair.json()["field"] == "ablate"


def test_attributions_and_ablations_are_kept_in_the_history(client: TestClient) -> None:
    attributed = client.post("/attribute", json={**IOI, "component": "z", "method": "atp*"}).json()
    ablated = client.post("/sweep", json={**IOI, "component": "z", "ablate": "mean"}).json()
    kinds = {r["id"]: r["kind"] for r in client.get("/runs").json()["runs"]}
    assert kinds[attributed["run_id"]] == "attribution" and kinds[ablated["run_id"]] == "ablation"
    stored = client.get(f"/runs/{attributed['run_id']}").json()
    assert stored["result"]["estimate"] == attributed["estimate"]
    assert stored["request"]["method"] == "atp*"
    notebook = client.get(f"/runs/{ablated['run_id']}/export/ipynb")
    assert notebook.status_code == 200 and "ablate_many" in notebook.text


def test_attribute_over_a_dataset_is_each_length_groups_atp_weighted_by_its_pairs(
    client: TestClient, tiny_model: LoadedModel
) -> None:
    from actpatch.datasets import load_dataset
    from actpatch.patching.experiment import dataset_experiments

    response = client.post("/attribute", json={"dataset": "ioi:12", "component": "z"})
    assert response.status_code == 200, response.text
    body = response.json()
    groups = dataset_experiments(tiny_model, load_dataset("ioi:12", tokenizer=tiny_model.tokenizer))
    assert len(groups) > 1 and body["n_pairs"] == 12
    # the metric is a mean over pairs: each group's own AtP, weighted by its pairs
    expected = sum(actpatch.attribute(g, "z").estimate * (g.n_pairs / 12) for g in groups)
    assert_same_grid(body["estimate"], expected.tolist())
    assert "one left-padded batch" in body["note"]


def test_attribute_by_position_over_several_lengths_is_refused_at_once(client: TestClient) -> None:
    request = {"dataset": "ioi:12", "component": "z_by_pos"}
    for route in ("/attribute", "/attribute/jobs"):
        response = client.post(route, json=request)
        assert response.status_code == 422, (route, response.text)
        assert "one length group at a time" in response.text
