"""The run history: runs survive reopening, a crash mid-write loses only that run, migrations
keep old runs, and a corrupt or newer database is refused without touching it."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from actpatch.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    History,
    HistoryBusyError,
    HistoryError,
    RunNotFoundError,
    short_model_name,
)

RESULT = {
    "model": "demo",
    "backend": "fast",
    "component": "z",
    "raw": [[1.0, None]],
    "seconds": 0.5,
}


def test_store_get_list_delete(tmp_path: Path) -> None:
    history = History(tmp_path)
    first = history.store("sweep", {"clean_prompt": "a", "component": "z"}, RESULT)
    second = history.store("patch", {"clean_prompt": "b"}, {"model": "demo", "layer": 1, "head": 2})
    run = history.get(first)
    assert run.result == RESULT and run.request["clean_prompt"] == "a"
    assert run.model == "demo" and run.backend == "fast" and run.seconds == 0.5
    assert run.version and run.created_at.endswith("Z") and run.complete
    assert [r.id for r in history.list()] == [second, first]
    assert [r.id for r in history.list(kind="patch")] == [second]
    history.close()
    reopened = History(tmp_path / "runs.sqlite3")
    assert reopened.get(first).result == RESULT  # kept on disk
    reopened.delete(first)
    with pytest.raises(RunNotFoundError):
        reopened.get(first)
    with pytest.raises(RunNotFoundError):
        reopened.delete(first)
    assert len(reopened) == 1
    assert (
        sqlite3.connect(tmp_path / "runs.sqlite3").execute("PRAGMA journal_mode").fetchone()[0]
        == "wal"
    )


def test_nan_is_stored_as_null(tmp_path: Path) -> None:
    history = History(tmp_path)
    run_id = history.store("sweep", {}, {"clean": float("nan"), "raw": [float("inf"), 1.0]})
    assert history.get(run_id).result == {"clean": None, "raw": [None, 1.0]}


CRASH = """
import os, sys
from actpatch.history import History
h = History(sys.argv[1])
h.store("sweep", {"n": 1}, {"model": "m"})
h._db.execute("BEGIN IMMEDIATE")
h._db.execute(
    "INSERT INTO runs (kind, created_at, version, request, result) "
    "VALUES ('sweep', 'x', 'v', '{}', '{}')"
)
os._exit(1)  # the process dies mid-transaction: no commit, no clean close
"""


def test_a_crash_mid_write_loses_only_that_run(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-c", CRASH, str(tmp_path)], check=False)
    history = History(tmp_path)
    assert [r.request for r in (history.get(r.id) for r in history.list())] == [{"n": 1}]


def test_an_old_schema_is_migrated_keeping_its_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.executescript(MIGRATIONS[0])
    db.execute(
        "INSERT INTO runs (kind, created_at, version, request, result) "
        "VALUES ('sweep', '2024-01-01T00:00:00Z', '0.0.1', '{\"a\": 1}', '{\"b\": 2}')"
    )
    db.commit()
    db.close()
    history = History(path)
    (run,) = history.list()
    assert history.get(run.id).result == {"b": 2} and run.complete and run.label == ""
    version = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchone()[0]
    assert version == SCHEMA_VERSION


def test_a_newer_or_corrupt_database_is_refused_untouched(tmp_path: Path) -> None:
    newer = tmp_path / "newer"
    History(newer).store("sweep", {}, {})
    db = sqlite3.connect(newer / "runs.sqlite3")
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="newer actpatch"):
        History(newer)
    assert (
        sqlite3.connect(newer / "runs.sqlite3").execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        == 1
    )

    corrupt = tmp_path / "corrupt.sqlite3"
    corrupt.write_bytes(b"this is not a database" * 100)
    before = corrupt.read_bytes()
    with pytest.raises(HistoryError, match="cannot be read"):
        History(corrupt)
    assert corrupt.read_bytes() == before

    other = tmp_path / "other.sqlite3"
    db = sqlite3.connect(other)
    db.execute("CREATE TABLE notes (x)")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="not an actpatch run history"):
        History(other)


# -- titles (issue 21) -----------------------------------------------------------------------------

IOI_CLEAN_LONG = "When Mary and John went to the store, John gave a drink to"
IOI_CORRUPT_LONG = "When Mary and John went to the store, Mary gave a drink to"


@pytest.mark.parametrize(
    ("kind", "request_", "result", "label"),
    [
        (
            "patch",
            {
                "clean_prompt": IOI_CLEAN_LONG,
                "corrupt_prompt": IOI_CORRUPT_LONG,
                "target_token": " Mary",
            },
            {"component": "z", "layer": 8, "head": 11, "pos": None},
            f"z L8H11 · {IOI_CLEAN_LONG!r} vs {IOI_CORRUPT_LONG!r} → ' Mary'",
        ),
        (
            "patch",
            {"clean_prompt": "a b", "corrupt_prompt": "a c", "target_token": " x"},
            {"component": "resid_pre", "layer": 3, "head": None, "pos": 5},
            "resid_pre L3 pos 5 · 'a b' vs 'a c' → ' x'",
        ),
        (
            "sweep",
            {"dataset": "ioi:12:3", "component": "z"},
            {"component": "z"},
            "z · dataset ioi:12:3",
        ),
        (
            "ablation",
            {"dataset": "ioi:4", "ablate": "mean"},
            {"component": "mlp_out", "ablation": "mean"},
            "mlp_out mean-ablation · dataset ioi:4",
        ),
        (
            "edges",
            {"clean_prompt": ["p", "q"], "corrupt_prompt": ["r", "s"], "method": "eap-ig"},
            {"method": "eap-ig"},
            "eap-ig · 2 pairs, the first 'p'",
        ),
        (
            "path",
            {"clean_prompt": "a", "corrupt_prompt": "b", "senders": "all"},
            {"receivers": ["a9.h9<q>", "a9.h6<q>"]},
            "senders all → a9.h9<q>,a9.h6<q> · 'a' vs 'b'",
        ),
        (
            "evaluation",
            {"clean_prompt": "a", "corrupt_prompt": "b"},
            {"points": [{"n_edges": 0}, {"n_edges": 50}], "method": "eap"},
            "faithfulness curve to 50 edges ranked by eap · 'a' vs 'b'",
        ),
        (
            "evaluation",
            {"clean_prompt": "a", "corrupt_prompt": "b", "nodes": ["a0.h1", "m0"]},
            {"points": [{"n_edges": 12}], "nodes": ["a0.h1", "m0"]},
            "2 nodes · 'a' vs 'b'",
        ),
    ],
)
def test_a_title_says_what_ran_on_which_prompts_whole(
    tmp_path: Path, kind: str, request_: dict, result: dict, label: str
) -> None:
    """Every kind gets a title (no prompt cut at 40 characters); the page and `runs list` put
    the kind and the model's short name before it."""
    history = History(tmp_path)
    run_id = history.store(kind, request_, {"model": "demo", **result})
    (listed,) = history.list()
    assert listed.id == run_id and listed.kind == kind and listed.label == label


@pytest.mark.parametrize(
    ("model", "short"),
    [
        ("openai-community/gpt2", "gpt2"),
        ("/home/me/models/demo/", "demo"),
        ("demo", "demo"),
        ("C:\\models\\tiny", "tiny"),
    ],
)
def test_a_model_is_listed_by_its_short_name(model: str, short: str) -> None:
    assert short_model_name(model) == short


# -- issue 20: a damaged, unreadable or busy file, retention and paging ----------------------------


def _filled(folder: Path, runs: int = 40) -> Path:
    """A history file of `runs` sweeps of about 20 KB each (so its runs span many pages)."""
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


def test_a_damaged_file_is_found_at_start_and_never_written_to(tmp_path: Path) -> None:
    path = _filled(tmp_path)
    _overwrite(path, path.stat().st_size // 2, bytes(range(256)) * 32)  # 8 KiB in the middle
    before = _digest(path)

    with pytest.raises(HistoryError, match="damaged"):
        History(path)  # the strict constructor (the CLI's) refuses it
    history = History.open(path)  # the server's goes on beside it
    assert history.problem is not None and "damaged" in history.problem
    assert str(path) in history.problem and "left untouched" in history.problem
    fresh = tmp_path / "runs.fresh.sqlite3"
    assert history.path == fresh and not history.in_memory
    run_id = history.store("patch", {"n": 1}, {"model": "m"})
    assert run_id > 40  # numbered after the damaged file's runs: an old id never names it
    assert [r.id for r in history.list()] == [run_id]
    history.delete(run_id)
    history.close()
    assert _digest(path) == before

    again = History.open(path)  # the next start finds the same fresh file
    assert again.path == fresh and again.store("patch", {}, {}) > run_id
    again.close()
    assert _digest(path) == before


def test_an_unreadable_file_is_left_untouched_and_runs_go_beside_it(tmp_path: Path) -> None:
    path = _filled(tmp_path, runs=3)
    _overwrite(path, 0, b"\xff" * 100)  # the header gone: not a SQLite database any more
    before = _digest(path)
    with pytest.raises(HistoryError, match="cannot be read"):
        History(path)
    history = History.open(path)
    assert history.problem is not None and "cannot be read" in history.problem
    history.store("patch", {}, {"model": "m"})
    assert len(history) == 1
    history.close()
    assert _digest(path) == before


def test_with_no_folder_to_write_the_runs_are_kept_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    history = History.open(blocker / "data")  # its folder cannot be created
    assert history.in_memory and history.path is None
    assert history.problem is not None and "in memory" in history.problem
    run_id = history.store("patch", {}, {"model": "m"})
    assert history.get(run_id).result == {"model": "m"}


def test_a_file_found_damaged_while_in_use_is_left_for_a_fresh_one(tmp_path: Path) -> None:
    path = _filled(tmp_path, runs=20)
    history = History.open(path)  # passes its check: the file is whole now
    assert history.problem is None
    size = path.stat().st_size
    _overwrite(path, size // 4, bytes(size // 2))  # then the disk loses the middle half
    before = _digest(path)
    run_id = history.store("patch", {"after": True}, {"model": "m"})  # in the WAL, not the file
    runs = history.list(1000)  # reads the damaged pages: SQLite says malformed
    assert history.problem is not None and "damaged while in use" in history.problem
    assert history.path == tmp_path / "runs.fresh.sqlite3"
    new_id = history.store("patch", {"later": True}, {"model": "m"})
    assert history.get(new_id).request == {"later": True}
    assert new_id not in [r.id for r in runs] and new_id > run_id
    history.close()
    assert _digest(path) == before


def test_a_busy_lock_is_waited_for_then_refused_with_a_retry_time(tmp_path: Path) -> None:
    history = History(tmp_path, busy_timeout_s=0.3)
    kept = history.store("patch", {}, {"model": "m"})
    other = sqlite3.connect(tmp_path / "runs.sqlite3", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(HistoryBusyError, match="busy") as busy:
            history.store("patch", {}, {"model": "m"})
        assert busy.value.retry_after_s >= 1
        with pytest.raises(HistoryBusyError):
            history.delete(kept)
        assert [r.id for r in history.list()] == [kept]  # readers never wait (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert history.store("patch", {}, {"model": "m"}) > kept  # the lock is free again


def test_retention_deletes_the_oldest_unpinned_runs(tmp_path: Path) -> None:
    history = History(tmp_path, max_runs=3)
    ids = [history.store("patch", {"i": i}, {"model": "m"}) for i in range(2)]
    history.pin(ids[0])
    ids += [history.store("patch", {"i": i}, {"model": "m"}) for i in range(2, 6)]
    # three unpinned runs kept (the newest), and the pinned one however old
    assert [r.id for r in history.list()] == [ids[5], ids[4], ids[3], ids[0]]
    assert history.get(ids[0]).pinned and not history.get(ids[5]).pinned
    with pytest.raises(RunNotFoundError):
        history.pin(10_000)


def test_retention_by_bytes_counts_the_request_and_result_json(tmp_path: Path) -> None:
    request, result = {"clean_prompt": "x" * 100}, {"model": "m", "raw": [1.5] * 50}
    size = len(json.dumps(request, separators=(",", ":"))) + len(
        json.dumps(result, separators=(",", ":"))
    )
    history = History(tmp_path, max_bytes=2 * size + size // 2)  # room for two and a half
    ids = [history.store("sweep", request, result) for _ in range(4)]
    assert [r.id for r in history.list()] == [ids[3], ids[2]]
    lone = History(tmp_path / "small", max_bytes=10)  # smaller than one run: the newest stays
    assert len([lone.store("sweep", request, result) for _ in range(3)]) and len(lone) == 1


def test_runs_are_listed_a_page_at_a_time(tmp_path: Path) -> None:
    history = History(tmp_path)
    ids = [history.store("sweep" if i % 2 else "patch", {}, {}) for i in range(7)]
    newest_first = ids[::-1]
    assert [r.id for r in history.list(3)] == newest_first[:3]
    assert [r.id for r in history.list(3, offset=3)] == newest_first[3:6]
    assert [r.id for r in history.list(3, offset=6)] == newest_first[6:]
    assert history.count() == 7 and history.count("sweep") == 3
    assert [r.id for r in history.list(2, "patch", offset=1)] == [ids[4], ids[2]]


def test_a_version_2_history_gains_pins_and_sizes(tmp_path: Path) -> None:
    path = tmp_path / "runs.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.executescript(MIGRATIONS[0] + MIGRATIONS[1])
    db.execute(
        "INSERT INTO runs (kind, created_at, version, request, result) "
        "VALUES ('sweep', '2024-01-01T00:00:00Z', '0.0.1', '{\"a\":1}', '{\"b\":22}')"
    )
    db.commit()
    db.close()
    history = History(path, max_bytes=len('{"a":1}') + len('{"b":22}'))
    (run,) = history.list()
    assert not run.pinned and history.get(run.id).result == {"b": 22}
    history.store("sweep", {"a": 1}, {"b": 22})  # the same size: the old run goes
    assert len(history) == 1
