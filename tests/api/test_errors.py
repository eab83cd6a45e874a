"""Errors as answers: malformed bodies, unknown routes, and bugs never give a bare 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from actpatch.api import Settings, create_app
from actpatch.api.errors import explain
from actpatch.models import LoadedModel
from tests.api.conftest import SPEC_REQUEST, local_client


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{bad json", "not valid JSON"),
        ('["a", "list"]', "JSON object"),
        ('"a string"', "JSON object"),
        ("", "JSON object"),
    ],
)
def test_malformed_body(client: TestClient, content: str, words: str) -> None:
    response = client.post("/patch", content=content, headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "body"
    assert words in body["detail"]
    assert '"clean_prompt"' in body["detail"]  # shows what a good body looks like


def test_several_bad_fields_are_all_named(client: TestClient) -> None:
    response = client.post("/patch", json={**SPEC_REQUEST, "layer": "x", "head": "y"})
    assert {e["field"] for e in response.json()["errors"]} == {"layer", "head"}


def test_union_field_reports_once(client: TestClient) -> None:
    response = client.post("/patch", json={**SPEC_REQUEST, "clean_prompt": 42})
    body = response.json()
    assert body["field"] == "clean_prompt"
    assert len(body["errors"]) == 1
    assert "string" in body["detail"]


def test_a_list_field_given_one_string_says_to_send_a_list(client: TestClient) -> None:
    """`nodes` is a list only: "a0.h0,m0" (the CLI's spelling) is refused with the list to send,
    not with the prompts' "a string in quotes, or a list of strings"."""
    response = client.post("/circuit/evaluate", json={**PROMPTS, "nodes": "a0.h0,m0"})
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "nodes"
    assert '["a0.h0", "m0"]' in body["detail"] and "string in quotes" not in body["detail"]


def test_unknown_route_and_method(client: TestClient) -> None:
    missing = client.get("/nothing-here")
    assert missing.status_code == 404
    assert "/docs" in missing.json()["detail"]
    wrong = client.get("/patch")
    assert wrong.status_code == 405
    assert "GET" in wrong.json()["detail"]


def test_a_bug_answers_json_500_and_the_server_lives_on(
    tiny_model: LoadedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    app: FastAPI = create_app(Settings(), {"tiny": tiny_model})

    def broken(request: Any) -> Any:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(app.state.workbench, "patch", broken)
    client = local_client(app)
    response = client.post("/patch", json=SPEC_REQUEST)
    assert response.status_code == 500
    assert "simulated bug" in response.json()["detail"]
    assert "Traceback" not in response.text
    assert client.get("/health").status_code == 200


def test_explain_falls_back_to_pydantics_message() -> None:
    field, message = explain(
        {"type": "something_new", "loc": ("body", "layer"), "msg": "odd", "input": 1}
    )
    assert field == "layer"
    assert "odd" in message


@pytest.fixture(scope="module")
def small_body_client(tiny_model: LoadedModel) -> TestClient:
    return local_client(create_app(Settings(max_body_bytes=2048), {"tiny": tiny_model}))


def test_a_body_over_the_limit_is_refused_before_it_is_parsed(
    small_body_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    app: Any = small_body_client.app
    monkeypatch.setattr(app.state.workbench, "patch", lambda r: pytest.fail("parsed"))
    body = {**SPEC_REQUEST, "clean_prompt": "word " * 1000}
    response = small_body_client.post("/patch", json=body)
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "at most 2,048" in detail and "ACTPATCH_MAX_BODY_BYTES" in detail


def test_a_streamed_body_over_the_limit_is_cut_off(small_body_client: TestClient) -> None:
    def chunks() -> Any:  # no Content-Length: the server counts as it reads
        yield b'{"clean_prompt": "'
        for _ in range(100):
            yield b"x" * 100
        yield b'"}'

    response = small_body_client.post(
        "/patch", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert "over 2,048 bytes" in response.json()["detail"]


def test_an_undecodable_body_gets_the_usual_422(client: TestClient) -> None:
    response = client.post(
        "/patch",
        content=b'{"clean_prompt": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    body = response.json()
    assert body["field"] == "body" and "UTF-8" in body["detail"]


# -- issue 20: every odd input a 4xx with a message ---------------------------------------------

LONE = "\ud800Paris is the capital of"  # half of a surrogate pair: no text encoding takes it
PROMPTS = {k: SPEC_REQUEST[k] for k in ("clean_prompt", "corrupt_prompt", "target_token")}


def _raw(client: TestClient, route: str, body: dict[str, Any]) -> Any:
    """POST `body` as JSON text with \\u escapes (how a lone surrogate travels in JSON)."""
    text = json.dumps(body, ensure_ascii=True)
    return client.post(route, content=text, headers={"content-type": "application/json"})


@pytest.mark.parametrize(
    ("route", "extra"),
    [
        ("/patch", {"layer": 0, "head": 0}),
        ("/sweep", {"component": "z"}),
        ("/sweep/jobs", {"component": "z"}),
        ("/attribute", {"component": "z"}),
        ("/path", {}),
        ("/circuit/edges", {}),
    ],
)
def test_a_lone_surrogate_in_a_prompt_is_a_422_on_every_route(
    client: TestClient, route: str, extra: dict[str, Any]
) -> None:
    response = _raw(client, route, {**PROMPTS, **extra, "clean_prompt": LONE})
    assert response.status_code == 422
    assert response.json()["field"] == "clean_prompt"
    assert "not valid Unicode" in response.json()["detail"]


def test_a_lone_surrogate_anywhere_else_is_a_422(client: TestClient) -> None:
    tokenize = _raw(client, "/tokenize", {"clean_prompt": LONE})
    assert tokenize.status_code == 422 and tokenize.json()["field"] == "clean_prompt"
    answer = _raw(client, "/patch", {**PROMPTS, "target_token": "\udc00", "layer": 0, "head": 0})
    assert answer.status_code == 422 and answer.json()["field"] == "target_token"
    line = json.dumps({"clean": LONE, "corrupt": "Berlin is the capital of", "target": " France"})
    jsonl = _raw(client, "/sweep", {"dataset_jsonl": line, "component": "z"})
    assert jsonl.status_code == 422 and jsonl.json()["field"] == "dataset_jsonl"
    assert "line 1" in jsonl.json()["detail"]
    paired = {**PROMPTS, "clean_prompt": "\ud83d\ude00 Paris is the capital of"}  # one emoji
    assert _raw(client, "/tokenize", paired).status_code == 200


def test_deep_nesting_is_a_422_in_the_body_and_in_dataset_jsonl(client: TestClient) -> None:
    body = client.post(
        "/patch",
        content="[" * 100_000 + "]" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert body.status_code == 422
    assert body.json()["field"] == "body" and "nested too deeply" in body.json()["detail"]
    line = '{"clean": ' + "[" * 5_000 + "]" * 5_000 + "}"
    jsonl = client.post("/sweep", json={"dataset_jsonl": line, "component": "z"})
    assert jsonl.status_code == 422 and jsonl.json()["field"] == "dataset_jsonl"
    assert "line 1" in jsonl.json()["detail"]
    deep = client.post(
        "/patch", json={**PROMPTS, "layer": 0, "head": 0, "clean_prompt": _nest(600)}
    )
    assert deep.status_code == 422 and deep.json()["field"] == "clean_prompt"


def _nest(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("route", "body", "field"),
    [
        ("/circuit/edges", {"verify": True}, "verify"),
        ("/path", {"freeze_mlps": "yes"}, "freeze_mlps"),
        ("/attribute", {"compare": 1}, "compare"),
        ("/attribute", {"verify": 1.0}, "verify"),
        ("/sweep", {"seed": "3"}, "seed"),
        ("/circuit/edges", {"steps": True}, "steps"),
    ],
)
def test_loose_booleans_and_integers_are_refused(
    client: TestClient, route: str, body: dict[str, Any], field: str
) -> None:
    response = client.post(route, json={**PROMPTS, **body})
    assert response.status_code == 422
    assert response.json()["field"] == field


def test_a_position_or_head_the_component_ignores_is_refused(client: TestClient) -> None:
    on_head = client.post("/patch", json={**SPEC_REQUEST, "pos": 9999})
    assert on_head.status_code == 422 and on_head.json()["field"] == "pos"
    assert "ignored" in on_head.json()["detail"]
    on_pos = client.post(
        "/patch", json={**PROMPTS, "component": "resid_pre", "layer": 0, "pos": 1, "head": 2}
    )
    assert on_pos.status_code == 422 and on_pos.json()["field"] == "head"
    by_pos = client.post("/patch", json={**SPEC_REQUEST, "component": "z_by_pos", "pos": 1})
    assert by_pos.status_code == 200


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        ("/runs/1", {"GET", "PATCH", "DELETE"}),
        ("/sweep/jobs/abc", {"GET", "DELETE"}),
        ("/attribute/jobs/abc", {"GET", "DELETE"}),
        ("/sweep", {"POST"}),
    ],
)
def test_405_lists_every_method_the_path_takes(
    client: TestClient, path: str, methods: set[str]
) -> None:
    response = client.put(path, json={})
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == methods
    assert all(m in response.json()["detail"] for m in methods)
