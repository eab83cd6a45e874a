"""The run history: runs survive reopening, a crash mid-write loses only that run, migrations
keep old runs, and a corrupt or newer database is refused without touching it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from actpatch.history import (
    MIGRATIONS,
    SCHEMA_VERSION,
    History,
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
