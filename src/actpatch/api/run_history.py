"""The server's run history: every result kept, or answered with a warning that says why not.

`actpatch.history.History.open` never refuses its file: a damaged or unreadable one is left
untouched and runs go to a fresh database beside it (or to memory), which `problem` says. The
server says so loudly: in the terminal at start, on the page (a notice of GET /models, and the
history panel), and in GET /health (status `degraded`, with the reason).

A computed result is never lost to the history: when it cannot be stored (another process
holds the lock past `history_busy_timeout_s`, a full disk) it is answered all the same, with a
`not_kept` warning and no `run_id`. The history's own routes answer 503 instead (with
`Retry-After` when the lock is busy): there is nothing else they could answer.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from actpatch.export import formats_of
from actpatch.history import History, HistoryError, RunNotFoundError
from actpatch.history.schema import json_text

from .errors import NotFoundError
from .settings import Settings

logger = logging.getLogger("actpatch.api")
NOT_KEPT = "not_kept"
# What may differ between a run and the same run again: how long it took, whether the server's
# cache answered, and the id a kept run was given.
REPEAT_IGNORES = frozenset({"seconds", "cached", "run_id"})


class RunHistory:
    """The history the server keeps its runs in, opened at start."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        mb = settings.history_max_mb
        self.history = History.open(
            settings.data_dir,
            max_runs=settings.history_max_runs,
            max_bytes=None if mb is None else int(mb * 2**20),
            busy_timeout_s=settings.history_busy_timeout_s,
        )

    @property
    def problem(self) -> str | None:
        """Why runs are not kept where the settings say (None when they are)."""
        return self.history.problem

    def describe(self) -> dict[str, Any]:
        """Where runs are kept, and what is wrong with where they were asked to be."""
        return self.history.describe()

    def keep(
        self, kind: str, request: dict[str, Any], result: dict[str, Any], *, complete: bool = True
    ) -> dict[str, Any]:
        """Store a run (unless settings.keep_runs is off): the result with its `run_id`, or,
        when it cannot be stored, the result with a `not_kept` warning that says why."""
        if not self.settings.keep_runs:
            return result
        try:
            again = self.repeated(kind, request, result) if complete else None
            if again is not None:  # the page reloaded, a script asked twice: one row, not two
                return {**result, "run_id": again}
            run_id = self.history.store(kind, request, result, complete=complete)
        except HistoryError as exc:
            logger.warning("a %s run was not kept: %s", kind, exc.message)
            warning = {
                "code": NOT_KEPT,
                "field": None,
                "message": f"This run was not kept in the history: {exc.message} The result "
                "here is complete; keep a copy if you need it, or run it again later to keep it.",
            }
            return {**result, "run_id": None, "warnings": [*result.get("warnings", []), warning]}
        return {**result, "run_id": run_id}

    def repeated(self, kind: str, request: dict[str, Any], result: dict[str, Any]) -> int | None:
        """The id of the newest kept run of this kind when it is this very run again: the same
        request, and the same result but for its timing (`REPEAT_IGNORES`); else None."""
        newest = self.history.list(1, kind)
        if not newest or not newest[0].complete:
            return None
        kept = self.history.get(newest[0].id)

        def as_kept(value: dict[str, Any]) -> Any:  # as the history reads it back
            return json.loads(json_text(value))

        def numbers(answer: dict[str, Any]) -> Any:
            return as_kept({k: v for k, v in answer.items() if k not in REPEAT_IGNORES})

        if kept.request != as_kept(request) or numbers(kept.result) != numbers(result):
            return None
        return kept.id

    def page(self, limit: int, offset: int = 0, kind: str | None = None) -> dict[str, Any]:
        """`limit` runs from the `offset`-th most recent on, without their results, and the
        folder they are kept in (`data_dir`: the settings', even when its file was left aside;
        `history` says where runs go instead)."""
        runs = self.history.list(limit, kind, offset)
        total = self.history.count(kind)
        after = offset + len(runs)
        return {
            # what each downloads as (GET /runs/{id}/export/{fmt}): the page offers just these
            "runs": [{**run.summary(), "formats": list(formats_of(run.kind))} for run in runs],
            "total": total,
            "offset": offset,
            "next_offset": after if after < total and runs else None,
            "data_dir": str(self.history.requested.parent),
            "history": self.describe(),
        }

    def run(self, run_id: int) -> dict[str, Any]:
        """One stored run with its request and result; 404 when there is none."""
        try:
            return self.history.get(run_id).to_dict()
        except RunNotFoundError as exc:
            raise NotFoundError(exc.message, field="run_id") from None

    def pin(self, run_id: int, pinned: bool) -> dict[str, Any]:
        """Pin a run (retention never deletes it) or unpin it; 404 when there is none."""
        try:
            return self.history.pin(run_id, pinned).summary()
        except RunNotFoundError as exc:
            raise NotFoundError(exc.message, field="run_id") from None

    def delete(self, run_id: int) -> dict[str, Any]:
        """Delete one stored run; 404 when there is none."""
        try:
            summary = self.history.get(run_id).summary()
            self.history.delete(run_id)
        except RunNotFoundError as exc:
            raise NotFoundError(exc.message, field="run_id") from None
        return summary

    def close(self) -> None:
        self.history.close()
