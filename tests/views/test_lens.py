"""The logit lens against TransformerLens's `accumulated_resid` through `apply_ln_to_stack` and
the unembedding; its last point is the model's own output."""

from __future__ import annotations

import pytest
import torch

from actpatch.views import logit_lens
from tests.views.test_dla import PLAIN


@pytest.mark.parametrize("family", PLAIN)
def test_lens_equals_transformer_lens(family_experiment, family):
    exp, cache, model = family_experiment(family)
    result = logit_lens(exp)
    assert result.metric == "logit_diff"
    stack = cache.accumulated_resid(layer=-1, incl_mid=False, pos_slice=-1, apply_ln=True)
    # on the bridge (no weight processing) apply_ln recomputes the whole final norm, its weight
    # and bias too, at each point's own scale: the standard logit lens
    normed = stack[:, 0].float()
    head = model.hf_model.get_output_embeddings()
    logits = head(normed.to(head.weight.dtype)).float()  # (points, vocab)
    t, w = exp.target_ids[0], exp.wrong_ids[0]
    reference = logits[:, t] - logits[:, w]
    assert result.labels[-1] == f"resid_post {exp.runner.n_layers - 1}"
    torch.testing.assert_close(torch.tensor(result.clean.metric), reference, atol=1e-4, rtol=1e-4)
    ranks = 1 + (logits > logits[:, t : t + 1]).sum(-1)
    assert result.clean.target_rank == ranks.tolist()


@pytest.mark.parametrize("family", ["gpt2", "gemma2", "olmo2"])
def test_last_point_is_the_models_own_output(family_experiment, family):
    exp, _, _ = family_experiment(family)
    result = logit_lens(exp, metric="prob", k=3, sublayers=True)
    probs = exp.logits("clean")[0].float().softmax(-1)
    assert result.clean.metric[-1] == pytest.approx(float(probs[exp.target_ids[0]]), abs=1e-5)
    top = probs.topk(3).indices
    assert result.clean.top[-1] == exp.model.to_str_tokens(top)
    if "resid_mid" in exp.runner.hook_names:
        assert "resid_mid 0" in result.labels


def test_json_contract(family_experiment):
    exp, _, _ = family_experiment("gpt2")
    out = logit_lens(exp).to_dict()
    for run in ("clean", "corrupt"):
        assert set(out[run]) >= {"metric", "target_rank", "top"}
        assert len(out[run]["metric"]) == exp.runner.n_layers + 1
    for key in ("tokens", "model", "backend", "warnings"):
        assert key in out
