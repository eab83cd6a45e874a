"""Direct logit attribution against TransformerLens's own decomposition
(`ActivationCache.stack_head_results` and `apply_ln_to_stack`, projected on the logit-difference
direction), and on a planted circuit whose answer one head writes."""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.planted import build_head_circuit
from actpatch.views import direct_logit_attribution

# TransformerLens's decomposition passes each head's output straight to the final norm; the
# families that norm the attention output after summing the heads (Gemma 2/3, OLMo 2) are
# checked by the sum below instead. Gemma's final norm also scales by 1 + weight.
PLAIN = ("gpt2", "gpt_neox", "gpt_neox_sequential", "llama", "mistral", "qwen2", "qwen3")
SOFTCAPPED = ("gemma2", "gemma3")


FINAL_NORMS = ("transformer.ln_f.weight", "gpt_neox.final_layer_norm.weight", "model.norm.weight")


def _final_norm_weight(hf_model) -> torch.Tensor:
    for name, param in hf_model.named_parameters():
        if name.replace("._original_component", "") in (
            "transformer.ln_f.weight",
            "gpt_neox.final_layer_norm.weight",
            "model.norm.weight",
        ):
            return param.detach().float()
    raise AssertionError("no final norm weight found")


@pytest.mark.parametrize("family", PLAIN)
def test_heads_equal_transformer_lens_decomposition(family_experiment, family):
    exp, cache, model = family_experiment(family)
    result = direct_logit_attribution(exp)
    stack = cache.stack_head_results(layer=-1, pos_slice=-1)  # (layer * head, batch, d_model)
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1).float()
    W_U = model.hf_model.get_output_embeddings().weight.detach().float().T  # (d_model, vocab)
    direction = W_U[:, exp.target_ids[0]] - W_U[:, exp.wrong_ids[0]]
    reference = scaled[:, 0] @ (direction * _final_norm_weight(model.hf_model))
    ours = result.clean.heads.flatten()
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("family", [*PLAIN, "olmo2"])
def test_the_parts_sum_to_the_models_own_logit_difference(family_experiment, family):
    exp, _, _ = family_experiment(family)
    result = direct_logit_attribution(exp)
    logits = exp.logits("corrupt")[0].float()
    actual = float(logits[exp.target_ids[0]] - logits[exp.wrong_ids[0]])
    for run in (result.clean, result.corrupt):
        assert run.total == pytest.approx(run.actual, abs=1e-3)
    assert result.corrupt.actual == pytest.approx(actual, abs=1e-5)


@pytest.mark.parametrize("family", SOFTCAPPED)
def test_a_soft_capped_model_says_what_the_parts_leave_unexplained(family_experiment, family):
    exp, _, _ = family_experiment(family)
    result = direct_logit_attribution(exp)
    assert "softcap" in [w.code for w in result.warnings]
    # before the cap the parts are exact: the cap is cap * tanh(logit / cap), column by column
    cap = exp.runner.spec.final_softcap
    logits = exp.logits("clean")[0].double()
    before = cap * torch.atanh(logits / cap)
    uncapped = float(before[exp.target_ids[0]] - before[exp.wrong_ids[0]])
    assert result.clean.total == pytest.approx(uncapped, abs=1e-3)
    assert abs(result.clean.actual - result.clean.total) > 1e-3  # the cap moved it


def test_the_planted_head_carries_the_logit_difference(tmp_path):
    truth = build_head_circuit(tmp_path / "head")
    model = actpatch.load_model(str(truth.folder))
    exp = actpatch.Experiment(model, **truth.prompts())
    result = direct_logit_attribution(exp)
    ((layer, head),) = truth.heads
    heads = result.clean.heads
    assert heads[layer, head] == pytest.approx(result.clean.actual, rel=0.05)
    others = heads.clone()
    others[layer, head] = 0
    assert others.abs().max() < 0.05 * abs(result.clean.actual)
    difference = result.to_dict()["difference"]["heads"]
    assert difference[layer][head] == pytest.approx(
        truth.clean_logit_diff - truth.corrupt_logit_diff, rel=0.05
    )


def test_bridge_path_equals_fast_path(family_experiment):
    exp, _, model = family_experiment("llama")
    bridge_exp = actpatch.Experiment(
        model,
        exp.clean_prompts,
        exp.corrupt_prompts,
        exp.target_strs,
        exp.wrong_strs,
        backend="bridge",
    )
    fast, bridge = direct_logit_attribution(exp), direct_logit_attribution(bridge_exp)
    assert bridge.backend == "bridge"
    torch.testing.assert_close(fast.corrupt.heads, bridge.corrupt.heads, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.clean.mlp, bridge.clean.mlp, atol=1e-4, rtol=1e-4)


def test_json_contract(family_experiment):
    exp, _, _ = family_experiment("gpt2")
    out = direct_logit_attribution(exp).to_dict()
    assert out["metric"] == "logit_diff"
    for run in ("clean", "corrupt"):
        for key in ("heads", "mlp", "embed", "total", "actual"):
            assert key in out[run]
        assert len(out[run]["heads"]) == exp.runner.n_layers
    for key in ("model", "backend", "warnings"):
        assert key in out
