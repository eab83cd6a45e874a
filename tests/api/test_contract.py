"""The specification's /patch fields: exactly them, in its order, from the engine's result."""

from __future__ import annotations

import dataclasses
import math

import pytest
from fastapi.testclient import TestClient

import actpatch
from actpatch.api.contract import patch_response, spec_fields
from actpatch.models import LoadedModel
from tests.conftest import IOI_CLEAN, IOI_CORRUPT, SPEC_FIELDS


def test_spec_fields_are_the_specifications_in_its_order(tiny_model: LoadedModel) -> None:
    exp = actpatch.Experiment(tiny_model, "Paris is the capital of", "Rome is the capital of", " F")
    result = actpatch.patch(exp, layer=1, head=2)
    spec = spec_fields(result)
    assert list(spec) == SPEC_FIELDS
    assert spec["clean_prob"] == result.clean_prob and spec["patched_rank"] == result.patched_rank
    assert spec["top_clean"][0] == {
        "token": result.top_clean[0].token,
        "prob": result.top_clean[0].prob,
    }


def test_response_puts_the_spec_first_then_the_rest(tiny_model: LoadedModel) -> None:
    exp = actpatch.Experiment(tiny_model, "Paris is the capital of", "Rome is the capital of", " F")
    result = actpatch.patch(exp, layer=0, head=1)
    body = patch_response(result, model="tiny", cached=False)
    assert list(body)[: len(SPEC_FIELDS)] == SPEC_FIELDS
    assert body["model"] == "tiny" and body["cached"] is False
    assert body["metric"] == result.metric and body["layer"] == 0 and body["head"] == 1


def test_undefined_recovery_is_null(tiny_model: LoadedModel) -> None:
    exp = actpatch.Experiment(tiny_model, "Paris is the capital of", "Rome is the capital of", " F")
    result = dataclasses.replace(actpatch.patch(exp, layer=0, head=1), recovery_pct=math.nan)
    assert spec_fields(result)["recovery_pct"] is None


@pytest.mark.parametrize(
    ("route", "extra"),
    [
        ("/patch", {"layer": 1, "head": 2}),
        ("/sweep", {"component": "z"}),
        ("/attribute", {"component": "z"}),
        ("/attention", {"layer": 1, "head": 2}),
        ("/dla", {}),
        ("/lens", {}),
    ],
)
def test_every_answer_names_the_devices_used(
    client: TestClient, tiny_model: LoadedModel, route: str, extra: dict[str, object]
) -> None:
    body = {
        "clean_prompt": IOI_CLEAN,
        "corrupt_prompt": IOI_CORRUPT,
        "target_token": " Mary",
        "wrong_token": " John",
        **extra,
    }
    response = client.post(route, json=body)
    assert response.status_code == 200, response.text
    assert response.json()["devices"] == tiny_model.devices == ["cpu"]
