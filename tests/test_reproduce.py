"""The IOI reproduction report's logic, on models we have (GPT-2 small's weights are not here).

On the bundled demo model every number the report shows is checked against an independent
computation: Hugging Face's forward for the logit differences, TransformerLens's own patching
functions through its bridge for the sweeps; agreement follows from the stated tolerance; the
swap of adjacent prompts makes the corrupted logit difference exactly minus the clean one, and
the only differing position patched at layer 0 restores the clean run exactly (1.0 on any
model). A random 12-layer model exercises every row (path patching included), and the rank rule
is checked on hand-made rankings.
"""

from __future__ import annotations

import pytest
import torch
from transformer_lens import patching as tlp

import actpatch
from actpatch.patching.metrics import from_logits
from actpatch.reproduce import (
    CLEAN_LOGIT_DIFF,
    IOI_DEMO_PROMPTS,
    WANG,
    _rank_finding,
    ioi_prompts,
    reproduce_ioi,
)
from tests.conftest import make_random_gpt2


@pytest.fixture(scope="module")
def demo():
    return actpatch.load_model("demo")


@pytest.fixture(scope="module")
def report(demo):
    """GPT-2 small's published values shown on the demo model: the comparison's logic."""
    return reproduce_ioi(demo, references=True)


@pytest.fixture(scope="module")
def own(demo):
    """The report as a user gets it on a model that is not GPT-2 small: no reference values."""
    return reproduce_ioi(demo)


def _normalized_metric(demo, report):
    """The TL demo's experiment on `demo`, and the logit difference normalized by the report's
    own clean and corrupted values, as TransformerLens's patching functions take it."""
    exp = actpatch.Experiment(demo, **ioi_prompts())
    clean_value = _row(report, "clean logit difference").value
    corrupt_value = _row(report, "corrupted logit difference").value

    def metric(logits):
        raw = from_logits("logit_diff", logits[:, -1], exp.target_ids, exp.wrong_ids).mean()
        return (raw - corrupt_value) / (clean_value - corrupt_value)

    return exp, metric


def _row(report, name: str):
    (row,) = [f for f in report.findings if f.name.startswith(name)]
    return row


def test_prompts_are_the_demos_with_adjacent_pairs_swapped():
    prompts = ioi_prompts()
    assert prompts["clean"] == list(IOI_DEMO_PROMPTS)
    assert prompts["corrupt"][0] == IOI_DEMO_PROMPTS[1]
    assert prompts["corrupt"][1] == IOI_DEMO_PROMPTS[0]
    assert prompts["corrupt"][7] == IOI_DEMO_PROMPTS[6]
    assert prompts["target"][:2] == [" Mary", " John"] and prompts["wrong"][:2] == [
        " John",
        " Mary",
    ]


def test_logit_differences_match_hugging_face(demo, report):
    prompts = ioi_prompts()
    ids = torch.tensor([demo.to_tokens(p) for p in prompts["clean"]])
    target = torch.tensor([demo.to_tokens(t, prepend_bos=False)[0] for t in prompts["target"]])
    wrong = torch.tensor([demo.to_tokens(w, prepend_bos=False)[0] for w in prompts["wrong"]])
    with torch.no_grad():
        logits = demo.hf_model(ids).logits[:, -1]
    clean = float(from_logits("logit_diff", logits, target, wrong).mean())
    row = _row(report, "clean logit difference")
    assert row.value == pytest.approx(clean, abs=1e-4)
    # the demo model is not GPT-2 small: its clean logit difference is far from 3.55
    assert row.agree is (abs(clean - CLEAN_LOGIT_DIFF) <= 0.01)
    assert row.agree is False
    # each corrupted prompt is another pair's clean prompt with the answers reversed
    assert _row(report, "corrupted logit difference").value == pytest.approx(-clean, abs=1e-4)


def test_sweep_rows_match_transformer_lens_patching(demo, report):
    bridge = demo.bridge()
    exp, metric = _normalized_metric(demo, report)

    s2 = 10  # " John"/" Mary" after the comma: the only position where the prompts differ
    assert exp.first_diff == s2
    with torch.no_grad():
        _, cache = bridge.run_with_cache(exp.clean_tokens)

        def patched(name: str) -> float:
            """TransformerLens's patching setter at one (layer, position), as its
            get_act_patch_* functions run it for each cell."""

            def hook(act, hook):
                return tlp.layer_pos_patch_setter(act.clone(), (0, s2), cache[name])

            return float(
                metric(bridge.run_with_hooks(exp.corrupt_tokens, fwd_hooks=[(name, hook)]))
            )

        for layer in range(demo.n_layers):
            row = _row(report, f"resid_pre L{layer} at S2")
            assert row.value == pytest.approx(patched(f"blocks.{layer}.hook_resid_pre"), abs=1e-4)
            assert row.agree is (abs(row.value - float(row.reference)) <= 0.02)
        mlp0 = patched("blocks.0.hook_mlp_out")
    # the only differing position, patched before the first block: the clean run exactly
    assert _row(report, "resid_pre L0 at S2").value == pytest.approx(1.0, abs=1e-5)
    assert _row(report, "resid_pre L0 at S2").agree is True
    assert _row(report, "MLP0 output at S2").value == pytest.approx(mlp0, abs=1e-4)


def test_rows_the_model_cannot_have_are_not_applicable(report):
    assert _row(report, "resid_pre L7 at S2").agree is None
    assert _row(report, "head output L10H7").ours == "n/a"
    assert _row(report, "name movers").agree is None
    assert report.is_reference_model is False and "not GPT-2 small" in report.notes[0]
    agree, disagree, na = report.counts()
    assert agree + disagree + na == len(report.findings) and agree >= 1 and na >= 1
    text = report.text()
    assert "findings are about GPT-2 small" in text and "Activation_Patching_in_TL_Demo" in text


def test_the_rank_rule():
    heads = ((9, 9), (9, 6))
    ranked = ["a9.h6", "a1.h0", "a9.h9", "a2.h2"]
    row = _rank_finding("name movers", heads, ranked, 3, "-> logits")
    assert row.agree is True and row.ours == "#3, #1" and row.source == WANG
    assert _rank_finding("name movers", heads, ranked, 2, "-> logits").agree is False
    assert _rank_finding("name movers", heads, None, 2, "-> logits").agree is None


def test_every_row_runs_on_a_model_with_gpt2_smalls_shape(tmp_path):
    """12 layers of 12 heads (narrow, random): no row is n/a, path patching included."""
    folder = make_random_gpt2(tmp_path / "wide", n_layer=12, n_head=12, n_embd=48)
    report = reproduce_ioi(actpatch.load_model(str(folder)), references=True)
    assert all(f.agree is not None for f in report.findings), [
        f.name for f in report.findings if f.agree is None
    ]
    ranks = [f for f in report.findings if f.source == WANG]
    assert len(ranks) == 5 and all(f.ours.startswith("#") for f in ranks)


def test_gpt2_small_cannot_be_had_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(actpatch.ModelUnavailableError, match="GPT-2 small") as err:
        reproduce_ioi()
    assert err.value.field == "model" and "demo" in err.value.message
    # what it says another model's report holds is what that report holds (no reference values)
    assert "without GPT-2 small's published values" in err.value.message


# -- on a model without published values --------------------------------------------------------


def test_another_model_gets_its_own_findings_and_no_reference_numbers(own):
    assert not own.has_references and own.reference_model == own.model
    assert all(f.reference == "-" and f.agree is None for f in own.findings)
    assert "not GPT-2 small" in own.notes[0]
    text = own.text()
    assert "no published values" in text and "3.5519" not in text and "TL_Demo" not in text
    names = [f.name for f in own.findings]
    assert "handoff layer (resid_pre: S2 -> end)" in names
    assert any(n.startswith("direct effect on the logits") for n in names)


def test_the_handoff_layer_and_top_head_match_transformer_lens(demo, own):
    """The handoff layer: the first layer where TransformerLens's own resid_pre patching
    restores more at the final position than at S2; the largest head effect: the argmax of
    its all-positions head patching."""
    bridge = demo.bridge()
    exp, metric = _normalized_metric(demo, own)

    with torch.no_grad():
        _, cache = bridge.run_with_cache(exp.clean_tokens)
        resid = tlp.get_act_patch_resid_pre(bridge, exp.corrupt_tokens, cache, metric)
        heads = tlp.get_act_patch_attn_head_out_all_pos(bridge, exp.corrupt_tokens, cache, metric)
    s2, end = exp.first_diff, exp.clean_tokens.shape[1] - 1
    later = [layer for layer in range(demo.n_layers) if resid[layer, end] > resid[layer, s2]]
    # None: patching resid_pre at S2 restores more at every layer (the demo moves the answer
    # in its last layer, after the last resid_pre)
    assert _row(own, "handoff layer").value == (later[0] if later else None)
    top = int(heads.flatten().argmax())
    best = f"{top // demo.n_heads}.{top % demo.n_heads} "
    assert _row(own, "largest head effects").ours.startswith(best)


def test_a_model_whose_tokenizer_splits_the_demos_names_runs_its_own_pairs(monkeypatch, demo):
    """If the TL demo's names are not single tokens for the served model, the report draws IOI
    pairs for its tokenizer instead, and says so."""
    from actpatch import reproduce

    names = {a for pair in reproduce.IOI_DEMO_ANSWERS for a in pair}
    real = demo.to_tokens

    def split_sid(text, prepend_bos=True):
        ids = real(text, prepend_bos=prepend_bos)
        return ids + ids if text == " Sid" else ids

    monkeypatch.setattr(demo, "to_tokens", split_sid)
    prompts, note = reproduce._prompts_for(demo)
    assert note is not None and "drawn for it" in note
    assert len(prompts["clean"]) == 8 and not set(prompts["target"]) <= {" Sid"}
    assert " Sid" in names
