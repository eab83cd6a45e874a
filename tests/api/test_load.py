"""A crowd of synchronous sweeps never starves the server (issue 20): past the job limit they
are refused at once (429 with Retry-After), so GET /health keeps answering, within a generous
second, while they wait and while they compute. A behaviour check, not a benchmark:
`benchmarks/bench_burst.py` measures latency and memory under the same burst."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actpatch.api import Settings, create_app
from actpatch.models import LoadedModel
from tests.api.conftest import SPEC_REQUEST, serving

BURST = 60  # the issue's: more than the 40 threads FastAPI runs plain routes in
SWEEP = {k: SPEC_REQUEST[k] for k in ("clean_prompt", "corrupt_prompt", "target_token")}


def _post(url: str, body: dict[str, Any]) -> tuple[int, str | None]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, None
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Retry-After")


def _health(base: str) -> int:
    with urllib.request.urlopen(f"{base}/health", timeout=1.0) as response:  # the bound
        return int(response.status)


def test_health_answers_while_a_crowd_of_sweeps_waits_and_computes(
    tiny_model: LoadedModel,
) -> None:
    settings = Settings(model="tiny", max_concurrent_runs=1, max_pending_jobs=8, keep_runs=False)
    app = create_app(settings, {"tiny": tiny_model})
    workbench = app.state.workbench
    with serving(app) as base, ThreadPoolExecutor(BURST) as pool:
        with workbench.computing():  # the one compute place is taken: every sweep must wait
            answers = [
                pool.submit(_post, f"{base}/sweep", {**SWEEP, "component": c})
                for c in ("z", "resid_pre") * (BURST // 2)
            ]
            refused = _refusals(answers, BURST - settings.max_pending_jobs)
            assert _health(base) == 200  # while 8 sweeps hold places and wait
            assert all(status == 429 and int(retry or 0) >= 1 for status, retry in refused)
        assert all(_health(base) == 200 for _ in range(5))  # while the admitted ones compute
        statuses = [a.result()[0] for a in answers]
    assert statuses.count(200) == settings.max_pending_jobs
    assert statuses.count(429) == BURST - settings.max_pending_jobs
    workbench.close()


def _refusals(answers: list[Any], expected: int) -> list[tuple[int, str | None]]:
    """The answers that came (refusals come at once; admitted sweeps wait for the place), once
    `expected` of them did (or after a minute, for the assertions to say what came)."""
    deadline = time.monotonic() + 60
    while sum(a.done() for a in answers) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return [a.result() for a in answers if a.done()]
