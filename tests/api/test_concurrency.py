"""Many clients at once: each gets exactly the answer it would get alone.

The model is shared by every request. A patch from one request must never leak into another
running at the same time, and the experiment cache must not mix up prompts (it is kept small
here so that experiments are evicted while others are in use).
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

import actpatch
from actpatch.api import Settings, create_app
from actpatch.api.contract import spec_fields
from actpatch.models import LoadedModel
from tests.api.conftest import serving
from tests.api.routes.test_sweep import assert_same_grid
from tests.conftest import SPEC_FIELDS

NAMES = ["Mary", "John", "Tom", "James", "Dan", "Sid", "Martin", "Amy", "Paul", "Anna"]
TEMPLATE = "When {a} and {b} went to the store, {s} gave a drink to"
CLIENTS = 32  # 8 prompt pairs x (patch, sweep) x 2: every request has a twin running alongside


def _pairs() -> list[dict[str, Any]]:
    rng = random.Random(0)
    pairs = []
    for i in range(8):
        a, b = rng.sample(NAMES, 2)
        pairs.append(
            {
                "clean_prompt": TEMPLATE.format(a=a, b=b, s=b),
                "corrupt_prompt": TEMPLATE.format(a=a, b=b, s=a),
                "target_token": f" {a}",
                "wrong_token": f" {b}",
                "layer": i % 3,
                "head": (i * 3) % 4,
                "direction": "denoising" if i % 2 else "noising",
                "component": "z" if i % 2 else "resid_pre",
            }
        )
    return pairs


def _alone(model: LoadedModel, request: dict[str, Any], kind: str) -> dict[str, Any]:
    """The engine's answer for one request, on a fresh experiment, with nothing else running."""
    exp = actpatch.Experiment(
        model,
        request["clean_prompt"],
        request["corrupt_prompt"],
        request["target_token"],
        request["wrong_token"],
    )
    if kind == "patch":
        one = actpatch.patch(
            exp,
            request["layer"],
            request["head"],
            component="z",
            direction=request["direction"],
        )
        return spec_fields(one)
    return actpatch.sweep(exp, request["component"], direction=request["direction"]).to_dict()


@pytest.mark.slow
def test_concurrent_clients_get_their_own_answers(tiny_model: LoadedModel) -> None:
    pairs = _pairs()
    expected = {
        (i, kind): _alone(tiny_model, pair, kind)
        for i, pair in enumerate(pairs)
        for kind in ("patch", "sweep")
    }
    work = [(i, kind) for i in range(len(pairs)) for kind in ("patch", "sweep")] * 2
    assert len(work) == CLIENTS
    random.Random(1).shuffle(work)
    # Every sweep admitted at once (by default, sweeps past 8 are refused with 429).
    app = create_app(Settings(cache_size=3, max_pending_jobs=CLIENTS), {"tiny": tiny_model})

    with serving(app) as base, httpx.Client(base_url=base, timeout=60) as http:

        def call(item: tuple[int, str]) -> tuple[tuple[int, str], httpx.Response]:
            i, kind = item
            body = dict(pairs[i])
            if kind == "sweep":
                body = {k: v for k, v in body.items() if k not in ("layer", "head")}
            else:
                body.update(component="z")
            return item, http.post(f"/{kind}", json=body)

        with ThreadPoolExecutor(max_workers=CLIENTS) as pool:
            answers = list(pool.map(call, work))

    for (i, kind), response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        if kind == "patch":
            assert {k: body[k] for k in SPEC_FIELDS} == expected[(i, kind)]
        else:
            assert body["tokens"] == expected[(i, kind)]["tokens"]
            assert_same_grid(body["raw"], expected[(i, kind)]["raw"])


def test_a_request_that_finds_no_place_in_time_is_told_when_to_come_back(
    tiny_model: LoadedModel, tmp_path: Any
) -> None:
    """Every compute place taken past ACTPATCH_RUN_WAIT_S: a synchronous patch or view is
    refused with 429 and Retry-After instead of holding one of the server's threads; once a
    place frees, the same request computes."""
    from tests.api.conftest import local_client

    settings = Settings(max_concurrent_runs=1, run_wait_s=0.2, data_dir=str(tmp_path))
    app = create_app(settings, {"tiny": tiny_model})
    client = local_client(app)
    pair = _pairs()[0]
    body = {k: pair[k] for k in ("clean_prompt", "corrupt_prompt", "target_token", "wrong_token")}
    with app.state.workbench.computing():  # the one place, held by another computation
        for route, extra in (("/patch", {"layer": 1, "head": 2}), ("/dla", {})):
            response = client.post(route, json={**body, **extra})
            assert response.status_code == 429, response.text
            assert response.headers["Retry-After"] == "1"
            assert "ACTPATCH_RUN_WAIT_S" in response.json()["detail"]
    assert client.post("/patch", json={**body, "layer": 1, "head": 2}).status_code == 200
