"""A model's graph as tables: each writer's and reader's index, and masks over (reader, writer).

`actpatch.patching.graph` names the graph's nodes and edges and says which writer feeds which
reader, without torch (the CLI parses names with it). `Graph` turns a model's graph (its
`GraphShape`) into the index tables and boolean masks the edge methods compute with: edge
attribution scores a (writers, readers) matrix and reads the edges' scores through `valid`;
circuit evaluation ablates, per batch row, the (reader, writer) pairs a mask leaves out.
`graph_for(exp, kv)` is the graph of an experiment's model, built once per shape.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from actpatch.patching.experiment import Experiment, check_experiment
from actpatch.patching.graph import (
    GraphShape,
    Node,
    edge_name,
    feeds,
    n_edges,
    names_of,
    parse_edge,
    parse_node,
    shape_readers,
    writers,
)

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Bool

Edge = tuple[Node, Node]


class Graph:
    """Index tables of a model's writers and readers, and masks over (reader, writer).

    `edge_names` lists every edge writer-major (the order of `valid.T`'s True entries), so a
    (writers, readers) score matrix `m` gives the edges' scores as `m[valid.T]`.
    """

    def __init__(self, shape: GraphShape) -> None:
        self.shape = shape
        self.n_layers, self.n_heads = shape.n_layers, shape.n_heads
        self._n_kv = shape.n_kv_heads if shape.grouped else None
        self.writers = writers(shape.n_layers, shape.n_heads)
        self.readers = shape_readers(shape)
        self.writer_index = {w: i for i, w in enumerate(self.writers)}
        self.reader_index = {r: i for i, r in enumerate(self.readers)}
        table = [[feeds(w, r, shape.parallel) for w in self.writers] for r in self.readers]
        self.valid = torch.tensor(table)  # (readers, writers): which pairs are edges
        self.edge_names = [
            edge_name(w, r)
            for wi, w in enumerate(self.writers)
            for ri, r in enumerate(self.readers)
            if table[ri][wi]
        ]
        self.n_edges = n_edges(shape.n_layers, shape.n_heads, self._n_kv, shape.parallel)
        # the first reader of each layer (its first head's <q>), for the hook's slices
        self.layer_start = [
            self.reader_index[Node("head", layer, 0, "q")] for layer in range(shape.n_layers)
        ]

    @property
    def cfg(self) -> dict[str, Any]:
        """The graph's shape as a plain dict (n_layers, n_heads, n_kv_heads, kv, parallel)."""
        return dataclasses.asdict(self.shape)

    def mask(self, edges: Iterable[Edge]) -> Bool[Tensor, "readers writers"]:
        """A (readers, writers) mask with True on `edges`."""
        out = torch.zeros(len(self.readers), len(self.writers), dtype=torch.bool)
        for w, r in edges:
            out[self.reader_index[r], self.writer_index[w]] = True
        return out

    def induced(self, nodes: Iterable[Node]) -> Bool[Tensor, "readers writers"]:
        """The edges among `nodes` (heads and MLPs; the input and the logits always count). A
        key/value head's reader (grouped convention) counts when any of its query heads does."""
        keep = {n.writer for n in nodes} | {Node("input"), Node("logits", self.n_layers)}
        group = self.shape.group
        w_in = torch.tensor([w in keep for w in self.writers])

        def reader_in(r: Node) -> bool:
            if r.kind == "kv":
                heads = range(r.head * group, (r.head + 1) * group)
                return any(Node("head", r.layer, h) in keep for h in heads)
            return r.writer in keep

        r_in = torch.tensor([reader_in(r) for r in self.readers])
        return self.valid & r_in[:, None] & w_in[None, :]

    def parse(self, names: Iterable[str], field: str = "circuit") -> list[Edge]:
        shape = self.shape
        return [
            parse_edge(n, shape.n_layers, shape.n_heads, field, self._n_kv, shape.parallel)
            for n in names_of(names, field)
        ]

    def parse_node(self, name: str, field: str = "nodes") -> Node:
        return parse_node(name, self.n_layers, self.n_heads, field, self._n_kv)


@functools.lru_cache(maxsize=8)
def graph_of(shape: GraphShape) -> Graph:
    """The graph of a model shape, built once (its tables are read-only)."""
    return Graph(shape)


def shape_of(exp: Experiment, kv: str = "ungrouped") -> GraphShape:
    """The graph shape of the experiment's model, in key/value convention `kv`."""
    spec = getattr(exp.runner, "spec", None)
    model = exp.model
    return GraphShape(
        model.n_layers,
        model.n_heads,
        n_kv_heads=getattr(spec, "n_kv_heads", 0) or model.n_heads,
        kv=kv,
        parallel=bool(getattr(spec, "parallel", False)),
    )


def graph_for(exp: Experiment, kv: str = "ungrouped") -> Graph:
    """The graph of the experiment's model (`kv`: its key/value convention)."""
    return graph_of(shape_of(check_experiment(exp), kv))


__all__ = ["Edge", "Graph", "graph_for", "graph_of", "shape_of"]
