"""The edge graph: EAP-IG's names, its edge count, and the parsers' teaching errors."""

from __future__ import annotations

import pytest

from actpatch.errors import InputError
from actpatch.patching import graph


def test_gpt2_small_has_32491_edges():
    """EAP-IG's graph of GPT-2 small has 32,491 edges (Hanna et al. 2024): the formula and the
    enumeration must both give it."""
    assert graph.n_edges(12, 12) == 32491
    assert len(graph.edges(12, 12)) == 32491


@pytest.mark.parametrize(("n_layers", "n_heads"), [(1, 1), (2, 3), (3, 4), (4, 8)])
def test_enumeration_matches_the_count_and_has_no_duplicates(n_layers, n_heads):
    every = graph.edges(n_layers, n_heads)
    names = [graph.edge_name(w, r) for w, r in every]
    assert len(names) == len(set(names)) == graph.n_edges(n_layers, n_heads)


def test_who_feeds_whom():
    """A head reads only earlier layers; an MLP also reads its own layer's heads; logits read
    everything; the input feeds everything."""
    edges = {graph.edge_name(w, r) for w, r in graph.edges(2, 2)}
    assert "a0.h1->a1.h0<q>" in edges
    assert "a0.h1->a0.h0<q>" not in edges  # same layer: heads read before the layer's attention
    assert "a1.h0->m1" in edges and "m1->a1.h0<k>" not in edges
    assert "m0->a1.h1<v>" in edges and "m1->logits" in edges and "input->a0.h0<v>" in edges
    assert "a1.h0->m0" not in edges


def test_names_follow_eap_ig():
    readers = [r.name for r in graph.readers(1, 2)]
    assert readers == ["a0.h0<q>", "a0.h1<q>", "a0.h0<k>", "a0.h1<k>", "a0.h0<v>", "a0.h1<v>",
                       "m0", "logits"]  # fmt: skip
    assert [w.name for w in graph.writers(1, 2)] == ["input", "a0.h0", "a0.h1", "m0"]


def test_parse_round_trips_every_edge():
    for w, r in graph.edges(3, 4):
        assert graph.parse_edge(graph.edge_name(w, r), 3, 4) == (w, r)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a1.h0->a0.h0<q>", "does not come before"),
        ("a0.h0->a1.h0", "which input"),
        ("logits->m0", "writes nothing"),
        ("a0.h0->input", "reads nothing"),
        ("a9.h0->logits", "out of range"),
        ("a0.h7->logits", "out of range"),
        ("head 3", "not an edge name"),
        ("x->logits", "not a node name"),
    ],
)
def test_bad_edges_teach(name, message):
    with pytest.raises(InputError, match=message):
        graph.parse_edge(name, 3, 4)


def test_senders_and_receivers_accept_short_and_eap_ig_names():
    senders = graph.parse_senders("9.9, a10.h0,m3", 12, 12)
    assert [s.name for s in senders] == ["a9.h9", "a10.h0", "m3"]
    assert len(graph.parse_senders("all", 12, 12)) == 144
    receivers = graph.parse_receivers(["9.9.q", "a9.h6<k>", "m11"], 12, 12)
    assert [r.name for r in receivers] == ["a9.h9<q>", "a9.h6<k>", "m11"]
    assert graph.parse_receivers("logits", 12, 12)[0].kind == "logits"
    with pytest.raises(InputError, match="head or an MLP"):
        graph.parse_senders("9.9.q", 12, 12)


def test_names_of_takes_a_list_or_one_comma_separated_string():
    assert graph.names_of("a0.h1, m0,,") == ["a0.h1", "m0"]
    assert graph.names_of(("a0.h1->m0",)) == ["a0.h1->m0"]
    with pytest.raises(InputError, match="The edges are a int"):
        graph.names_of(3, "edges")
    # path patching's senders as (layer, head) pairs: a teaching error, not AttributeError
    with pytest.raises(InputError, match=r"\(9, 9\) among the senders is a tuple.*'9\.9'"):
        graph.parse_senders([(9, 9)], 12, 12)
    with pytest.raises(InputError, match="among the receivers is a int"):
        graph.parse_receivers([3], 12, 12)
