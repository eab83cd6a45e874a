"""The two-hop circuit on a grouped-query Llama (`actpatch.planted.gqa`): B shares its values with a
decoy, and the engine, path patching and edge attribution must still find A -> B<v>.

As in test_circuits.py, every expected number follows from the model's description, never from
the engine's output; the construction is checked first with Hugging Face's own forward.
"""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaForCausalLM

from actpatch.planted import ANSWER_LOGIT, Move, build_two_hop_gqa_circuit
from tests.planted.support import TOL, Loaded, assert_close, expected_grid, hf_run, logit_diff


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
