"""Planted-circuit models: the engine must find the circuits that were built by hand.

Every expected number here follows from a model's description (`PlantedModel.moves`, which
heads and MLPs are decoys, `ANSWER_LOGIT`), never from the engine's output. The first tests
check the constructions themselves with Hugging Face's own forward pass and hooks, without
actpatch's engine; the rest check that the engine's sweeps and patches find what was built.
The constructions are exact up to float rounding, so the tolerance is tight.
"""

from __future__ import annotations

import math

import pytest
import torch

import actpatch
from actpatch.planted import (
    ANSWER_LOGIT,
    GPT2_VOCAB_SIZE,
    PlantedModel,
    build_head_circuit,
    build_position_circuit,
    build_redundant_circuit,
    build_saturated_circuit,
    build_two_hop_circuit,
)
from tests.planted.support import TOL, Loaded, assert_close, expected_grid, hf_run, logit_diff

CHAINS = ["head_circuit", "position_circuit"]
ALL = [*CHAINS, "redundant_circuit"]


@pytest.fixture(scope="module")
def head_circuit(tmp_path_factory) -> Loaded:
    return Loaded(build_head_circuit(tmp_path_factory.mktemp("head")))


@pytest.fixture(scope="module")
def position_circuit(tmp_path_factory) -> Loaded:
    return Loaded(build_position_circuit(tmp_path_factory.mktemp("position")))


@pytest.fixture(scope="module")
def redundant_circuit(tmp_path_factory) -> Loaded:
    return Loaded(build_redundant_circuit(tmp_path_factory.mktemp("redundant")))


@pytest.fixture(scope="module")
def two_hop_circuit(tmp_path_factory) -> Loaded:
    return Loaded(build_two_hop_circuit(tmp_path_factory.mktemp("two-hop")))


@pytest.fixture
def loaded(request) -> Loaded:
    return request.getfixturevalue(request.param)


# -- Hugging Face's forward: the construction checked without actpatch -----------------------


@pytest.mark.parametrize("loaded", ALL, indirect=True)
def test_construction_gives_the_designed_logits(loaded: Loaded) -> None:
    """Hugging Face's forward pass: the clean prompt predicts the target, with the designed
    logit difference; the corrupted prompt gives the designed (opposite or zero) one."""
    p = loaded.truth
    for i, pair in enumerate(p.pairs):
        clean, *_ = hf_run(loaded, pair.clean)
        corrupt, *_ = hf_run(loaded, pair.corrupt)
        assert int(clean.argmax()) == loaded.answer(pair.target)
        assert logit_diff(loaded, clean, i) == pytest.approx(p.clean_logit_diff, abs=TOL)
        assert logit_diff(loaded, corrupt, i) == pytest.approx(p.corrupt_logit_diff, abs=TOL)
        if p.corrupt_logit_diff < 0:
            assert int(corrupt.argmax()) == loaded.answer(pair.wrong)
        else:  # the redundant circuit's corrupted subject is no name: the target is unlikely
            assert float(corrupt.softmax(-1)[loaded.answer(pair.target)]) < 1e-3


@pytest.mark.parametrize("loaded", ALL, indirect=True)
def test_planted_heads_attend_from_destination_to_source(loaded: Loaded) -> None:
    """Each move's head puts all its attention at its destination on its source, in both runs."""
    p = loaded.truth
    for text in (p.pairs[0].clean, p.pairs[0].corrupt):
        *_, attentions = hf_run(loaded, text)
        for move in p.moves:
            weight = attentions[move.layer][0, move.head, move.dest_pos, move.source_pos]
            assert float(weight) > 1 - 1e-6


@pytest.mark.parametrize("loaded", ALL, indirect=True)
def test_decoys_see_the_name(loaded: Loaded) -> None:
    """The decoys' activations do differ between the runs, so their zero effect on the answer
    is a property of where they write, not of identical activations."""
    p = loaded.truth
    d_head = loaded.hf.config.n_embd // loaded.hf.config.n_head
    _, z_clean, mlp_clean, _ = hf_run(loaded, p.pairs[0].clean)
    _, z_corrupt, mlp_corrupt, _ = hf_run(loaded, p.pairs[0].corrupt)
    for layer, head in p.decoy_heads:
        cols = slice(head * d_head, (head + 1) * d_head)
        assert (z_clean[layer][..., cols] - z_corrupt[layer][..., cols]).abs().max() > 0.5
    for layer in p.decoy_mlps:
        assert (mlp_clean[layer] - mlp_corrupt[layer]).abs().max() > 0.5


@pytest.mark.parametrize("loaded", ALL, indirect=True)
def test_construction_patched_in_hugging_face(loaded: Loaded) -> None:
    """Patching one planted head's clean output into the corrupted run, with Hugging Face
    hooks: a chain's head restores the whole logit difference, a parallel path half of it."""
    p = loaded.truth
    pair = p.pairs[0]
    _, z_clean, _, _ = hf_run(loaded, pair.clean)
    share = 1 / len(p.moves) if p.parallel else 1.0
    for layer, head in p.heads:
        logits, *_ = hf_run(loaded, pair.corrupt, patch=(layer, head, z_clean[layer]))
        expected = p.corrupt_logit_diff + share * (p.clean_logit_diff - p.corrupt_logit_diff)
        assert logit_diff(loaded, logits) == pytest.approx(expected, abs=TOL)


# -- what the engine must find ------------------------------------------------------------------


def name_position(p: PlantedModel, layer: int, after_block: bool) -> int:
    """In a chain, the position whose residual stream holds the name before (or after) block
    `layer`: the destination of the last move at an earlier layer (or this one), else the
    source."""
    pos = p.source_pos
    for move in p.moves:
        if move.layer < layer or (after_block and move.layer == layer):
            pos = move.dest_pos
    return pos


@pytest.mark.parametrize("metric", ["logit_diff", "prob"])
@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_head_sweep_finds_the_planted_heads(loaded: Loaded, metric: str) -> None:
    """Denoising: each planted head alone restores the answer (sufficient), every other head
    (decoys included) does nothing. Noising: each planted head alone destroys it (necessary)."""
    p, exp = loaded.truth, loaded.experiment()
    denoising = actpatch.sweep(exp, "z", metric=metric, direction="denoising")
    noising = actpatch.sweep(exp, "z", metric=metric, direction="noising")
    expected = expected_grid((p.n_layers, p.n_heads), lambda cell: float(cell in p.heads))
    assert denoising.axes == ("layer", "head")
    assert_close(denoising.normalized, expected)
    assert_close(noising.normalized, 1 - expected)


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_head_sweep_raw_values_are_the_designed_logits(loaded: Loaded) -> None:
    p = loaded.truth
    result = actpatch.sweep(loaded.experiment(), "z")
    assert result.clean == pytest.approx(p.clean_logit_diff, abs=TOL)
    assert result.corrupt == pytest.approx(p.corrupt_logit_diff, abs=TOL)
    for layer, head in p.heads:
        assert float(result.raw[layer, head]) == pytest.approx(p.clean_logit_diff, abs=TOL)


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_head_sweep_over_two_prompt_pairs(loaded: Loaded) -> None:
    """Two pairs with different names (Mary/John, Alice/Bob) batch into the same result."""
    p = loaded.truth
    result = actpatch.sweep(loaded.experiment(n_pairs=2), "z")
    assert result.n_pairs == 2
    expected = expected_grid((p.n_layers, p.n_heads), lambda cell: float(cell in p.heads))
    assert_close(result.normalized, expected)


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_head_by_position_sweep(loaded: Loaded) -> None:
    """Each planted head matters only at the position it writes to."""
    p = loaded.truth
    result = actpatch.sweep(loaded.experiment(), "z_by_pos")
    n_pos = len(p.str_tokens)
    writes = {(m.layer, m.dest_pos, m.head) for m in p.moves}
    expected = expected_grid((p.n_layers, n_pos, p.n_heads), lambda cell: float(cell in writes))
    assert result.axes == ("layer", "pos", "head")
    assert_close(result.normalized, expected)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("component", ["resid_pre", "resid_post"])
@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_residual_sweep_follows_the_name(loaded: Loaded, component: str, direction: str) -> None:
    """The residual stream matters exactly where the name is at each layer: at the source up
    to the first move's layer, then at each move's destination, and nowhere else."""
    p = loaded.truth
    result = actpatch.sweep(loaded.experiment(), component, direction=direction)
    after_block = component == "resid_post"
    carries = expected_grid(
        (p.n_layers, len(p.str_tokens)),
        lambda cell: float(cell[1] == name_position(p, cell[0], after_block)),
    )
    assert result.axes == ("layer", "pos")
    assert_close(result.normalized, carries if direction == "denoising" else 1 - carries)


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_attention_and_mlp_output_sweeps(loaded: Loaded) -> None:
    """attn_out matters where a planted head writes; no MLP output matters, decoys included."""
    p, exp = loaded.truth, loaded.experiment()
    n_pos = len(p.str_tokens)
    writes = {(m.layer, m.dest_pos) for m in p.moves}
    attn = actpatch.sweep(exp, "attn_out")
    mlp = actpatch.sweep(exp, "mlp_out")
    assert_close(attn.normalized, expected_grid((p.n_layers, n_pos), lambda c: float(c in writes)))
    assert_close(mlp.normalized, torch.zeros(p.n_layers, n_pos))


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_value_query_key_sweeps(loaded: Loaded) -> None:
    """The planted heads' attention depends only on positions, their values on the name: the
    values carry the whole effect, queries and keys none (they are equal in both runs)."""
    p, exp = loaded.truth, loaded.experiment()
    planted_heads = expected_grid((p.n_layers, p.n_heads), lambda cell: float(cell in p.heads))
    assert_close(actpatch.sweep(exp, "v").normalized, planted_heads)
    assert_close(actpatch.sweep(exp, "q").normalized, torch.zeros(p.n_layers, p.n_heads))
    assert_close(actpatch.sweep(exp, "k").normalized, torch.zeros(p.n_layers, p.n_heads))


@pytest.mark.parametrize("loaded", CHAINS, indirect=True)
def test_single_patch_recovers_the_answer(loaded: Loaded) -> None:
    p, exp = loaded.truth, loaded.experiment()
    for layer, head in p.heads:
        result = actpatch.patch(exp, layer, head)
        assert result.recovery_pct == pytest.approx(100.0, abs=0.1)
        assert result.patched_prob == pytest.approx(result.clean_prob, abs=1e-4)
        assert result.clean_prob > 0.99 and result.corrupt_prob < 1e-3
        assert result.patched_rank == 1
        assert result.top_patched[0].token == p.pairs[0].target
        broken = actpatch.patch(exp, layer, head, direction="noising")
        assert broken.recovery_pct == pytest.approx(0.0, abs=0.1)
        assert broken.top_patched[0].token == p.pairs[0].wrong
    for layer, head in p.decoy_heads:
        assert actpatch.patch(exp, layer, head).recovery_pct == pytest.approx(0.0, abs=0.1)


# -- parallel paths: sufficiency and necessity part ways ----------------------------------------


def test_redundant_heads_split_the_logit_difference(redundant_circuit: Loaded) -> None:
    """Two parallel copies, each worth half of the logit difference: patching one moves the
    metric halfway, in both directions; other heads, the decoy included, do nothing."""
    p, exp = redundant_circuit.truth, redundant_circuit.experiment()
    share = expected_grid((p.n_layers, p.n_heads), lambda cell: (cell in p.heads) / len(p.moves))
    denoising = actpatch.sweep(exp, "z", metric="logit_diff", direction="denoising")
    noising = actpatch.sweep(exp, "z", metric="logit_diff", direction="noising")
    assert_close(denoising.normalized, share)
    assert_close(noising.normalized, 1 - share)


def test_redundant_heads_are_each_sufficient_and_neither_necessary(
    redundant_circuit: Loaded,
) -> None:
    """By probability one copy is enough (logit 25 against 50256 zeros): denoising either head
    restores the clean probability, and noising either leaves it intact. Noising is not
    1 - denoising here, so an engine that computed one from the other would fail."""
    p, exp = redundant_circuit.truth, redundant_circuit.experiment()
    denoising = actpatch.sweep(exp, "z", metric="prob", direction="denoising")
    noising = actpatch.sweep(exp, "z", metric="prob", direction="noising")
    planted_heads = expected_grid((p.n_layers, p.n_heads), lambda cell: float(cell in p.heads))
    assert_close(denoising.normalized, planted_heads)
    assert_close(noising.normalized, torch.ones(p.n_layers, p.n_heads))
    # with one copy the target's logit is ANSWER_LOGIT and every other logit 0
    one_copy = math.exp(ANSWER_LOGIT) / (math.exp(ANSWER_LOGIT) + GPT2_VOCAB_SIZE - 1)
    for layer, head in p.heads:
        assert float(denoising.raw[layer, head]) == pytest.approx(one_copy, rel=1e-5)
        assert float(noising.raw[layer, head]) == pytest.approx(one_copy, rel=1e-5)
    assert denoising.corrupt == pytest.approx(1 / GPT2_VOCAB_SIZE, rel=1e-5)
    result = actpatch.patch(exp, *p.heads[0])
    assert result.recovery_pct == pytest.approx(100.0, abs=0.1)
    assert result.metric_normalized == pytest.approx(0.5, abs=TOL)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
@pytest.mark.parametrize("metric", ["logit_diff", "prob"])
def test_redundant_residual_sweep(redundant_circuit: Loaded, metric: str, direction: str) -> None:
    """Before block `layer`, the source's residual feeds the moves at that layer or later and
    the final position's holds the copies of the moves before it. A patch there swaps those
    copies: by logit difference each is worth 1/k; by probability any one clean copy is all."""
    p, exp = redundant_circuit.truth, redundant_circuit.experiment()
    k = len(p.moves)

    def copies(layer: int, pos: int) -> int:
        if pos == p.source_pos:
            return sum(move.layer >= layer for move in p.moves)
        if pos == p.final_pos:
            return sum(move.layer < layer for move in p.moves)
        return 0

    def value(cell: tuple[int, ...]) -> float:
        swapped = copies(*cell)
        clean_copies = swapped if direction == "denoising" else k - swapped
        if metric == "logit_diff":
            return clean_copies / k
        return float(clean_copies > 0)

    result = actpatch.sweep(exp, "resid_pre", metric=metric, direction=direction)
    assert_close(result.normalized, expected_grid((p.n_layers, len(p.str_tokens)), value))


@pytest.fixture(scope="module")
def saturated_circuit(tmp_path_factory) -> Loaded:
    return Loaded(build_saturated_circuit(tmp_path_factory.mktemp("saturated")))


def test_saturated_head_attends_one_hot_where_the_final_token_says(
    saturated_circuit: Loaded,
) -> None:
    """Hugging Face's forward pass: " greeted" sends the planted head's final query to the
    subject, " thanked" to BOS, each with all of its attention (saturated: the softmax's
    gradient there is exactly 0), and the logits are the designed ones."""
    fx = saturated_circuit
    p = fx.truth
    (move,) = p.moves
    pair = p.pairs[0]
    clean, _, _, clean_attn = hf_run(fx, pair.clean)
    corrupt, _, _, corrupt_attn = hf_run(fx, pair.corrupt)
    assert float(clean_attn[move.layer][0, move.head, p.final_pos, p.source_pos]) == 1.0
    assert float(corrupt_attn[move.layer][0, move.head, p.final_pos, 0]) == 1.0
    assert logit_diff(fx, clean) == pytest.approx(p.clean_logit_diff, abs=TOL)
    assert logit_diff(fx, corrupt) == pytest.approx(p.corrupt_logit_diff, abs=TOL)


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_saturated_head_query_and_output_sweeps(saturated_circuit: Loaded, direction: str) -> None:
    """Patching the planted head's query moves the whole gap, as does patching its output; no
    other head and no key changes anything (keys read positions only)."""
    p, exp = saturated_circuit.truth, saturated_circuit.experiment()
    head = p.heads[0]
    hit = 1.0 if direction == "denoising" else 0.0
    for component in ("q", "z"):
        result = actpatch.sweep(exp, component, direction=direction)
        assert_close(
            result.normalized,
            expected_grid((p.n_layers, p.n_heads), lambda c: hit if c == head else 1.0 - hit),
        )
    keys = actpatch.sweep(exp, "k", direction=direction)
    assert_close(keys.normalized, expected_grid((p.n_layers, p.n_heads), lambda c: 1.0 - hit))


# -- the two-hop circuit: head A composes into head B's value ----------------------------------


def test_two_hop_construction_in_hugging_face(two_hop_circuit: Loaded) -> None:
    """Hugging Face's forward: four copies of the name reach the final position (logit
    difference 4 * ANSWER_LOGIT), every planted head attends one-hot from destination to source,
    and patching A's clean output into the corrupted run restores it all, an amplifier's half."""
    fx, p = two_hop_circuit, two_hop_circuit.truth
    pair = p.pairs[0]
    clean, z_clean, _, attentions = hf_run(fx, pair.clean)
    corrupt, *_ = hf_run(fx, pair.corrupt)
    assert logit_diff(fx, clean) == pytest.approx(4 * ANSWER_LOGIT, abs=TOL)
    assert logit_diff(fx, corrupt) == pytest.approx(-4 * ANSWER_LOGIT, abs=TOL)
    for move in p.moves:
        assert (
            float(attentions[move.layer][0, move.head, move.dest_pos, move.source_pos]) > 1 - 1e-6
        )
    for (layer, head), share in zip(p.heads, (0.5, 1.0, 1.0, 0.5), strict=True):
        logits, *_ = hf_run(fx, pair.corrupt, patch=(layer, head, z_clean[layer]))
        expected = -4 * ANSWER_LOGIT + share * 8 * ANSWER_LOGIT
        assert logit_diff(fx, logits) == pytest.approx(expected, abs=TOL)
    assert p.key_edge == "a1.h1->a2.h2<v>"


def test_two_hop_path_patching_finds_the_sender(two_hop_circuit: Loaded) -> None:
    """Path patching every head into B's value finds A alone (its whole effect goes through B's
    value); into B's query or key, nothing (B attends by position); into the logits, the heads
    that write the final position's copies directly, half each."""
    from actpatch.patching.paths import path_patch

    p, exp = two_hop_circuit.truth, two_hop_circuit.experiment()
    (a_layer, a_head), (b_layer, b_head) = p.heads[1], p.heads[2]
    into_value = path_patch(exp, "all", f"{b_layer}.{b_head}.v")
    assert_close(
        into_value.normalized,
        expected_grid((p.n_layers, p.n_heads), lambda c: float(c == (a_layer, a_head))),
    )
    for qk in ("q", "k"):
        into = path_patch(exp, "all", f"{b_layer}.{b_head}.{qk}")
        assert_close(into.normalized, torch.zeros(p.n_layers, p.n_heads))
    to_logits = path_patch(exp, "all", "logits")
    direct = {p.heads[2]: 0.5, p.heads[3]: 0.5}
    assert_close(
        to_logits.normalized,
        expected_grid((p.n_layers, p.n_heads), lambda c: direct.get(c, 0.0)),  # type: ignore[arg-type]
    )
    top, _ = into_value.top(1)[0]
    assert f"{top}->a{b_layer}.h{b_head}<v>" == p.key_edge
