"""POST /tokenize: tokens and ids, alignment, differing positions and live warnings."""

from __future__ import annotations

from fastapi.testclient import TestClient

from actpatch.models import LoadedModel


def test_tokens_ids_and_alignment(client: TestClient, tiny_model: LoadedModel) -> None:
    body = client.post(
        "/tokenize",
        json={
            "clean_prompt": "Paris is the capital of",
            "corrupt_prompt": "Berlin is the capital of",
            "target_token": " France",
        },
    ).json()
    assert body["model"] == "tiny"
    clean = body["clean_prompt"]
    assert clean["ids"] == tiny_model.to_tokens("Paris is the capital of")
    assert clean["tokens"] == ["<|endoftext|>", "Paris", " is", " the", " capital", " of"]
    assert body["corrupt_prompt"]["tokens"][1:3] == ["Ber", "lin"]
    assert clean["differing"] == [1]
    assert body["corrupt_prompt"]["differing"] == [1, 2]
    assert body["alignment"]["pairs"][0] == [0, 0]
    assert body["target_token"] == {"ids": [4881], "tokens": [" France"], "single_token": True}
    assert body["warnings"] == []


def test_same_length_prompts_differ_where_tokens_differ(client: TestClient) -> None:
    body = client.post(
        "/tokenize", json={"clean_prompt": "A cat sat", "corrupt_prompt": "A dog sat"}
    ).json()
    assert body["alignment"]["identity"] is True
    assert body["clean_prompt"]["differing"] == body["corrupt_prompt"]["differing"] == [2]


def test_multi_token_answer_warns_with_the_engines_message(client: TestClient) -> None:
    body = client.post("/tokenize", json={"target_token": "France ", "wrong_token": " Fra nce"})
    warnings = {w["field"]: w["message"] for w in body.json()["warnings"]}
    assert body.json()["target_token"]["single_token"] is False
    assert "single token" in warnings["target_token"]
    assert "'France '" in warnings["target_token"]
    assert "wrong_token" in warnings


def test_too_long_prompt_warns(client: TestClient) -> None:
    body = client.post("/tokenize", json={"corrupt_prompt": "word " * 80}).json()
    assert body["warnings"][0]["field"] == "corrupt_prompt"
    assert "shorten" in body["warnings"][0]["message"]


def test_token_strings_are_returned_as_data(client: TestClient) -> None:
    body = client.post("/tokenize", json={"clean_prompt": "<script>alert(1)</script>"}).json()
    assert "".join(body["clean_prompt"]["tokens"][1:]) == "<script>alert(1)</script>"


def test_unknown_model(client: TestClient) -> None:
    response = client.post("/tokenize", json={"clean_prompt": "hi", "model": "gpt2"})
    assert response.status_code == 422
    assert response.json()["field"] == "model"
