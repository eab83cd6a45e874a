"""Background sweep jobs: progress, results, cancelling, the queue, and idle jobs."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from actpatch.api.errors import BusyError, NotFoundError
from actpatch.api.jobs import FIRST_RETRY_S, Job, Progress, ShouldStop, SweepJobs
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


def test_a_full_queue_refuses_with_a_retry_time() -> None:
    jobs = SweepJobs(workers=1, idle_timeout_s=30, max_pending=2)
    first, second = jobs.submit(_until_stopped, "m", "z"), jobs.submit(_until_stopped, "m", "z")
    with pytest.raises(BusyError) as busy:
        jobs.submit(_until_stopped, "m", "z")
    assert busy.value.retry_after_s == FIRST_RETRY_S  # no sweep has finished yet
    assert "ACTPATCH_MAX_PENDING_JOBS=2" in busy.value.message
    jobs.cancel(second.id)  # a place is free again at once
    third = jobs.submit(lambda p, s: {}, "m", "z")
    jobs.cancel(first.id)
    assert _wait(third).status == "done"
    jobs.shutdown()


def test_retry_after_is_the_mean_of_recent_sweeps() -> None:
    jobs = SweepJobs(workers=2, max_pending=1)
    jobs._recent_s.extend([3.0, 5.0])
    assert jobs.retry_after_s() == 2  # mean 4 s over 2 workers
    jobs.shutdown()


def test_a_cancel_during_the_last_batch_wins(jobs: SweepJobs) -> None:
    last_batch = threading.Event()
    finish = threading.Event()

    def ends_anyway(progress: Progress, should_stop: ShouldStop) -> dict[str, Any]:
        last_batch.set()
        finish.wait(10)  # the last layer: no more should_stop checks before it returns
        return {"raw": [[1.0]]}

    job = jobs.submit(ends_anyway, "m", "z")
    assert last_batch.wait(10)
    reply = jobs.cancel(job.id).to_dict()
    finish.set()
    assert reply["status"] == "cancelled"
    _wait(job)
    assert job.status == "cancelled" and job.result is None  # never `done` after the cancel


def test_a_cancel_after_the_end_says_done(jobs: SweepJobs) -> None:
    job = _wait(jobs.submit(lambda p, s: {"raw": [[1.0]]}, "m", "z"))
    reply = jobs.cancel(job.id).to_dict()
    assert reply["status"] == "done" and reply["result"] == {"raw": [[1.0]]}


def test_messages_name_the_kind_of_job_and_its_routes() -> None:
    jobs = SweepJobs(workers=1, idle_timeout_s=30, max_pending=1, kind="attribution", route="/x")
    with pytest.raises(NotFoundError, match=r"no attribution job 'nope'.*POST /x/jobs"):
        jobs.get("nope")
    running = jobs.submit(_until_stopped, "m", "z")
    with pytest.raises(BusyError, match=r"1 attributions queued.*DELETE /x/jobs/\{id\}"):
        jobs.submit(_until_stopped, "m", "z")
    jobs.cancel(running.id)
    assert running.error == {"detail": "The attribution was cancelled.", "field": None}
    jobs.shutdown()


def test_a_synchronous_request_takes_a_place_among_the_jobs() -> None:
    jobs = SweepJobs(workers=1, idle_timeout_s=30, max_pending=2)
    queued = jobs.submit(_until_stopped, "m", "z")
    with jobs.place():  # a POST /sweep computing in its own thread: the second place
        with pytest.raises(BusyError) as busy:
            jobs.submit(_until_stopped, "m", "z")
        assert "POST /sweep together" in busy.value.message
        with pytest.raises(BusyError), jobs.place():
            pass
    with jobs.place():  # its place is free again once it answered
        pass
    jobs.cancel(queued.id)
    jobs.shutdown()
