"""Run history: every run kept in a SQLite file, to reopen or compare.

A *run* is one computation a user asked for: its kind ("patch", "sweep", "ablation",
"attribution", and the circuit kinds "path", "edges", "evaluation"), the request that produced
it (prompts, answers, options), the model and the backend that computed it, the actpatch
version, the result exactly as it was returned (JSON), how long it took and when, and a label
for lists (`titles`: what it patched and on which prompts, whole). Reopening a run reads it
back; nothing is recomputed. A *pinned* run is one the user asked to keep: retention never
deletes it.

Durability. The database is one SQLite file in WAL mode, and each run is written in one
transaction: a crash mid-write loses at most the run being written, never an earlier one.
The schema has a version (table `schema_version`); opening a database applies the migrations
it lacks, in order, each in its own transaction.

Damage. Opening a file first checks it through a read-only connection (`PRAGMA quick_check`),
before anything could be written to it. A file that is damaged, is not a SQLite database, is
another program's database, or was written by a newer actpatch is refused by `History(path)`
with an error that says so, and is never written to. `History.open(path)`, what the server
uses, never refuses: it leaves such a file byte-for-byte untouched and keeps new runs in a fresh
database beside it (`runs.fresh.sqlite3`), or in memory when that cannot be had either, and
says why in `problem`. A file SQLite finds damaged while in use is left the same way, at once.

Busy. Another process may hold the write lock (a second server on the same folder, a sqlite3
shell): an operation waits for it at most `busy_timeout_s` (SQLite's own retries, then ours),
then raises `HistoryBusyError`, which says when to try again. Nothing waits without bound.

Retention. `max_runs` and `max_bytes` bound the unpinned runs kept: after each store the oldest
unpinned runs beyond either bound are deleted, never the run just stored. Deleted runs free
pages that later runs reuse; the file does not shrink (`sqlite3 runs.sqlite3 VACUUM` does).

Where. `default_data_dir()`: $ACTPATCH_DATA_DIR, else ~/.local/share/actpatch; the file is
`runs.sqlite3` in it. This module knows nothing of HTTP or terminals.
"""

from .files import (
    FILENAME,
    HistoryBusyError,
    HistoryError,
    check_file,
    default_data_dir,
    history_path,
)
from .schema import MIGRATIONS, SCHEMA_VERSION, StoredRun, json_text
from .store import History, RunNotFoundError, Store
from .titles import label_of, short_model_name

__all__ = [
    "FILENAME",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "History",
    "HistoryBusyError",
    "HistoryError",
    "RunNotFoundError",
    "Store",
    "StoredRun",
    "check_file",
    "default_data_dir",
    "history_path",
    "json_text",
    "label_of",
    "short_model_name",
]
