"""Background sweep jobs: progress, results, cancelling, the queue, and idle jobs."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actpatch.api.errors import NotFoundError
from actpatch.api.jobs import Job, Progress, ShouldStop, SweepJobs
from actpatch.errors import CancelledError, InputError


def _until_stopped(progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
    """Work that runs until it is told to stop, reporting progress as it goes."""
    for done in range(10_000):
        if should_stop():
            raise CancelledError("The sweep was cancelled.")
        progress(done, 10_000)
        time.sleep(0.005)
    return {}


def _wait(job: Job, timeout: float = 10) -> Job:
    deadline = time.monotonic() + timeout
    while job.status in ("queued", "running") and time.monotonic() < deadline:
        job.last_seen = time.monotonic()
        time.sleep(0.01)
    return job


@pytest.fixture
def jobs() -> Any:
    pool = SweepJobs(workers=1, keep=4, idle_timeout_s=30)
    yield pool
    pool.shutdown()


def test_done_job_has_its_result(jobs: SweepJobs) -> None:
    def work(progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
        progress(3, 3)
        return {"raw": [[1.0]]}

    job = _wait(jobs.submit(work, "m", "z"))
    assert job.to_dict()["status"] == "done"
    assert job.to_dict()["result"] == {"raw": [[1.0]]}
    assert (job.done, job.total) == (3, 3)


def test_cancel_running_job(jobs: SweepJobs) -> None:
    job = jobs.submit(_until_stopped, "m", "z")
    while job.done < 2:
        time.sleep(0.01)
    jobs.cancel(job.id)
    assert _wait(job).status == "cancelled"
    assert job.error == {"detail": "The sweep was cancelled.", "field": None}


def test_queued_job_is_cancelled_at_once(jobs: SweepJobs) -> None:
    running = jobs.submit(_until_stopped, "m", "z")
    queued = jobs.submit(_until_stopped, "m", "z")
    assert jobs.get(queued.id).status == "queued"
    assert jobs.cancel(queued.id).status == "cancelled"
    jobs.cancel(running.id)
    assert _wait(running).status == "cancelled"
    assert queued.started is None  # never ran


def test_failed_job_keeps_the_teaching_message(jobs: SweepJobs) -> None:
    def work(progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
        raise InputError("Patch z instead.", field="component")

    job = _wait(jobs.submit(work, "m", "pattern"))
    assert job.status == "failed"
    assert job.error == {"detail": "Patch z instead.", "field": "component"}


def test_a_bug_fails_the_job_not_the_worker(jobs: SweepJobs) -> None:
    def broken(progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
        raise ZeroDivisionError("oops")

    assert _wait(jobs.submit(broken, "m", "z")).status == "failed"
    assert _wait(jobs.submit(lambda p, s: {"ok": True}, "m", "z")).status == "done"


def test_unwatched_job_is_cancelled() -> None:
    jobs = SweepJobs(workers=1, idle_timeout_s=0.1)
    job = jobs.submit(_until_stopped, "m", "z")
    deadline = time.monotonic() + 10
    while job.status in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.02)  # not calling get(): nobody is watching
    assert job.status == "cancelled"
    assert "nobody asked" in job.error["detail"]  # type: ignore[index]
    jobs.shutdown()


def test_old_finished_jobs_are_forgotten(jobs: SweepJobs) -> None:
    first = _wait(jobs.submit(lambda p, s: {}, "m", "z"))
    for _ in range(5):
        _wait(jobs.submit(lambda p, s: {}, "m", "z"))
    with pytest.raises(NotFoundError):
        jobs.get(first.id)
