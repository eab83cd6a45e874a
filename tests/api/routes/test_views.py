"""POST /attention, /dla and /lens: the contract's fields, numbers held to Hugging Face's own
forward pass (and TransformerLens's pattern), and bad input named by field."""

from __future__ import annotations

import pytest
import torch
from fastapi.testclient import TestClient

from actpatch.models import LoadedModel
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

IOI = {
    "clean_prompt": IOI_CLEAN,
    "corrupt_prompt": IOI_CORRUPT,
    "target_token": " Mary",
    "wrong_token": " John",
}


def _hf(tiny_model: LoadedModel, prompt: str):
    ids = torch.tensor([tiny_model.to_tokens(prompt)])
    with torch.no_grad():
        return tiny_model.hf_model(ids)


def test_attention_equals_transformer_lens_pattern(client: TestClient, tiny_model) -> None:
    response = client.post("/attention", json={**IOI, "layer": 1, "head": 2})
    assert response.status_code == 200, response.text
    body = response.json()
    for key in (
        "layer",
        "head",
        "tokens",
        "corrupt_tokens",
        "clean",
        "corrupt",
        "model",
        "backend",
        "warnings",
    ):
        assert key in body
    assert body["model"] == "tiny"
    for which, prompt in (("clean", IOI_CLEAN), ("corrupt", IOI_CORRUPT)):
        ids = torch.tensor([tiny_model.to_tokens(prompt)])
        with torch.inference_mode():
            _, cache = tiny_model.bridge().run_with_cache(ids)
        expected = cache["blocks.1.attn.hook_pattern"][0, 2]
        torch.testing.assert_close(torch.tensor(body[which]), expected, atol=1e-5, rtol=1e-5)


def test_dla_sums_to_hugging_face_logit_difference(client: TestClient, tiny_model) -> None:
    body = client.post("/dla", json=IOI).json()
    logits = _hf(tiny_model, IOI_CLEAN).logits[0, -1]
    mary, john = (
        tiny_model.to_tokens(" Mary", prepend_bos=False)[0],
        tiny_model.to_tokens(" John", prepend_bos=False)[0],
    )
    expected = float(logits[mary] - logits[john])
    assert body["metric"] == "logit_diff"
    assert body["clean"]["actual"] == pytest.approx(expected, abs=1e-4)
    assert body["clean"]["total"] == pytest.approx(expected, abs=1e-3)
    assert len(body["clean"]["heads"]) == tiny_model.n_layers


def test_lens_ends_at_the_models_own_output(client: TestClient, tiny_model) -> None:
    body = client.post("/lens", json={**IOI, "metric": "prob", "k": 3}).json()
    probs = _hf(tiny_model, IOI_CORRUPT).logits[0, -1].softmax(-1)
    mary = tiny_model.to_tokens(" Mary", prepend_bos=False)[0]
    assert body["corrupt"]["metric"][-1] == pytest.approx(float(probs[mary]), abs=1e-5)
    assert len(body["clean"]["top"][0]) == 3
    assert len(body["labels"]) == tiny_model.n_layers + 1


@pytest.mark.parametrize(
    ("route", "extra", "field"),
    [
        ("/attention", {"layer": 99, "head": 0}, "layer"),
        ("/attention", {"layer": 0, "head": 99}, "head"),
        ("/lens", {"metric": "nope"}, "metric"),
    ],
)
def test_bad_input_names_the_field(client: TestClient, route, extra, field) -> None:
    response = client.post(route, json={**IOI, **extra})
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize(
    ("route", "extra", "title"),
    [
        ("/attention", {"layer": 1, "head": 2}, "attention of L1H2"),
        ("/dla", {}, "direct logit_diff attribution"),
        ("/lens", {}, "logit lens of logit_diff"),
    ],
)
def test_each_view_is_kept_in_the_history(client: TestClient, route, extra, title) -> None:
    body = client.post(route, json={**IOI, **extra}).json()
    assert isinstance(body["run_id"], int)
    stored = client.get(f"/runs/{body['run_id']}").json()
    assert stored["kind"] == route.lstrip("/")
    assert stored["result"]["clean"] == body["clean"]
    listed = client.get("/runs").json()["runs"]
    assert any(r["id"] == body["run_id"] and title in r["label"] for r in listed)
