"""`History`: the runs kept in one SQLite file (or in memory), with bounded waits, retention, and
damage left behind. Part of `actpatch.history`, whose docstring says how it behaves."""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from actpatch.errors import ActpatchError

from .files import (
    FRESH,
    HistoryBusyError,
    HistoryError,
    busy_error,
    check_file,
    history_path,
    is_busy,
    is_damaged,
    unreadable,
)
from .schema import MIGRATIONS, SCHEMA_VERSION, SUMMARY, StoredRun, json_text, stored_run
from .titles import label_of

logger = logging.getLogger("actpatch.history")
T = TypeVar("T")


class RunNotFoundError(ActpatchError):
    """No run has the id asked for."""


class History:
    """The runs kept in one SQLite file (or in memory). Safe to share between threads.

    `History(path)` refuses (HistoryError) a file it cannot use; `History.open(path)` goes on
    without it (see `actpatch.history`) and says why in `problem`. `max_runs`/`max_bytes`
    bound the unpinned runs kept; `busy_timeout_s` bounds every wait for another process's lock.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_runs: int | None = None,
        max_bytes: int | None = None,
        busy_timeout_s: float = 5.0,
    ) -> None:
        file = history_path(path)
        self.path: Path | None = file  # None: in memory
        self.requested: Path = file  # where runs were asked to be kept
        self.max_runs, self.max_bytes, self.busy_timeout_s = max_runs, max_bytes, busy_timeout_s
        self.problem: str | None = None  # why runs are not kept where they were asked to be
        self._lock = threading.Lock()
        self._fall_back = False  # History.open's: leave a file found damaged while in use
        self._db = self._connect(file)

    @classmethod
    def open(
        cls,
        path: str | Path | None = None,
        *,
        max_runs: int | None = None,
        max_bytes: int | None = None,
        busy_timeout_s: float = 5.0,
    ) -> History:
        """The history at `path`; if that file cannot be used, one beside it or in memory.

        Never raises for the file: its `problem` says what was wrong, that the file was left
        untouched, where runs are kept instead and how to get the old ones back."""
        limits: dict[str, Any] = {
            "max_runs": max_runs,
            "max_bytes": max_bytes,
            "busy_timeout_s": busy_timeout_s,
        }
        requested = history_path(path)
        try:
            history = cls(requested, **limits)
        except HistoryBusyError:
            try:  # another process is writing at the very moment we start: wait once more
                time.sleep(busy_timeout_s)
                history = cls(requested, **limits)
            except HistoryError as exc:
                history = cls._instead(requested, exc.reason, limits)
        except HistoryError as exc:
            history = cls._instead(requested, exc.reason, limits)
        history._fall_back = True
        return history

    @classmethod
    def _instead(cls, requested: Path, reason: str, limits: dict[str, Any]) -> History:
        """A history beside the unusable `requested` file, else in memory, saying why."""
        fresh = requested.with_name(f"{requested.stem}.{FRESH}{requested.suffix}")
        history: History | None = None
        if not requested.stem.endswith(f".{FRESH}") and requested.parent.is_dir():
            try:
                history = cls(fresh, **limits)
                where = f"in {fresh} instead"
            except HistoryError:
                history = None
        if history is None:
            history = cls._in_memory(limits)
            where = "in memory instead, and lost when the server stops"
        history.requested = requested
        history.problem = (
            f"The run history {requested} {reason}. It was left untouched (nothing is written to "
            f"it); new runs are kept {where}. To get its runs back, recover what it holds "
            f"(sqlite3 {requested} .recover | sqlite3 recovered.sqlite3), move it aside, put the "
            "recovered file in its place and restart."
        )
        history._continue_ids_of(requested)
        logger.warning("%s", history.problem)
        return history

    @classmethod
    def _in_memory(cls, limits: dict[str, Any]) -> History:
        history = cls.__new__(cls)
        history.path, history.requested = None, Path(":memory:")
        history.max_runs, history.max_bytes = limits["max_runs"], limits["max_bytes"]
        history.busy_timeout_s = limits["busy_timeout_s"]
        history.problem, history._fall_back = None, False
        history._lock = threading.Lock()
        history._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        history._migrate()
        return history

    @property
    def in_memory(self) -> bool:
        return self.path is None

    def describe(self) -> dict[str, Any]:
        """Where runs are kept, and what went wrong with where they were asked to be."""
        return {
            "path": None if self.path is None else str(self.path),
            "in_memory": self.in_memory,
            "problem": self.problem,
        }

    # -- opening --------------------------------------------------------------------------------

    def _connect(self, path: Path) -> sqlite3.Connection:
        """Check the file read-only, then open it for writing and bring its schema up to date."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(
                f"Cannot create the run history's folder {path.parent}: {exc}. Set "
                "ACTPATCH_DATA_DIR to a folder you can write.",
                reason=f"cannot be created ({exc})",
                field="data_dir",
            ) from exc
        check_file(path, self.busy_timeout_s)
        try:
            self._db = sqlite3.connect(
                str(path),
                check_same_thread=False,
                isolation_level=None,
                timeout=self.busy_timeout_s,
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            if is_busy(exc):
                raise busy_error(path, self.busy_timeout_s) from exc
            raise unreadable(path, exc) from exc
        return self._db

    def _continue_ids_of(self, old: Path) -> None:
        """Number new runs after the old file's last one (read if it can be), so that an id a
        client holds from the old file never names a different run here."""
        try:
            db = sqlite3.connect(f"{old.resolve().as_uri()}?mode=ro", uri=True, timeout=1)
            try:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
            finally:
                db.close()
            last = int(row[0]) if row else 0
        except (sqlite3.Error, OSError, ValueError, TypeError):
            return
        with self._lock, self._transaction():
            seq = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'runs'").fetchone()
            if seq is None:
                self._db.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES ('runs', ?)", (last,)
                )
            elif int(seq[0]) < last:
                self._db.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'runs'", (last,))

    def _migrate(self) -> None:
        with self._lock:
            version = self._version()
            for target in range(version + 1, SCHEMA_VERSION + 1):
                with self._transaction():
                    if target == 1:
                        self._db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
                        self._db.execute("INSERT INTO schema_version VALUES (0)")
                    for statement in MIGRATIONS[target - 1].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                    self._db.execute("UPDATE schema_version SET version = ?", (target,))

    def _version(self) -> int:
        tables = {
            row[0] for row in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        if "schema_version" not in tables:
            return 0
        row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    # -- every operation: bounded waits, damage left behind ---------------------------------------

    def _run(self, operation: Callable[[], T]) -> T:
        """Run `operation` under the lock, waiting at most busy_timeout_s for another process."""
        deadline = time.monotonic() + self.busy_timeout_s
        where = self.path or "in memory"
        if not self._lock.acquire(timeout=self.busy_timeout_s):
            raise busy_error(where, self.busy_timeout_s)
        try:
            pause = 0.01
            while True:
                left_ms = max(0, int(1000 * (deadline - time.monotonic())))
                try:
                    self._db.execute(f"PRAGMA busy_timeout = {left_ms}")
                    return operation()
                except sqlite3.DatabaseError as exc:
                    if is_busy(exc):
                        if time.monotonic() + pause >= deadline:
                            raise busy_error(where, self.busy_timeout_s) from exc
                        time.sleep(pause)  # SQLite gave up at once (it may): try again
                        pause = min(2 * pause, 0.5)
                        continue
                    if is_damaged(exc) and self._fall_back and self.path is not None:
                        self._leave(f"was found damaged while in use ({exc})")
                        return operation()
                    raise HistoryError(
                        f"The run history {where} failed: {exc}. Check the disk it is on (full? "
                        "read-only?), or set ACTPATCH_DATA_DIR to another folder.",
                        reason=f"failed ({exc})",
                        field="data_dir",
                    ) from exc
        finally:
            self._lock.release()

    def _leave(self, reason: str) -> None:
        """Stop using the damaged file (called with the lock held): go on beside it or in memory.

        Closing the last connection to a WAL database folds the WAL into the file (a
        checkpoint). A read-only connection opened first makes ours not the last, and cannot
        checkpoint itself: the file stays as it was found, its WAL beside it, for a recovery."""
        assert self.path is not None
        keeper = None
        with suppress(sqlite3.Error):
            keeper = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            keeper.execute("PRAGMA schema_version").fetchone()
        with suppress(sqlite3.Error):
            self._db.close()
        if keeper is not None:
            keeper.close()
        limits = {
            "max_runs": self.max_runs,
            "max_bytes": self.max_bytes,
            "busy_timeout_s": self.busy_timeout_s,
        }
        instead = History._instead(self.requested, reason, limits)
        self._db, self.path, self.problem = instead._db, instead.path, instead.problem

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
        """Keep one run (one transaction, then retention); its id. Model and backend are read
        from the result."""
        from actpatch.version import __version__

        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        if seconds is None and isinstance(result.get("seconds"), int | float):
            seconds = float(result["seconds"])
        request_text, result_text = json_text(request), json_text(result)
        row = (
            kind,
            label or label_of(kind, request, result),
            created,
            result.get("model"),
            result.get("backend"),
            __version__,
            seconds,
            int(complete),
            request_text,
            result_text,
            len(request_text.encode()) + len(result_text.encode()),
        )

        def insert() -> int:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO runs (kind, label, created_at, model, backend, version, "
                    "seconds, complete, request, result, bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                run_id = int(cursor.lastrowid or 0)
                self._retain(run_id)
            return run_id

        return self._run(insert)

    def _retain(self, newest: int) -> None:
        """Delete the oldest unpinned runs beyond max_runs or max_bytes (never `newest`)."""
        if self.max_runs is not None:
            self._db.execute(
                "DELETE FROM runs WHERE id IN (SELECT id FROM runs WHERE pinned = 0 "
                "ORDER BY id DESC LIMIT -1 OFFSET ?) AND id != ?",
                (max(1, self.max_runs), newest),
            )
        if self.max_bytes is not None:
            total, cut = 0, None
            for run_id, size in self._db.execute(
                "SELECT id, bytes FROM runs WHERE pinned = 0 ORDER BY id DESC"
            ):
                total += int(size)
                if total > self.max_bytes and run_id != newest:
                    cut = int(run_id)
                    break
            if cut is not None:
                self._db.execute("DELETE FROM runs WHERE pinned = 0 AND id <= ?", (cut,))

    def list(self, limit: int = 100, kind: str | None = None, offset: int = 0) -> list[StoredRun]:
        """The most recent runs first, skipping `offset` (request and result left empty)."""
        query = f"SELECT {SUMMARY} FROM runs"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query += " WHERE kind = ?"
            args = (kind,)
        query += " ORDER BY id DESC LIMIT ? OFFSET ?"
        rows = self._run(lambda: self._db.execute(query, (*args, limit, offset)).fetchall())
        return [stored_run(row, {}, {}) for row in rows]

    def count(self, kind: str | None = None) -> int:
        """How many runs are kept (of this kind)."""
        query = "SELECT COUNT(*) FROM runs"
        args: tuple[Any, ...] = ()
        if kind is not None:
            query, args = query + " WHERE kind = ?", (kind,)
        return int(self._run(lambda: self._db.execute(query, args).fetchone()[0]))

    def get(self, run_id: int) -> StoredRun:
        """The run with this id, request and result included; RunNotFoundError if none."""
        row = self._run(
            lambda: self._db.execute(
                f"SELECT {SUMMARY}, request, result FROM runs WHERE id = ?", (int(run_id),)
            ).fetchone()
        )
        if row is None:
            raise self._not_found(run_id)
        return stored_run(row, json.loads(row[10]), json.loads(row[11]))

    def pin(self, run_id: int, pinned: bool = True) -> StoredRun:
        """Pin a run (retention never deletes it) or unpin it; the run's summary."""

        def update() -> int:
            with self._transaction():
                cursor = self._db.execute(
                    "UPDATE runs SET pinned = ? WHERE id = ?", (int(pinned), int(run_id))
                )
                return int(cursor.rowcount)

        if not self._run(update):
            raise self._not_found(run_id)
        return self.get(run_id)

    def delete(self, run_id: int) -> None:
        """Delete one run; RunNotFoundError if there is none with this id."""

        def delete() -> int:
            with self._transaction():
                cursor = self._db.execute("DELETE FROM runs WHERE id = ?", (int(run_id),))
                return int(cursor.rowcount)

        if not self._run(delete):
            raise self._not_found(run_id, "to delete")

    def _not_found(self, run_id: int, what: str = "") -> RunNotFoundError:
        message = f"There is no run {run_id} in the history{' ' + what if what else ''}: it never "
        message += "existed or was deleted."
        if self.problem:
            message += f" (Runs kept in {self.requested} cannot be read now: {self.problem})"
        return RunNotFoundError(message, field="run_id")

    def __len__(self) -> int:
        return self.count()

    def close(self) -> None:
        with self._lock:
            self._db.close()


Store = Callable[[str, dict[str, Any], dict[str, Any]], int]
