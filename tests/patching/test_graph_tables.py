"""A model's graph as tables: the masks hold exactly the edges `graph` enumerates, in the order
a (writers, readers) score matrix gives them, and a node set keeps the edges worked out here."""

from __future__ import annotations

import torch

from actpatch.patching import graph
from actpatch.patching.graph import GraphShape
from actpatch.patching.graph_tables import graph_of


def test_gpt2_small_tables_hold_every_edge_once():
    tables = graph_of(GraphShape(12, 12))
    assert int(tables.valid.sum()) == tables.n_edges == len(tables.edge_names) == 32491
    every = {graph.edge_name(w, r) for w, r in graph.edges(12, 12)}
    assert set(tables.edge_names) == every


def test_edge_names_are_in_the_order_of_a_score_matrix():
    tables = graph_of(GraphShape(2, 3))
    n_w, n_r = len(tables.writers), len(tables.readers)
    scores = torch.arange(n_w * n_r, dtype=torch.float32).reshape(n_w, n_r)  # (writers, readers)
    values = scores[tables.valid.T].tolist()
    for name, value in zip(tables.edge_names, values, strict=True):
        w, r = divmod(int(value), n_r)
        assert name == graph.edge_name(tables.writers[w], tables.readers[r])


def test_a_node_set_keeps_the_edges_among_its_nodes():
    tables = graph_of(GraphShape(2, 2))
    kept = tables.induced([graph.parse_node("a0.h1", 2, 2)])
    names = {
        graph.edge_name(tables.writers[w], tables.readers[r]) for r, w in kept.nonzero().tolist()
    }
    # the input and the logits always count: the head reads the input, and both reach the logits
    assert names == {
        "input->a0.h1<q>",
        "input->a0.h1<k>",
        "input->a0.h1<v>",
        "input->logits",
        "a0.h1->logits",
    }
