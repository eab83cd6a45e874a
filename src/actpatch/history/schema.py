"""The history's schema: its migrations, a stored run, and how requests and results are
written (compact JSON, NaN as null). Part of `actpatch.history`."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

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
    # 3: pinned runs (retention never deletes them), and each run's size (request and result
    # JSON, bytes) with an index that answers retention without reading the runs themselves.
    """
    ALTER TABLE runs ADD COLUMN pinned INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE runs ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
    UPDATE runs SET bytes = length(CAST(request AS BLOB)) + length(CAST(result AS BLOB));
    CREATE INDEX runs_retention ON runs (pinned, id, bytes);
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)
SUMMARY = "id, kind, label, created_at, model, backend, version, seconds, complete, pinned"


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
    pinned: bool = False

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
            "pinned": self.pinned,
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


def stored_run(row: Any, request: dict[str, Any], result: dict[str, Any]) -> StoredRun:
    run_id, kind, label, created, model, backend, version, seconds, complete, pinned = row[:10]
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
        bool(pinned),
    )
