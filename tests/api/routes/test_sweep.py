"""POST /sweep and the /sweep/jobs routes: every component, the engine's numbers, progress."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
from fastapi.testclient import TestClient

import actpatch
from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import local_client
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

IOI: dict[str, Any] = {
    "clean_prompt": IOI_CLEAN,
    "corrupt_prompt": IOI_CORRUPT,
    "target_token": " Mary",
    "wrong_token": " John",
}
CLI_JSON_FIELDS = {
    "raw",
    "normalized",
    "clean",
    "corrupt",
    "tokens",
    "patched_positions",
    "metric",
    "component",
    "direction",
    "model",
}


def flat(grid: Any) -> list[Any]:
    """A nested grid as one flat list (None kept)."""
    if isinstance(grid, list):
        return [x for row in grid for x in flat(row)]
    return [grid]


def assert_same_grid(got: Any, expected: Any) -> None:
    got, expected = flat(got), flat(expected)
    assert [x is None for x in got] == [x is None for x in expected]
    values = [(g, e) for g, e in zip(got, expected, strict=True) if e is not None]
    assert [g for g, _ in values] == pytest.approx([e for _, e in values], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("component", list(actpatch.COMPONENTS))
def test_every_component_equals_the_engine(
    client: TestClient, tiny_model: LoadedModel, component: str
) -> None:
    response = client.post("/sweep", json={**IOI, "component": component})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) >= CLI_JSON_FIELDS
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    expected = actpatch.sweep(exp, component).to_dict()
    assert body["model"] == "tiny"
    assert body["axes"] == expected["axes"]
    assert_same_grid(body["raw"], expected["raw"])
    assert body["clean"] == pytest.approx(expected["clean"])


@pytest.mark.parametrize("metric", ["prob", "logprob", "rank", "logit_diff"])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_metrics_and_directions(
    client: TestClient, tiny_model: LoadedModel, metric: str, direction: str
) -> None:
    request = {**IOI, "component": "z", "metric": metric, "direction": direction}
    body = client.post("/sweep", json=request).json()
    exp = actpatch.Experiment(tiny_model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
    expected = actpatch.sweep(exp, "z", metric, direction).to_dict()
    assert (body["metric"], body["direction"]) == (metric, direction)
    assert_same_grid(body["normalized"], expected["normalized"])


def test_prompts_of_different_lengths_mark_unpatched_positions(client: TestClient) -> None:
    request = {
        "clean_prompt": "Paris is the capital of",
        "corrupt_prompt": "Berlin is the capital of",
        "target_token": " France",
        "component": "resid_pre",
    }
    body = client.post("/sweep", json=request).json()
    assert body["unpatched_positions"] == [1, 2]  # 'Ber', 'lin' have no clean counterpart
    assert all(row[1] is None and row[2] is None for row in body["raw"])
    assert body["alignment"]["identity"] is False


def test_bad_sweep_input(client: TestClient) -> None:
    response = client.post("/sweep", json={**IOI, "component": "attn"})
    assert response.status_code == 422
    assert response.json()["field"] == "component"


def _wait(client: TestClient, job_id: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/sweep/jobs/{job_id}").json()
        if job["status"] not in ("queued", "running") or time.monotonic() > deadline:
            return job
        time.sleep(0.02)


def test_job_reports_progress_and_the_same_result_as_sweep(client: TestClient) -> None:
    request = {**IOI, "component": "z_by_pos"}
    started = client.post("/sweep/jobs", json=request)
    assert started.status_code == 202
    assert started.json()["status"] in ("queued", "running")
    job = _wait(client, started.json()["id"])
    assert job["status"] == "done"
    assert job["done"] == job["total"] > 0
    direct = client.post("/sweep", json=request).json()
    assert_same_grid(job["result"]["raw"], direct["raw"])
    assert job["result"]["model"] == job["model"] == "tiny"


def test_job_checks_its_input_before_starting(client: TestClient) -> None:
    response = client.post("/sweep/jobs", json={**IOI, "target_token": " Mary Ann"})
    assert response.status_code == 422
    assert response.json()["field"] == "target_token"


def test_cancel_a_job(client: TestClient) -> None:
    job = client.post("/sweep/jobs", json={**IOI, "component": "v_by_pos"}).json()
    cancelled = client.delete(f"/sweep/jobs/{job['id']}")
    assert cancelled.status_code == 200
    final = _wait(client, job["id"])
    # It may have finished before the cancel arrived; it must never be left running.
    assert final["status"] in ("cancelled", "done")
    if final["status"] == "cancelled":
        assert "cancelled" in final["error"]["detail"]


def test_unknown_job_is_a_teaching_404(client: TestClient) -> None:
    for response in (client.get("/sweep/jobs/nope"), client.delete("/sweep/jobs/nope")):
        assert response.status_code == 404
        assert response.json()["field"] == "job_id"
        assert "POST /sweep/jobs" in response.json()["detail"]


def test_a_full_job_queue_answers_429_with_retry_after(tiny_model: LoadedModel) -> None:
    app = create_app(Settings(max_pending_jobs=1), {"tiny": tiny_model})
    release = threading.Event()
    app.state.workbench.sweep = lambda request, progress, should_stop: release.wait(10) or {}
    client = local_client(app)
    first = client.post("/sweep/jobs", json=IOI)
    assert first.status_code == 202
    refused = client.post("/sweep/jobs", json=IOI)
    assert refused.status_code == 429
    assert int(refused.headers["retry-after"]) >= 1
    assert "ACTPATCH_MAX_PENDING_JOBS" in refused.json()["detail"]
    release.set()
    app.state.workbench.close()


def test_sweep_carries_warnings_and_backend(client: TestClient) -> None:
    request = {
        "clean_prompt": "Paris is the capital of",
        "corrupt_prompt": "Paris is the capital of",
        "target_token": " France",
        "component": "z",
    }
    body = client.post("/sweep", json=request).json()
    assert body["backend"] == "fast"
    assert "identical_prompts" in {w["code"] for w in body["warnings"]}


@pytest.mark.parametrize("route", ["/sweep", "/sweep/jobs"])
def test_an_uploaded_datasets_mistake_is_a_422_on_its_field(client: TestClient, route: str):
    """What the dataset reader refuses in dataset_jsonl answers 422 naming that field (not
    `dataset`, which names a generated dataset), the line and the key."""
    line = '{"clean": "When Mary left", "corrupt": "When John left"}'
    response = client.post(route, json={"dataset_jsonl": line, "component": "z"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "dataset_jsonl"
    assert body["detail"].startswith("dataset_jsonl, line 1: missing key(s) ['target']")


def test_a_problem_of_some_pairs_is_one_warning_with_its_pairs(client: TestClient) -> None:
    """An uploaded dataset whose pairs 1 and 3 (and only they) repeat the clean prompt as the
    corrupted one: one identical_prompts warning, whose `pairs` are [1, 3]."""
    rows = [
        (IOI_CLEAN, IOI_CORRUPT),
        (IOI_CLEAN, IOI_CLEAN),
        (IOI_CLEAN, IOI_CORRUPT),
        (IOI_CLEAN, IOI_CLEAN),
    ]
    lines = [
        json.dumps({"clean": clean, "corrupt": corrupt, "target": " Mary", "wrong": " John"})
        for clean, corrupt in rows
    ]
    body = client.post("/sweep", json={"dataset_jsonl": "\n".join(lines), "component": "z"})
    assert body.status_code == 200, body.text
    same = [w for w in body.json()["warnings"] if w["code"] == "identical_prompts"]
    assert [w["pairs"] for w in same] == [[1, 3]]
    assert "2 of 4 pairs (pairs 1, 3)" in same[0]["message"]
