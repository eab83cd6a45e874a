"""GET/DELETE /runs: every patch and sweep through the API is kept, reopened without
recomputing, exported, and deleted; an unknown run is a 404. Dataset sweeps with intervals."""

from __future__ import annotations

import csv
import io
import json
import time

import pytest

from tests.api.conftest import SPEC_REQUEST
from tests.api.routes.test_sweep import flat

SWEEP = {
    "clean_prompt": "When Mary and John went to the zoo, John gave a drink to",
    "corrupt_prompt": "When Mary and John went to the zoo, Mary gave a drink to",
    "target_token": " Mary",
    "wrong_token": " John",
    "component": "z",
}


def test_patch_and_sweep_are_kept_and_reopened_as_returned(client):
    patch = client.post("/patch", json=SPEC_REQUEST).json()
    sweep = client.post("/sweep", json=SWEEP).json()
    assert isinstance(patch["run_id"], int) and sweep["run_id"] > patch["run_id"]
    listed = client.get("/runs").json()["runs"]
    assert [r["id"] for r in listed[:2]] == [sweep["run_id"], patch["run_id"]]
    assert listed[0]["kind"] == "sweep" and listed[0]["model"] == "tiny"
    run = client.get(f"/runs/{sweep['run_id']}").json()
    assert run["request"]["clean_prompt"] == SWEEP["clean_prompt"]
    assert run["result"]["normalized"] == sweep["normalized"]
    assert run["result"]["per_pair"] == sweep["per_pair"]
    assert (
        client.get(f"/runs/{patch['run_id']}").json()["result"]["patched_prob"]
        == patch["patched_prob"]
    )


def test_unknown_run_is_404_and_delete_removes(client):
    assert client.get("/runs/999999").status_code == 404
    body = client.delete("/runs/999999")
    assert body.status_code == 404 and body.json()["field"] == "run_id"
    run_id = client.post("/sweep", json=SWEEP).json()["run_id"]
    assert client.delete(f"/runs/{run_id}").status_code == 200
    assert client.get(f"/runs/{run_id}").status_code == 404


def test_export_formats(client):
    run_id = client.post("/sweep", json=SWEEP).json()["run_id"]
    csv_text = client.get(f"/runs/{run_id}/export/csv").text
    assert csv_text.splitlines()[0].startswith("layer,head,raw,normalized,ci_low")
    assert client.get(f"/runs/{run_id}/export/png").content[:4] == b"\x89PNG"
    nb = json.loads(client.get(f"/runs/{run_id}/export/ipynb").content)
    assert nb["nbformat"] == 4
    assert client.get(f"/runs/{run_id}/export/xls").status_code == 422


def test_each_listed_run_names_the_formats_it_exports_as(client):
    client.post("/sweep", json=SWEEP)
    client.post(
        "/dla",
        json={k: SPEC_REQUEST[k] for k in ("clean_prompt", "corrupt_prompt")}
        | {"target_token": SPEC_REQUEST["target_token"]},
    )
    for run in client.get("/runs").json()["runs"]:
        answers = {
            fmt: client.get(f"/runs/{run['id']}/export/{fmt}").status_code
            for fmt in ("csv", "json", "png", "svg", "ipynb")
        }
        assert set(run["formats"]) == {f for f, s in answers.items() if s == 200}, run["kind"]


def _flat(grid):
    return [v for row in grid for v in row]


@pytest.mark.parametrize(
    ("route", "extra"), [("/attention", {"layer": 1, "head": 2}), ("/dla", {}), ("/lens", {})]
)
def test_a_view_run_exports_as_a_tidy_csv(client, route, extra):
    """A view's run downloads as CSV: one row per value of the answer it gave."""
    prompts = {k: v for k, v in SWEEP.items() if k != "component"}
    answer = client.post(route, json={**prompts, **extra}).json()
    response = client.get(f"/runs/{answer['run_id']}/export/csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    name = f"actpatch-run-{answer['run_id']}.csv"
    assert response.headers["content-disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.DictReader(io.StringIO(response.text)))
    if route == "/attention":
        clean = [float(r["weight"]) for r in rows if r["run"] == "clean"]
        assert clean == _flat(answer["clean"])
        assert {(r["layer"], r["head"]) for r in rows} == {("1", "2")}
    elif route == "/dla":
        heads = [r for r in rows if r["part"] == "head"]
        assert [float(r["corrupt"]) for r in heads] == _flat(answer["corrupt"]["heads"])
        assert heads[0]["name"] == "L0H0"
    else:
        assert [r["point"] for r in rows] == answer["labels"]
        assert [float(r["clean_metric"]) for r in rows] == answer["clean"]["metric"]
        assert [int(r["corrupt_rank"]) for r in rows] == answer["corrupt"]["target_rank"]
    # a picture of a view is refused, naming what it exports as
    refused = client.get(f"/runs/{answer['run_id']}/export/png")
    assert refused.status_code == 422 and "export it as json or csv" in refused.text


def test_dataset_sweep_by_role_has_per_pair_and_interval(client):
    response = client.post("/sweep", json={"dataset": "ioi:4:2", "component": "resid_pre"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n_pairs"] == 4 and len(body["per_pair"]) == 4
    assert body["position_convention"] in ("role", "index")
    ci = body["ci"]
    assert ci["level"] == 0.95 and ci["method"] == "percentile_bootstrap" and ci["n_boot"] == 1000
    assert len(ci["low"]) == len(body["normalized"])


def test_a_dataset_spec_is_generated_never_read_from_a_file_of_that_name(
    client, tmp_path, monkeypatch
):
    # a file named like the spec in the server's folder: the CLI reads such a file, the
    # server reads no file a request names
    monkeypatch.chdir(tmp_path)
    pair = {"clean": "Mary met John", "corrupt": "John met John", "target": " Mary"}
    (tmp_path / "ioi:3").write_text(json.dumps(pair) + "\n")
    response = client.post("/sweep", json={"dataset": "ioi:3", "component": "z"})
    assert response.status_code == 200, response.text
    assert response.json()["n_pairs"] == 3  # generated: the file holds one pair


def test_mib_dataset_specs_sweep_with_the_served_models_tokenizer(client):
    """The server passes its model's tokenizer to the MIB generators, and lists their specs."""
    response = client.post("/sweep", json={"dataset": "mcqa:3:1", "component": "z"})
    assert response.status_code == 200, response.text
    assert response.json()["n_pairs"] == 3
    bad = client.post("/sweep", json={"dataset": "mmlu:3", "component": "z"})
    assert bad.status_code == 422 and "'mib-ioi:N'" in bad.text and "'sub:N'" in bad.text


def test_dataset_sweep_batching_is_chosen_and_reported(client):
    """ioi:6 mixes token lengths: one padded batch equals one sweep per length (the grouped
    path is the reference), and the result says which ran."""
    bodies = {}
    for batching in ("grouped", "padded"):
        request = {"dataset": "ioi:6", "component": "z", "batching": batching}
        response = client.post("/sweep", json=request)
        assert response.status_code == 200, response.text
        bodies[batching] = response.json()
    assert len(bodies["grouped"]["length_groups"]) > 1
    assert [bodies[b]["batching"] for b in ("grouped", "padded")] == ["grouped", "padded"]
    grouped, padded = (flat(bodies[b]["per_pair"]) for b in ("grouped", "padded"))
    assert padded == pytest.approx(grouped, abs=1e-4)
    bad = client.post("/sweep", json={"dataset": "ioi:6", "batching": "sometimes"})
    assert bad.status_code == 422


def test_dataset_jsonl_errors_name_the_line(client):
    lines = [
        json.dumps({"clean": "When Mary left", "corrupt": "When John left", "target": " Mary"}),
        json.dumps({"clean": "When Mary left", "corrupt": "When John left"}),
    ]
    response = client.post("/sweep", json={"dataset_jsonl": "\n".join(lines)})
    assert response.status_code == 422
    assert "line 2" in response.json()["detail"] and "target" in response.json()["detail"]
    bad = client.post("/sweep", json={"dataset": "/etc/passwd"})
    assert bad.status_code == 422 and "never reads files" in bad.json()["detail"]


def test_a_sweep_job_reports_partial_results_while_it_runs(client):
    job = client.post("/sweep/jobs", json={**SWEEP, "component": "resid_pre"}).json()
    partials = []
    for _ in range(400):
        state = client.get(f"/sweep/jobs/{job['id']}").json()
        if state["partial"] is not None:
            partials.append(state["partial"])
        if state["status"] not in ("queued", "running"):
            break
        time.sleep(0.01)
    assert state["status"] == "done" and state["partial"] is None
    final = state["result"]["normalized"]
    for partial in partials:
        assert partial["complete"] is False and "per_pair" not in partial
        for row, final_row in zip(partial["normalized"], final, strict=True):
            for value, final_value in zip(row, final_row, strict=True):
                assert value is None or abs(value - final_value) < 1e-6


def test_a_run_id_beyond_sqlites_integers_is_a_422_not_a_500(client):
    # Found by tests/api/test_fuzz.py: SQLite cannot even look such an id up.
    for method in ("GET", "DELETE"):
        response = client.request(method, f"/runs/{2**70}")
        assert response.status_code == 422
        assert response.json()["field"] == "run_id"


# -- every kind of run is kept (issue 21) ---------------------------------------------------------

IOI_TINY = {k: v for k, v in SWEEP.items() if k != "component"}


@pytest.mark.parametrize(
    ("route", "body", "kind"),
    [
        ("/path", {"receivers": ["2.1.v"]}, "path"),
        ("/circuit/edges", {"method": "eap", "top": 5}, "edges"),
        (
            "/circuit/evaluate",
            {"ranked": ["a0.h1->m0", "m0->logits"], "sizes": [0, 2]},
            "evaluation",
        ),
        ("/circuit/evaluate", {"nodes": ["a0.h1", "m1"]}, "evaluation"),
    ],
)
def test_circuit_runs_are_kept_and_reopened_as_returned(client, route, body, kind):
    answer = client.post(route, json={**IOI_TINY, **body}).json()
    run_id = answer["run_id"]
    listed = client.get("/runs?limit=1").json()["runs"][0]
    assert listed["id"] == run_id and listed["kind"] == kind and listed["model"] == "tiny"
    # the title has the whole prompt (over 40 characters), not a cut one
    assert repr(IOI_TINY["clean_prompt"]) in listed["label"]
    stored = client.get(f"/runs/{run_id}").json()
    assert stored["request"]["clean_prompt"] == IOI_TINY["clean_prompt"]
    answered = {k: v for k, v in answer.items() if k != "run_id"}
    assert stored["result"].keys() == answered.keys() and within(stored["result"], answered)


def within(stored, answered) -> bool:
    """The stored result is the answer (which the response schema may fill out with nulls)."""
    if isinstance(stored, dict):
        extra = answered.keys() - stored.keys()
        return all(answered[k] is None for k in extra) and all(
            within(v, answered[k]) for k, v in stored.items()
        )
    if isinstance(stored, list):
        return len(stored) == len(answered) and all(map(within, stored, answered))
    return stored == answered


def test_the_run_list_names_its_data_directory(client, tmp_path):
    import os
    from pathlib import Path

    listed = client.get("/runs?limit=1").json()
    # tests/conftest.py points ACTPATCH_DATA_DIR at a fresh folder: the server's default
    assert Path(listed["data_dir"]) == Path(os.environ["ACTPATCH_DATA_DIR"])


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/patch", {"layer": 1, "head": 0}),
        ("/attribute", {"component": "resid_pre", "method": "atp"}),
        ("/path", {"receivers": ["2.1.v"]}),
        ("/circuit/edges", {"method": "eap", "top": 5, "verify": 2}),
        ("/circuit/evaluate", {"ranked": ["a0.h1->m0", "m0->logits"], "sizes": [0, 2]}),
    ],
)
def test_a_patching_run_exports_as_a_tidy_csv(client, route, body):
    """A patch, an attribution, path patching, edges and a circuit's evaluation download as CSV:
    one row per value of the answer it gave, the numbers the answer's."""
    answer = client.post(route, json={**IOI_TINY, **body}).json()
    response = client.get(f"/runs/{answer['run_id']}/export/csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    if route == "/patch":
        assert [r["run"] for r in rows] == ["clean", "corrupt", "patched"]
        assert float(rows[2]["target_prob"]) == answer["patched_prob"]
        assert json.loads(rows[0]["top_tokens"]) == [t["token"] for t in answer["top_clean"]]
    elif route == "/attribute":
        grid = {(int(r["layer"]), int(r["pos"])): r["estimate"] for r in rows}
        for layer, values in enumerate(answer["estimate"]):
            for pos, value in enumerate(values):
                assert grid[layer, pos] == ("" if value is None else repr(value))
    elif route == "/path":
        assert [r["sender"] for r in rows] == answer["senders"]
        assert [float(r["raw"]) for r in rows] == _flat(answer["raw"])
    elif route == "/circuit/edges":
        assert [float(r["score"]) for r in rows] == [e["score"] for e in answer["edges"]]
        checked = [r for r in rows if r["exact_effect"]]
        assert [float(r["exact_effect"]) for r in checked] == [
            c["effect"] for c in answer["verified"]
        ]
    else:
        assert [int(r["n_edges"]) for r in rows] == [0, 2]
        assert [r["faithfulness"] for r in rows] == [
            "" if p["faithfulness"] is None else repr(p["faithfulness"]) for p in answer["points"]
        ]
    # no heatmap of a run without a grid of cells: refused, naming what it exports as
    refused = client.get(f"/runs/{answer['run_id']}/export/png")
    assert refused.status_code == 422 and "export it as json" in refused.text
    assert "csv" in refused.json()["detail"]
