"""The routes of each kind of background job, written once: every kind has the same three."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


@pytest.mark.parametrize(("name", "job"), [("sweep", "SweepJob"), ("attribute", "AttributeJob")])
def test_each_kind_of_job_has_start_get_and_cancel(client: TestClient, name: str, job: str) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    start = paths[f"/{name}/jobs"]["post"]
    watch = paths[f"/{name}/jobs/{{job_id}}"]
    operations = {
        "start": start,
        "get": watch["get"],
        "cancel": watch["delete"],
    }
    for verb, operation in operations.items():
        assert operation["operationId"].startswith(f"{verb}_{name}_job_"), operation
        assert operation["summary"] and operation["summary"] == operation["description"]
        answered = "202" if verb == "start" else "200"
        body = operation["responses"][answered]["content"]["application/json"]["schema"]
        assert body == {"$ref": f"#/components/schemas/{job}"}
    assert "429" in start["responses"] and "404" in watch["delete"]["responses"]
    body = start["requestBody"]["content"]["application/json"]["schema"]
    assert body["$ref"].endswith(f"/{name.title()}Request")


def test_a_job_of_one_kind_is_unknown_to_the_other(client: TestClient) -> None:
    missing = client.delete("/attribute/jobs/nope")
    assert missing.status_code == 404 and missing.json()["field"] == "job_id"
    assert "no attribution job" in missing.json()["detail"]
    assert "POST /attribute/jobs" in missing.json()["detail"]
