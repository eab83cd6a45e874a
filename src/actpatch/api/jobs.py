"""Background jobs (sweeps, attributions): start one, watch its progress, fetch its result, or
cancel it.

A job runs an engine call (`sweep`, `attribute`) in a worker thread (at most `workers` at
once; more wait in a queue of at most `max_pending` queued and running jobs: a job beyond that
is refused with `BusyError`, 429, and a Retry-After estimated from recent jobs). The engine
reports progress as cells finish and polls `should_stop` between batches, so a cancelled job
stops computing within one batch of cells. A job nobody has asked about for `idle_timeout_s`
seconds is cancelled too, so a closed browser tab does not keep the CPU busy. A synchronous
request of the same kind (`POST /sweep`) takes one of the same `max_pending` places for as long
as it computes (`place()`), so one limit bounds the work of both.

A job's status changes under one lock, and a final status (done, failed, cancelled) never
changes again: a cancel that arrives while the job runs wins at once (the answer says
`cancelled`, and the worker's result, if it finishes its last batch anyway, is dropped); one
that arrives after the job finished answers with the finished job (`done`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from actpatch.errors import ActpatchError, CancelledError

from .errors import BusyError, NotFoundError

logger = logging.getLogger("actpatch.api")

# progress(done, total) or progress(done, total, partial): partial is the result so far.
Progress = Callable[..., None]
ShouldStop = Callable[[], bool]
SweepWork = Callable[[Progress, ShouldStop], dict[str, Any]]
# A job is queued, then running, then one of FINAL, which never changes again.
STATUSES = ("queued", "running", "done", "failed", "cancelled")
FINAL = STATUSES[2:]
# Retry-After before any sweep has finished (a head sweep on GPT-2 small takes about 1 s idle).
FIRST_RETRY_S = 5


@dataclass
class Job:
    """One background sweep and everything a client may ask about it."""

    id: str
    model: str
    component: str
    idle_timeout_s: float
    status: str = "queued"  # one of STATUSES
    done: int = 0
    total: int = 0
    started: float | None = None
    finished: float | None = None
    result: dict[str, Any] | None = None
    partial: dict[str, Any] | None = None  # the result so far, while running (and if cancelled)
    error: dict[str, Any] | None = None
    last_seen: float = field(default_factory=time.monotonic)
    cancel_requested: threading.Event = field(default_factory=threading.Event)

    @property
    def idle(self) -> bool:
        return time.monotonic() - self.last_seen > self.idle_timeout_s

    def should_stop(self) -> bool:
        return self.cancel_requested.is_set() or self.idle

    def progress(self, done: int, total: int, partial: dict[str, Any] | None = None) -> None:
        self.done, self.total = done, total
        if partial is not None:
            self.partial = partial

    @property
    def elapsed_s(self) -> float:
        if self.started is None:
            return 0.0
        return (self.finished or time.monotonic()) - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "status": self.status,
            "model": self.model,
            "component": self.component,
            "done": self.done,
            "total": self.total,
            "elapsed_s": round(self.elapsed_s, 3),
            "result": self.result,
            "partial": self.partial if self.result is None else None,
            "error": self.error,
        }


class SweepJobs:
    """Jobs of one kind by id, run by a small pool of worker threads.

    `kind` ("sweep", "attribution") and `route` (the resource they compute: "/sweep",
    "/attribute"; their jobs live under `{route}/jobs`) are what the messages call them.
    """

    def __init__(
        self,
        workers: int = 1,
        keep: int = 64,
        idle_timeout_s: float = 120.0,
        max_pending: int = 8,
        kind: str = "sweep",
        route: str = "/sweep",
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"actpatch-{kind}")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._recent_s: deque[float] = deque(maxlen=8)  # how long the last sweeps ran
        self._inline = 0  # synchronous requests holding a place (see `place`)
        self.workers = workers
        self.keep = keep
        self.idle_timeout_s = idle_timeout_s
        self.max_pending = max_pending
        self.kind = kind
        self.route = route

    @property
    def running(self) -> int:
        """Jobs queued or running."""
        return sum(job.status not in FINAL for job in list(self._jobs.values()))

    def retry_after_s(self) -> int:
        """Seconds until a place in the queue is likely free: the mean of recent sweeps."""
        recent = list(self._recent_s)
        mean = sum(recent) / len(recent) if recent else FIRST_RETRY_S
        return max(1, min(600, math.ceil(mean / self.workers)))

    def _check_room(self) -> None:
        """Raise `BusyError` when every place is taken (called with the lock held)."""
        taken = self.running + self._inline
        if taken < self.max_pending:
            return
        retry = self.retry_after_s()
        raise BusyError(
            f"This server already has {taken} {self.kind}s queued or running (background jobs "
            f"and POST {self.route} together), as many as it takes "
            f"(ACTPATCH_MAX_PENDING_JOBS={self.max_pending}). Try again in about {retry} s, or "
            f"cancel one of yours (DELETE {self.route}/jobs/{{id}}).",
            retry_after_s=retry,
        )

    @contextmanager
    def place(self) -> Iterator[None]:
        """Hold one of the `max_pending` places while a request computes in its own thread;
        `BusyError` (429 with Retry-After) at once when every place is taken."""
        with self._lock:
            self._check_room()
            self._inline += 1
        started = time.monotonic()
        finished = False
        try:
            yield
            finished = True
        finally:
            with self._lock:
                self._inline -= 1
                if finished:
                    self._recent_s.append(time.monotonic() - started)

    def submit(self, work: SweepWork, model: str, component: str) -> Job:
        """Queue `work(progress, should_stop)`; return its job at once (`BusyError` if full)."""
        with self._lock:
            self._check_room()
            job = Job(uuid.uuid4().hex[:12], model, component, self.idle_timeout_s)
            self._jobs[job.id] = job
            self._forget_old()
        self._pool.submit(self._run, job, work)
        return job

    def get(self, job_id: str) -> Job:
        """The job with this id (marking it as watched); a teaching 404 if there is none."""
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                f"There is no {self.kind} job {job_id!r}: it never existed, or it finished more "
                f"than {self.keep} jobs ago and was forgotten. Start one with POST "
                f"{self.route}/jobs.",
                field="job_id",
            )
        job.last_seen = time.monotonic()
        return job

    def cancel(self, job_id: str) -> Job:
        """Cancel the job now, unless it has finished (then it is returned as it finished).

        A running job's worker stops within one batch of cells; its status is `cancelled`
        from this call on.
        """
        job = self.get(job_id)
        with self._lock:
            if job.status not in FINAL:
                job.cancel_requested.set()
                self._finish(job, "cancelled", error=self._cancelled())
        return job

    def shutdown(self) -> None:
        """Cancel every job and stop the workers (the server is shutting down)."""
        for job in list(self._jobs.values()):
            job.cancel_requested.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the worker side ----------------------------------------------------------------------

    def _run(self, job: Job, work: SweepWork) -> None:
        with self._lock:
            if job.status != "queued":  # cancelled while it waited
                return
            if job.should_stop():
                self._finish(job, "cancelled", error=self._cancelled(job))
                return
            job.status, job.started = "running", time.monotonic()
        try:
            result = work(job.progress, job.should_stop)
        except CancelledError:
            self._end(job, "cancelled", error=self._cancelled(job))
        except ActpatchError as exc:
            self._end(job, "failed", error={"detail": exc.message, "field": exc.field})
        except Exception as exc:  # a bug: report it on the job, keep the worker alive
            logger.exception("%s job %s failed", self.kind, job.id)
            detail = (
                f"The {self.kind} failed with an internal error ({type(exc).__name__}: {exc}). "
            )
            detail += "This is a bug in actpatch: please report it with the request."
            self._end(job, "failed", error={"detail": detail, "field": None})
        else:
            self._end(job, "done", result=result)

    def _end(
        self,
        job: Job,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """The worker's end of a job, unless a cancel already ended it (a cancel wins)."""
        with self._lock:
            if job.status in FINAL:
                return
            self._finish(job, status, result, error)
            if status == "done":
                self._recent_s.append(job.elapsed_s)

    def _finish(
        self,
        job: Job,
        status: str,
        result: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
    ) -> None:
        """Give the job its final status (called with the lock held)."""
        job.result, job.error = result, error
        job.finished = time.monotonic()
        job.status = status  # last: a client that sees the status also sees the result

    def _forget_old(self) -> None:
        """Drop the oldest finished jobs beyond `keep` (called with the lock held)."""
        finished = [i for i, j in self._jobs.items() if j.status in FINAL]
        for job_id in finished[: max(0, len(self._jobs) - self.keep)]:
            del self._jobs[job_id]

    def _cancelled(self, job: Job | None = None) -> dict[str, Any]:
        """A cancelled job's error: why it was cancelled (asked to, or left unwatched)."""
        if job is not None and job.idle and not job.cancel_requested.is_set():
            detail = (
                f"The {self.kind} was cancelled because nobody asked for its progress for "
                f"{job.idle_timeout_s:g} s. Poll GET {self.route}/jobs/{{id}} while it runs, or "
                f"use POST {self.route} to wait for the result in one request."
            )
        else:
            detail = f"The {self.kind} was cancelled."
        return {"detail": detail, "field": None}
