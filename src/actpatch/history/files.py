"""Where the history lives, and whether a file can be used as one: checked read-only before
anything is written to it. Part of `actpatch.history`."""

from __future__ import annotations

import math
import os
import sqlite3
from pathlib import Path

from actpatch.errors import ActpatchError

from .schema import SCHEMA_VERSION

FILENAME = "runs.sqlite3"
FRESH = "fresh"  # runs.sqlite3 -> runs.fresh.sqlite3, where runs go while the file is unusable

# SQLite's primary result codes (exc.sqlite_errorcode & 0xff).
BUSY_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
DAMAGED_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB


class HistoryError(ActpatchError):
    """The run history cannot be used: a damaged file, another program's, or a newer actpatch's.

    `reason` says what is wrong with the file in a few words (without the fix), for callers
    that go on without it and say so in their own words."""

    def __init__(self, message: str, *, reason: str | None = None, field: str | None = None):
        super().__init__(message, field=field)
        self.reason = reason or message


class HistoryBusyError(HistoryError):
    """Another process held the history's write lock for longer than the wait allowed."""

    def __init__(self, message: str, *, retry_after_s: int) -> None:
        super().__init__(message, field="data_dir")
        self.retry_after_s = retry_after_s


def default_data_dir() -> Path:
    """Where actpatch keeps its data: $ACTPATCH_DATA_DIR, else ~/.local/share/actpatch."""
    root = os.environ.get("ACTPATCH_DATA_DIR")
    if root:
        return Path(root).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "actpatch"


def history_path(path: str | Path | None = None) -> Path:
    """The history file: `path` if it names a file, the FILENAME inside it if a folder."""
    path = Path(path) if path is not None else default_data_dir() / FILENAME
    if path.is_dir() or not path.suffix:  # a folder: the history file inside it
        path = path / FILENAME
    return path


def sqlite_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_busy(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return sqlite_code(exc) in BUSY_CODES or "database is locked" in text or "is busy" in text


def is_damaged(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return sqlite_code(exc) in DAMAGED_CODES or "malformed" in text or "not a database" in text


def check_file(path: Path, busy_timeout_s: float = 5.0) -> None:
    """Raise `HistoryError` if the file at `path` cannot be used as a run history.

    Reads only, through a read-only connection: a damaged file (`PRAGMA quick_check`), one that
    is not a SQLite database, another program's database, or a newer actpatch's. A missing or
    empty file is fine (a new history)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=busy_timeout_s)
    except sqlite3.Error as exc:
        raise unreadable(path, exc) from exc
    try:
        problems = [row[0] for row in db.execute("PRAGMA quick_check").fetchmany(3)]
        if problems != ["ok"]:
            reason = f"is damaged (SQLite's quick_check: {'; '.join(problems)[:300]})"
            raise HistoryError(
                f"The run history {path} {reason}. Nothing was written to it. Recover what it "
                f"holds (sqlite3 {path} .recover | sqlite3 recovered.sqlite3), then move it "
                "aside and put the recovered file in its place; or move it aside (or set "
                "ACTPATCH_DATA_DIR to another folder) to start a new history.",
                reason=reason,
                field="data_dir",
            )
        check_schema(path, db)
    except sqlite3.DatabaseError as exc:
        if is_busy(exc):
            raise busy_error(path, busy_timeout_s) from exc
        raise unreadable(path, exc) from exc
    finally:
        db.close()


def check_schema(path: Path, db: sqlite3.Connection) -> None:
    """Refuse another program's database, and one written by a newer actpatch."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if "schema_version" not in tables:
        if tables - {"sqlite_sequence"}:
            reason = (
                f"is a SQLite database but not an actpatch run history (tables {sorted(tables)})"
            )
            raise HistoryError(
                f"{path} {reason}. Nothing was changed; use another file or folder.",
                reason=reason,
                field="data_dir",
            )
        return
    row = db.execute("SELECT version FROM schema_version").fetchone()
    version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        reason = (
            f"was written by a newer actpatch (schema version {version}; this one knows up to "
            f"{SCHEMA_VERSION})"
        )
        raise HistoryError(
            f"The run history {path} {reason}. Nothing was changed. Upgrade actpatch, or set "
            "ACTPATCH_DATA_DIR to another folder.",
            reason=reason,
            field="data_dir",
        )


def unreadable(path: Path, exc: Exception) -> HistoryError:
    reason = f"cannot be read ({exc}): it is not an actpatch history database or it is damaged"
    return HistoryError(
        f"The run history {path} {reason}. Nothing was changed. Move it aside (or set "
        "ACTPATCH_DATA_DIR to another folder) to start a new history.",
        reason=reason,
        field="data_dir",
    )


def busy_error(path: Path | str, waited_s: float) -> HistoryBusyError:
    retry = max(1, math.ceil(waited_s))
    return HistoryBusyError(
        f"The run history {path} is busy: another process (another actpatch server, or a "
        f"sqlite3 shell, on the same file) has held its write lock for more than {waited_s:g} "
        f"s. Try again in about {retry} s; if it lasts, stop the other process.",
        retry_after_s=retry,
    )
