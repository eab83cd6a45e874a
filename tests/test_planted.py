"""Planted-circuit models: the engine must find the circuits that were built by hand.

Every expected number here follows from a model's description (`PlantedModel.moves`, which
heads and MLPs are decoys, `ANSWER_LOGIT`), never from the engine's output. The first tests
check the constructions themselves with Hugging Face's own forward pass and hooks, without
actpatch's engine; the rest check that the engine's sweeps and patches find what was built.
The constructions are exact up to float rounding, so the tolerance is tight.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from transformers import AutoModelForCausalLM, LlamaForCausalLM

import actpatch
from actpatch.planted import (
    ANSWER_LOGIT,
    BOS_TOKEN_ID,
    GPT2_VOCAB_SIZE,
    Move,
    PlantedModel,
    build_head_circuit,
    build_position_circuit,
    build_redundant_circuit,
    build_saturated_circuit,
    build_two_hop_circuit,
    build_two_hop_gqa_circuit,
)

TOL = 1e-3
CHAINS = ["head_circuit", "position_circuit"]
ALL = [*CHAINS, "redundant_circuit"]


class Loaded:
    """A planted model's ground truth, actpatch's view of the model, and Hugging Face's,
    loaded independently."""

    def __init__(self, planted: PlantedModel) -> None:
        self.truth = planted
        self.model = actpatch.load_model(str(planted.folder))
        self.hf = AutoModelForCausalLM.from_pretrained(
            str(planted.folder), attn_implementation="eager"
        )
        self.hf.eval()
        self.tokenizer = self.model.tokenizer  # loaded from the folder by transformers
        self._experiments: dict[int, actpatch.Experiment] = {}

    def experiment(self, n_pairs: int = 1) -> actpatch.Experiment:
        if n_pairs not in self._experiments:
            self._experiments[n_pairs] = actpatch.Experiment(
                self.model, **self.truth.prompts(n_pairs)
            )
        return self._experiments[n_pairs]

    def ids(self, text: str) -> torch.Tensor:
        return torch.tensor(
            [[BOS_TOKEN_ID, *self.tokenizer(text, add_special_tokens=False)["input_ids"]]]
        )

    def answer(self, text: str) -> int:
        (token,) = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return int(token)


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


# -- Hugging Face hooks: the construction checked without actpatch ------------------------------


def blocks(hf: Any) -> list[tuple[Any, Any]]:
    """Each layer's attention output projection (its input is the heads' z) and its MLP, on
    GPT-2 or on a Llama."""
    if isinstance(hf, LlamaForCausalLM):
        return [(layer.self_attn.o_proj, layer.mlp) for layer in hf.model.layers]
    return [(block.attn.c_proj, block.mlp) for block in hf.transformer.h]


def hf_run(
    fx: Loaded, text: str, *, patch: tuple[int, int, torch.Tensor] | None = None
) -> tuple[torch.Tensor, dict[int, torch.Tensor], dict[int, torch.Tensor], tuple]:
    """Final-position logits, each layer's head outputs z (the input to its output projection),
    each layer's MLP output and the attention patterns. `patch` = (layer, head, z) replaces one
    head's z at every position before its output projection."""
    z: dict[int, torch.Tensor] = {}
    mlp: dict[int, torch.Tensor] = {}
    d_head = fx.hf.config.hidden_size // fx.hf.config.num_attention_heads
    handles = []
    for layer, (out_proj, block_mlp) in enumerate(blocks(fx.hf)):

        def keep_z(module, args, layer=layer):
            (x,) = args
            if patch is not None and patch[0] == layer:
                x = x.clone()
                cols = slice(patch[1] * d_head, (patch[1] + 1) * d_head)
                x[..., cols] = patch[2][..., cols]
            z[layer] = x
            return (x,)

        def keep_mlp(module, args, out, layer=layer):
            mlp[layer] = out

        handles.append(out_proj.register_forward_pre_hook(keep_z))
        handles.append(block_mlp.register_forward_hook(keep_mlp))
    try:
        with torch.no_grad():
            out = fx.hf(fx.ids(text), output_attentions=True)
    finally:
        for handle in handles:
            handle.remove()
    return out.logits[0, -1], z, mlp, out.attentions


def logit_diff(fx: Loaded, logits: torch.Tensor, pair_index: int = 0) -> float:
    pair = fx.truth.pairs[pair_index]
    return float(logits[fx.answer(pair.target)] - logits[fx.answer(pair.wrong)])


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


def expected_grid(
    shape: tuple[int, ...], cell_value: Callable[[tuple[int, ...]], float]
) -> torch.Tensor:
    grid = torch.zeros(shape)
    for index in torch.cartesian_prod(*[torch.arange(n) for n in shape]).reshape(-1, len(shape)):
        cell = tuple(int(i) for i in index)
        grid[cell] = cell_value(cell)
    return grid


def name_position(p: PlantedModel, layer: int, after_block: bool) -> int:
    """In a chain, the position whose residual stream holds the name before (or after) block
    `layer`: the destination of the last move at an earlier layer (or this one), else the
    source."""
    pos = p.source_pos
    for move in p.moves:
        if move.layer < layer or (after_block and move.layer == layer):
            pos = move.dest_pos
    return pos


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, atol=TOL, rtol=0)


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


# -- the two-hop circuit on grouped-query attention: B shares its values with a decoy ----------


@pytest.fixture(scope="module")
def two_hop_gqa(tmp_path_factory) -> Loaded:
    return Loaded(build_two_hop_gqa_circuit(tmp_path_factory.mktemp("two-hop-gqa")))


def group_size(fx: Loaded) -> int:
    """Query heads per key/value head, from the model's config."""
    return fx.hf.config.num_attention_heads // fx.hf.config.num_key_value_heads


def two_hop_path(fx: Loaded, kv: str) -> list[str]:
    """The circuit's value edges in the `kv` convention, from the moves: the input and the
    first amplifier into A, A into B (the key edge), B into the last amplifier, both into the
    logits."""
    amplify, a, b, amplify_end = fx.truth.moves

    def writer(m: Move) -> str:
        return f"a{m.layer}.h{m.head}"

    def value(m: Move) -> str:
        if kv == "grouped":
            return f"a{m.layer}.kv{m.head // group_size(fx)}<v>"
        return f"{writer(m)}<v>"

    return [
        f"input->{value(amplify)}",
        f"input->{value(a)}",
        f"{writer(amplify)}->{value(a)}",
        f"{writer(a)}->{value(b)}",
        f"{writer(b)}->{value(amplify_end)}",
        f"{writer(b)}->logits",
        f"{writer(amplify_end)}->logits",
    ]


def test_gqa_two_hop_is_a_grouped_query_llama(two_hop_gqa: Loaded) -> None:
    """A Llama whose 4 query heads share 2 key/value heads, in Hugging Face's config and in
    actpatch's runner; B = (2, 2) and its decoy partner (2, 3) share key/value head 1."""
    fx, p = two_hop_gqa, two_hop_gqa.truth
    config = fx.hf.config
    assert isinstance(fx.hf, LlamaForCausalLM)
    assert (config.num_attention_heads, config.num_key_value_heads) == (4, 2)
    runner = fx.experiment().runner
    assert runner.n_kv_heads == 2 < fx.model.n_heads == 4
    assert p.heads == ((0, 0), (1, 1), (2, 2), (3, 3))
    assert p.decoy_heads == ((2, 3),)
    assert p.key_edge == "a1.h1->a2.h2<v>" == two_hop_path(fx, "ungrouped")[3]
    assert p.key_edge_grouped == "a1.h1->a2.kv1<v>" == two_hop_path(fx, "grouped")[3]


def test_gqa_two_hop_construction_in_hugging_face(two_hop_gqa: Loaded) -> None:
    """Hugging Face's forward: four copies of the name reach the final position (logit
    difference +-4 * ANSWER_LOGIT, both pairs), every planted head and B's partner attend
    one-hot where their routes say, and patching one head's clean z into the corrupted run
    restores it all for A and B, half for an amplifier, nothing for the partner, whose z does
    differ between the runs (it reads the name through B's values)."""
    fx, p = two_hop_gqa, two_hop_gqa.truth
    for i, pair in enumerate(p.pairs):
        clean, _, _, attentions = hf_run(fx, pair.clean)
        corrupt, *_ = hf_run(fx, pair.corrupt)
        assert logit_diff(fx, clean, i) == pytest.approx(4 * ANSWER_LOGIT, abs=TOL)
        assert logit_diff(fx, corrupt, i) == pytest.approx(-4 * ANSWER_LOGIT, abs=TOL)
        assert int(clean.argmax()) == fx.answer(pair.target)
        assert int(corrupt.argmax()) == fx.answer(pair.wrong)
        looks = [(m.layer, m.head, m.dest_pos, m.source_pos) for m in p.moves]
        ((partner_layer, partner),) = p.decoy_heads
        looks.append((partner_layer, partner, p.final_pos, p.source_pos))
        for layer, head, dest, source in looks:
            assert float(attentions[layer][0, head, dest, source]) > 1 - 1e-6
    pair = p.pairs[0]
    _, z_clean, _, _ = hf_run(fx, pair.clean)
    _, z_corrupt, _, _ = hf_run(fx, pair.corrupt)
    heads = (*p.heads, *p.decoy_heads)
    for (layer, head), share in zip(heads, (0.5, 1.0, 1.0, 0.5, 0.0), strict=True):
        logits, *_ = hf_run(fx, pair.corrupt, patch=(layer, head, z_clean[layer]))
        expected = -4 * ANSWER_LOGIT + share * 8 * ANSWER_LOGIT
        assert logit_diff(fx, logits) == pytest.approx(expected, abs=TOL)
    d_head = fx.hf.config.head_dim
    ((layer, head),) = p.decoy_heads
    cols = slice(head * d_head, (head + 1) * d_head)
    assert (z_clean[layer][..., cols] - z_corrupt[layer][..., cols]).abs().max() > 0.5


def test_gqa_two_hop_routes_by_content_so_positions_do_not_matter(two_hop_gqa: Loaded) -> None:
    """Two more words before the subject move every position by 2, rotary angles included:
    the heads route by content, score on rotary dimensions that do not turn, and every norm
    depends on content alone, so attention and logit differences are the designed ones."""
    fx, p = two_hop_gqa, two_hop_gqa.truth
    template = "After a long lunch{name} said she would pay, so the bill went to"
    pair = p.pairs[0]
    for name, expected in ((pair.target, 4 * ANSWER_LOGIT), (pair.wrong, -4 * ANSWER_LOGIT)):
        text = template.format(name=name)
        assert fx.ids(text).shape[1] == len(p.str_tokens) + 2
        logits, _, _, attentions = hf_run(fx, text)
        assert logit_diff(fx, logits) == pytest.approx(expected, abs=TOL)
        for m in p.moves:
            assert float(attentions[m.layer][0, m.head, m.dest_pos + 2, m.source_pos + 2]) == 1.0


def test_gqa_two_hop_path_patching_finds_the_sender(two_hop_gqa: Loaded) -> None:
    """Path patching every head into B's own value (ungrouped) finds A alone; into B's query
    or key, or its key/value head's key, nothing (attention routes by flags equal in both
    runs); into the logits, B and the last amplifier, half each. B's partner reads the shared
    values at the subject, where only the layer-0 amplifier writes (A writes at " she"): into
    the partner's value only that amplifier counts, and a little (the partner's copy goes
    nowhere read; it only changes a norm). B and the partner read the shared values at
    different positions, so the key/value head's value (grouped) is the sum of the two."""
    from actpatch.patching.paths import path_patch

    fx, p = two_hop_gqa, two_hop_gqa.truth
    exp = fx.experiment()
    shape = (p.n_layers, p.n_heads)
    amplify, a, b, amplify_end = p.moves
    ((_, partner),) = p.decoy_heads
    kv = b.head // group_size(fx)
    into_b = path_patch(exp, "all", f"a{b.layer}.h{b.head}<v>")
    assert_close(into_b.normalized, expected_grid(shape, lambda c: float(c == (a.layer, a.head))))
    b_head = f"a{b.layer}.h{b.head}"
    for receiver in (f"{b_head}<q>", f"{b_head}<k>", f"a{b.layer}.kv{kv}<k>"):
        into = path_patch(exp, "all", receiver)
        assert_close(into.normalized, torch.zeros(shape))
    to_logits = path_patch(exp, "all", "logits")
    direct = {(b.layer, b.head): 0.5, (amplify_end.layer, amplify_end.head): 0.5}
    assert_close(
        to_logits.normalized,
        expected_grid(shape, lambda c: direct.get(c, 0.0)),  # type: ignore[arg-type]
    )
    into_partner = path_patch(exp, "all", f"a{b.layer}.h{partner}<v>").normalized
    at_subject = (amplify.layer, amplify.head)
    elsewhere = into_partner.clone()
    elsewhere[at_subject] = 0.0
    assert_close(elsewhere, torch.zeros(shape))
    # mixing the names halves the norm^2 of the partner's copy (about 3.8 -> 1.9) in a final
    # residual of norm^2 about 120: the final scale moves by under 1%, the metric with it
    assert 0 < abs(float(into_partner[at_subject])) < 0.01
    into_kv = path_patch(exp, "all", f"a{b.layer}.kv{kv}<v>")
    assert_close(into_kv.normalized, into_b.normalized + into_partner)
    top, _ = into_kv.top(1)[0]
    assert f"{top}->a{b.layer}.kv{kv}<v>" == p.key_edge_grouped


@pytest.mark.parametrize("kv", ["ungrouped", "grouped"])
@pytest.mark.parametrize("method", ["eap", "eap-ig"])
def test_gqa_two_hop_key_edge_ranks_first(two_hop_gqa: Loaded, method: str, kv: str) -> None:
    """EAP and EAP-IG rank A -> B<v> first in the ungrouped convention, A -> B's key/value
    head's value first in the grouped one, at about twice any other edge (each other edge on
    the path carries half), and the key edge's exact patch restores the whole clean run."""
    from actpatch.patching.edges import edge_attribution

    p = two_hop_gqa.truth
    result = edge_attribution(two_hop_gqa.experiment(), method, verify=1, kv=kv)
    first, second = result.edges[0], result.edges[1]
    assert first.name == (p.key_edge if kv == "ungrouped" else p.key_edge_grouped)
    assert first.score > 1.5 * abs(second.score)
    gap = p.clean_logit_diff - p.corrupt_logit_diff
    assert result.verified[0].effect == pytest.approx(gap, abs=TOL)
    # the linear estimate is close to the exact effect (RMS norm bends it a little)
    assert first.score == pytest.approx(gap, rel=0.15)


@pytest.mark.parametrize("kv", ["ungrouped", "grouped"])
def test_gqa_two_hop_circuit_is_faithful_and_each_edge_carries_its_share(
    two_hop_gqa: Loaded, kv: str
) -> None:
    """With every edge off the path ablated (corrupted-run values), the path's seven value
    edges give the clean run (faithfulness 1, over both prompt pairs) and no edges the
    corrupted run (0). Without the key edge, B reads A's corrupted copy: 0. Without any other
    edge of the path, one of two copies of the name is the corrupted one and the two names'
    logits tie: 0.5. Patched alone into the corrupted run, each edge moves it by the share
    the circuit loses without it (exact edge patching)."""
    from actpatch.patching.circuit import evaluate, verify_edges

    fx, p = two_hop_gqa, two_hop_gqa.truth
    path = two_hop_path(fx, kv)
    key = p.key_edge if kv == "ungrouped" else p.key_edge_grouped
    share = {edge: 1.0 if edge == key else 0.5 for edge in path}
    circuits = [path, *([e for e in path if e != dropped] for dropped in path), []]
    result = evaluate(fx.experiment(n_pairs=2), circuits=circuits, kv=kv)
    faithfulness = [point.faithfulness for point in result.points]
    expected = [1.0, *(1.0 - share[edge] for edge in path), 0.0]
    assert faithfulness == pytest.approx(expected, abs=TOL)
    checks = verify_edges(fx.experiment(), path, kv=kv).edges
    assert [c.edge for c in checks] == path
    assert [c.normalized for c in checks] == pytest.approx([share[e] for e in path], abs=TOL)


def test_gqa_two_hop_refuses_models_it_cannot_build(tmp_path) -> None:
    with pytest.raises(ValueError, match="grouped-query attention shares"):
        build_two_hop_gqa_circuit(tmp_path, n_kv_heads=4)
    with pytest.raises(ValueError, match="not a multiple"):
        build_two_hop_gqa_circuit(tmp_path, n_kv_heads=3)
    with pytest.raises(ValueError, match="slowly rotating"):
        build_two_hop_gqa_circuit(tmp_path, n_heads=4, n_kv_heads=1, d_model=16)
