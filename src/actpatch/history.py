"""Run history: every run kept in a SQLite file, to reopen or compare.

A *run* is one computation a user asked for: its kind ("patch", "sweep", "ablation",
"attribution", and the circuit kinds "path", "edges", "evaluation"), the request that produced
it (prompts, answers, options), the model and the backend that computed it, the actpatch
version, the result exactly as it was returned (JSON), how long it took and when. Reopening a
run reads it back; nothing is recomputed.

Durability. The database is one SQLite file in WAL mode, and each run is written in one
transaction: a crash mid-write loses at most the run being written, never an earlier one.
The schema has a version (table `schema_version`); opening a database applies the migrations
it lacks, in order, each in its own transaction. A database written by a newer actpatch (a
version this one does not know) or a file that is not a SQLite database is refused with an
error that says so: it is never overwritten or silently emptied.

Where. `default_data_dir()`: $ACTPATCH_DATA_DIR, else ~/.local/share/actpatch; the file is
`runs.sqlite3` in it. This module knows nothing of HTTP or terminals.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actpatch.errors import ActpatchError

FILENAME = "runs.sqlite3"

# Each migration takes the schema from version i to i + 1; append, never edit.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,
        created_at TEXT NOT NULL,
        model TEXT,
        backend TEXT,
        version TEXT NOT NULL,
        seconds REAL,
        request TEXT NOT NULL,
        result TEXT NOT NULL
    );
    CREATE INDEX runs_created ON runs (created_at);
    """,
    # 2: a short label for lists (e.g. "z sweep, ioi:12:0"), and whether the result is complete
    # (a cancelled sweep keeps what it computed).
    """
    ALTER TABLE runs ADD COLUMN label TEXT NOT NULL DEFAULT '';
    ALTER TABLE runs ADD COLUMN complete INTEGER NOT NULL DEFAULT 1;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


class HistoryError(ActpatchError):
    """The run history cannot be used: a corrupt file, or one written by a newer actpatch."""


class RunNotFoundError(ActpatchError):
    """No run has the id asked for."""


def default_data_dir() -> Path:
    """Where actpatch keeps its data: $ACTPATCH_DATA_DIR, else ~/.local/share/actpatch."""
    root = os.environ.get("ACTPATCH_DATA_DIR")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "actpatch"


@dataclass(frozen=True)
class StoredRun:
    """One run as stored: what was asked, what came back, on which model, when."""

    id: int
    kind: str
    label: str
    created_at: str
    model: str | None
    backend: str | None
    version: str
    seconds: float | None
    complete: bool
    request: dict[str, Any]
    result: dict[str, Any]

    def summary(self) -> dict[str, Any]:
        """The run without its request and result (for lists)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "created_at": self.created_at,
            "model": self.model,
            "backend": self.backend,
            "version": self.version,
            "seconds": self.seconds,
            "complete": self.complete,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**self.summary(), "request": self.request, "result": self.result}


def json_text(value: Any) -> str:
    """`value` as compact JSON text, NaN and infinities (not JSON) written as null.

    How the history stores requests and results, and how `actpatch.export` writes one."""

    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [clean(x) for x in v]
        return v

    return json.dumps(clean(value), separators=(",", ":"), allow_nan=False)


class History:
    """The runs kept in one SQLite file. Safe to share between threads (one lock)."""

    def __init__(self, path: str | Path | None = None) -> None:
        path = Path(path) if path is not None else default_data_dir() / FILENAME
        if path.is_dir() or not path.suffix:  # a folder: the history file inside it
            path = path / FILENAME
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"Cannot create the run history's folder {path.parent}: {exc}. Set "
                "ACTPATCH_DATA_DIR to a folder you can write.",
                field="data_dir",
            ) from exc
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(
                f"The run history {path} cannot be read ({exc}): it is not an actpatch history "
                "database or it is damaged. Nothing was changed. Move it aside (or set "
                "ACTPATCH_DATA_DIR to another folder) to start a new history.",
                field="data_dir",
            ) from exc

    # -- schema ---------------------------------------------------------------------------------

    def _version(self) -> int:
        tables = {
            row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "schema_version" not in tables:
            if tables - {"sqlite_sequence"}:
                raise HistoryError(
                    f"{self.path} is a SQLite database but not an actpatch run history (it has "
                    f"tables {sorted(tables)} and no schema_version). Nothing was changed; use "
                    "another file or folder.",
                    field="data_dir",
                )
            return 0
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self) -> None:
        with self._lock:
            version = self._version()
            if version > SCHEMA_VERSION:
                raise HistoryError(
                    f"The run history {self.path} was written by a newer actpatch (schema "
                    f"version {version}; this one knows up to {SCHEMA_VERSION}). Nothing was "
                    "changed. Upgrade actpatch, or set ACTPATCH_DATA_DIR to another folder.",
                    field="data_dir",
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with self._transaction():
                    if target == 1:
                        self._db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                        self._db.execute("INSERT INTO schema_version VALUES (0)")
                    for statement in MIGRATIONS[target - 1].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute("UPDATE schema_version SET version = ?", (target,))

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # -- runs -----------------------------------------------------------------------------------

    def store(
        self,
        kind: str,
        request: dict[str, Any],
        result: dict[str, Any],
        *,
        label: str = "",
        seconds: float | None = None,
        complete: bool = True,
    ) -> int:
        """Keep one run (one transaction); its id. Model and backend are read from the result."""
        from actpatch import __version__

        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if seconds is None and isinstance(result.get("seconds"), int | float):
            seconds = float(result["seconds"])
        row = (
            kind,
            label or _label(kind, request, result),
            created,
            result.get("model"),
            result.get("backend"),
            __version__,
            seconds,
            int(complete),
            json_text(request),
            json_text(result),
        )
        with self._lock, self._transaction():
            cursor = self._db.execute(
                "INSERT INTO runs (kind, label, created_at, model, backend, version, seconds, "
                "complete, request, result) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid or 0)

    def list(self, limit: int = 100, kind: str | None = None) -> list[StoredRun]:
        """The most recent runs first (request and result left empty: see `get`)."""
        query = (
            "SELECT id, kind, label, created_at, model, backend, version, seconds, complete "
            "FROM runs"
        )
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [_stored(row, {}, {}) for row in rows]

    def get(self, run_id: int) -> StoredRun:
        """The run with this id, request and result included; RunNotFoundError if none."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, kind, label, created_at, model, backend, version, seconds, complete, "
                "request, result FROM runs WHERE id = ?",
                (int(run_id),),
            ).fetchone()
        if row is None:
            raise RunNotFoundError(
                f"There is no run {run_id} in the history: it never existed or was deleted.",
                field="run_id",
            )
        return _stored(row, json.loads(row[9]), json.loads(row[10]))

    def delete(self, run_id: int) -> None:
        """Delete one run; RunNotFoundError if there is none with this id."""
        with self._lock, self._transaction():
            cursor = self._db.execute("DELETE FROM runs WHERE id = ?", (int(run_id),))
            gone = cursor.rowcount
        if not gone:
            raise RunNotFoundError(
                f"There is no run {run_id} in the history to delete.", field="run_id"
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _stored(row: Any, request: dict[str, Any], result: dict[str, Any]) -> StoredRun:
    run_id, kind, label, created, model, backend, version, seconds, complete = row[:9]
    return StoredRun(
        int(run_id),
        kind,
        label,
        created,
        model,
        backend,
        version,
        seconds,
        bool(complete),
        request,
        result,
    )


def short_model_name(model: str) -> str:
    """A model as lists name it: a hub id or a folder by its last part ('gpt2' for
    'openai-community/gpt2', 'demo' for '/home/me/models/demo/')."""
    return model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or model


def _label(kind: str, request: dict[str, Any], result: dict[str, Any]) -> str:
    """A run's title for lists, after its kind and model: what was patched (component, cell,
    method), then the prompts, whole ("z L8H11 · 'Paris is the capital of' vs 'Berlin is the
    capital of' → ' France'"); a list that has no room cuts it, never the label."""
    what = " ".join(part for part in _what(kind, request, result) if part)
    return " · ".join(part for part in (what, _prompts(request)) if part)


def _what(kind: str, request: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """What a run of `kind` patched: its component and cell, its method or its edges."""
    component = str(result.get("component") or request.get("component") or "")
    if kind == "patch":
        layer, head, pos = (result.get(k, request.get(k)) for k in ("layer", "head", "pos"))
        cell = f"L{layer}" + ("" if head is None else f"H{head}")
        return [component, cell + ("" if pos is None else f" pos {pos}")]
    if kind == "ablation":
        return [component, f"{result.get('ablation') or request.get('ablate')}-ablation"]
    if kind in ("attribution", "edges"):
        return [str(result.get("method") or request.get("method") or ""), component]
    if kind == "path":
        receivers = result.get("receivers") or request.get("receivers") or "logits"
        if isinstance(receivers, list):
            receivers = ",".join(receivers)
        senders = request.get("senders", "all")
        senders = ",".join(senders) if isinstance(senders, list) else str(senders)
        return [f"senders {senders} → {receivers}"]
    if kind == "evaluation":  # from the result: the API's request and the CLI's differ
        method = result.get("method") or request.get("method")
        by = f" ranked by {method}" if method else ""
        points = result.get("points") or []
        if result.get("mib"):
            return [f"MIB evaluation{by}"]
        if result.get("nodes"):
            return [f"{len(result['nodes'])} nodes"]
        if len(points) > 1:
            return [f"faithfulness curve to {points[-1].get('n_edges')} edges{by}"]
        return [f"{points[0].get('n_edges')} edges" if points else "circuit"]
    return [component]


def _prompts(request: dict[str, Any]) -> str:
    """The prompts a run patched: both, and the answer; a dataset by its name."""
    if request.get("dataset"):
        return f"dataset {request['dataset']}"
    if request.get("dataset_jsonl"):
        return "an uploaded dataset"
    clean, corrupt = request.get("clean_prompt"), request.get("corrupt_prompt")
    target = request.get("target_token")
    if isinstance(clean, list):
        return f"{len(clean)} pairs, the first {clean[0]!r}" if clean else ""
    if clean is None:
        return ""
    answer = f" → {target!r}" if isinstance(target, str) else ""
    return f"{clean!r} vs {corrupt!r}{answer}"


Store = Callable[[str, dict[str, Any], dict[str, Any]], int]
