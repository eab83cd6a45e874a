"""The server's run history never loses or hides a result (issue 20): a damaged or unreadable
file is left byte-for-byte untouched while the server patches on, says so in /health and on the
page; a busy lock answers the result with a warning, or 503 with Retry-After, never 500;
retention keeps pinned runs; GET /runs pages."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from actpatch.api import Settings, create_app
from actpatch.history import History
from actpatch.models import LoadedModel
from tests.api.conftest import SPEC_REQUEST, local_client

SWEEP = {**{k: SPEC_REQUEST[k] for k in ("clean_prompt", "corrupt_prompt", "target_token")}}
SWEEP["component"] = "z"


def _filled(folder: Path, runs: int = 40) -> Path:
    """A history of `runs` sweeps of about 20 KB each, written the way the server writes it."""
    history = History(folder)
    for i in range(runs):
        history.store("sweep", {"i": i}, {"model": "m", "raw": [[i + k / 7 for k in range(900)]]})
    history.close()
    return folder / "runs.sqlite3"


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _overwrite(path: Path, offset: int, data: bytes) -> None:
    with path.open("r+b") as file:
        file.seek(offset)
        file.write(data)


@contextmanager
def _server(model: LoadedModel, **settings: Any) -> Iterator[TestClient]:
    app = create_app(Settings(model="tiny", **settings), {"tiny": model})
    try:
        with local_client(app) as client:
            yield client
    finally:
        app.state.workbench.close()


def test_a_damaged_history_is_left_untouched_and_the_server_still_patches(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    path = _filled(tmp_path)
    _overwrite(path, path.stat().st_size // 2, bytes(range(256)) * 32)  # 8 KiB in the middle
    before = _digest(path)
    with _server(tiny_model, data_dir=tmp_path) as client:
        health = client.get("/health").json()
        assert health["status"] == "degraded"
        assert "damaged" in health["reason"] and str(path) in health["reason"]
        assert health["history"]["path"] == str(tmp_path / "runs.fresh.sqlite3")
        assert health["reason"] in client.get("/models").json()["notices"]  # the page shows it

        patch = client.post("/patch", json=SPEC_REQUEST)
        assert patch.status_code == 200 and isinstance(patch.json()["run_id"], int)
        listed = client.get("/runs?limit=1000")
        assert listed.status_code == 200
        assert [r["id"] for r in listed.json()["runs"]] == [patch.json()["run_id"]]
        assert listed.json()["history"]["problem"] == health["reason"]
        assert client.delete(f"/runs/{patch.json()['run_id']}").status_code == 200
        assert client.post("/sweep", json=SWEEP).status_code == 200
    assert _digest(path) == before  # after shutdown too


def test_an_unreadable_history_does_not_throw_results_away(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    path = _filled(tmp_path, runs=3)
    _overwrite(path, 0, b"\x00" * 100)  # the first 100 bytes: SQLite's header
    before = _digest(path)
    with _server(tiny_model, data_dir=tmp_path) as client:
        for route, body in (("/patch", SPEC_REQUEST), ("/sweep", SWEEP)):
            answer = client.post(route, json=body)
            assert answer.status_code == 200, answer.json()
            assert answer.json()["run_id"] is not None
        assert client.get("/runs").status_code == 200
        health = client.get("/health").json()
        assert health["status"] == "degraded" and "cannot be read" in health["reason"]
        assert "recover" in health["reason"]  # and how to go on
    assert _digest(path) == before


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Another process's connection holding the history's write lock."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_busy_history_answers_the_result_with_a_warning_or_503(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    with _server(tiny_model, data_dir=tmp_path, history_busy_timeout_s=0.2) as client:
        kept = client.post("/patch", json=SPEC_REQUEST).json()["run_id"]
        with _locked(tmp_path / "runs.sqlite3"):
            answer = client.post("/patch", json={**SPEC_REQUEST, "head": 0})
            assert answer.status_code == 200
            body = answer.json()
            assert body["run_id"] is None and body["patched_prob"] is not None
            (warning,) = [w for w in body["warnings"] if w["code"] == "not_kept"]
            assert "busy" in warning["message"] and "not kept" in warning["message"]

            refused = client.delete(f"/runs/{kept}")
            assert refused.status_code == 503 and "busy" in refused.json()["detail"]
            assert int(refused.headers["Retry-After"]) >= 1
            assert client.get("/runs").status_code == 200  # reading never waits
        assert client.delete(f"/runs/{kept}").status_code == 200  # once the lock is free


def test_retention_keeps_pinned_runs_and_the_list_pages(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    with _server(tiny_model, data_dir=tmp_path, history_max_runs=2) as client:
        first = client.post("/patch", json=SPEC_REQUEST).json()["run_id"]
        pinned = client.patch(f"/runs/{first}", json={"pinned": True})
        assert pinned.status_code == 200 and pinned.json()["pinned"] is True
        assert client.patch(f"/runs/{first}", json={"pinned": "yes"}).status_code == 422
        ids = [
            client.post("/patch", json={**SPEC_REQUEST, "head": h}).json()["run_id"]
            for h in range(3)
        ]
        page = client.get("/runs?limit=2").json()
        assert [r["id"] for r in page["runs"]] == [ids[2], ids[1]]
        assert page["total"] == 3 and page["offset"] == 0 and page["next_offset"] == 2
        older = client.get("/runs?limit=2&offset=2").json()
        assert [r["id"] for r in older["runs"]] == [first] and older["next_offset"] is None
        assert client.get(f"/runs/{ids[0]}").status_code == 404  # the oldest unpinned went
        assert client.get("/runs?offset=-1").status_code == 422


# -- every kind of run (issue 21) through the same keeping (issue 20) -----------------------------

IOI = {
    "clean_prompt": "When Mary and John went to the zoo, John gave a drink to",
    "corrupt_prompt": "When Mary and John went to the zoo, Mary gave a drink to",
    "target_token": " Mary",
    "wrong_token": " John",
}
CIRCUIT_RUNS = (
    ("/path", {"receivers": ["2.1.v"]}),
    ("/circuit/edges", {"method": "eap", "top": 5}),
    ("/circuit/evaluate", {"nodes": ["a0.h1", "m1"]}),
)


def test_a_busy_history_answers_circuit_runs_with_a_warning(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    with _server(tiny_model, data_dir=tmp_path, history_busy_timeout_s=0.2) as client:
        for route, body in CIRCUIT_RUNS:
            kept = client.post(route, json={**IOI, **body})
            assert kept.status_code == 200 and isinstance(kept.json()["run_id"], int)
        other = {k: v.replace("zoo", "park") for k, v in IOI.items()}  # not the same run again
        with _locked(tmp_path / "runs.sqlite3"):
            for route, body in CIRCUIT_RUNS:
                answer = client.post(route, json={**other, **body})
                assert answer.status_code == 200, (route, answer.json())
                assert answer.json()["run_id"] is None
                codes = [w["code"] for w in answer.json()["warnings"]]
                assert codes.count("not_kept") == 1, route


def test_a_history_left_aside_still_names_its_data_directory(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    path = _filled(tmp_path, runs=3)
    _overwrite(path, 0, b"\x00" * 100)
    with _server(tiny_model, data_dir=tmp_path) as client:
        answer = client.post("/path", json={**IOI, "receivers": ["2.1.v"]}).json()
        listed = client.get("/runs").json()
        assert Path(listed["data_dir"]) == tmp_path  # the folder the settings name
        assert listed["history"]["path"] == str(tmp_path / "runs.fresh.sqlite3")
        assert [(r["id"], r["kind"]) for r in listed["runs"]] == [(answer["run_id"], "path")]


def test_the_same_run_again_is_one_row_and_a_different_one_is_another(
    tiny_model: LoadedModel, tmp_path: Path
) -> None:
    # The page runs its patch and sweep again on every load: those are no new runs.
    with _server(tiny_model, data_dir=tmp_path) as client:
        first = client.post("/sweep", json=SWEEP).json()
        again = client.post("/sweep", json=SWEEP).json()
        assert again["run_id"] == first["run_id"]
        assert again["raw"] == first["raw"]  # the same numbers, answered in full
        other = client.post("/sweep", json={**SWEEP, "metric": "prob"}).json()
        assert other["run_id"] != first["run_id"]
        back = client.post("/sweep", json=SWEEP).json()  # not the newest sweep any more
        assert back["run_id"] not in (first["run_id"], other["run_id"])
        assert client.get("/runs").json()["total"] == 3
