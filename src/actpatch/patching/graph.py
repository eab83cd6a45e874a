"""The computational graph that edge-level methods score: writers, readers and the edges between.

A transformer's residual stream is a sum: every component *writes* its output into it, and every
later component *reads* the sum. An *edge* is one writer's contribution to one reader's input.
We name them as EAP-IG does (Hanna et al. 2024, "Have Faith in Faithfulness";
github.com/hannamw/EAP-IG), so scores can be compared with theirs:

- writers: `input` (the embeddings: token plus position), `a{L}.h{H}` (attention head H of layer
  L: its output through W_O, without the layer's output bias, which no head owns), `m{L}` (the
  MLP of layer L);
- readers: `a{L}.h{H}<q>`, `a{L}.h{H}<k>`, `a{L}.h{H}<v>` (what head H of layer L reads to make
  its queries, keys and values: each head reads the residual stream separately, through the
  layer norm), `m{L}` (the MLP's input), `logits` (the final residual stream, which the
  unembedding reads);
- an edge `writer->reader` exists when the writer comes before the reader: a head of layer L
  reads the input and every head and MLP of layers before L; the MLP of layer L also reads the
  heads of its own layer; the logits read everything. Its name is `a0.h1->a2.h3<v>`.

GPT-2 small (12 layers of 12 heads) has 32,491 edges (`n_edges(12, 12)`). Edges are position-free:
an edge's score sums over positions unless a method is asked to keep them.

Two architectures change the graph (`GraphShape`):
- *Grouped-query attention* (n_kv_heads < n_heads: Llama 3, Mistral, Qwen 2/3, Gemma 2/3, ...).
  By default the *ungrouped* convention of MIB and EAP-IG: every query head keeps its own `<k>`
  and `<v>` readers (`a2.h3<k>` is the key input as query head 3 uses it), as in the multi-head
  model whose key/value projections are repeated for each query head of their group; the graph
  is then a multi-head model's. With `kv="grouped"`, the model's own structure: one `<k>` and
  one `<v>` reader per key/value head, `a2.kv1<k>` (key/value head 1 of layer 2, shared by query
  heads 1 * group .. 2 * group - 1).
- *Parallel residual* (GPT-NeoX/Pythia): a layer's MLP reads the layer's input, before its heads
  wrote, so there are no `a{L}.h{H}->m{L}` edges.

This module is torch-free: the CLI parses edge and node names with it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from actpatch.errors import InputError
from actpatch.patching.options import KV_CONVENTIONS

QKV = ("q", "k", "v")


@dataclass(frozen=True)
class GraphShape:
    """What decides a model's graph: its size, its key/value heads and their convention, and
    whether its MLPs read the layer's input alongside attention (parallel residual)."""

    n_layers: int
    n_heads: int
    n_kv_heads: int = 0  # 0: as many as n_heads
    kv: str = "ungrouped"
    parallel: bool = False

    def __post_init__(self) -> None:
        if self.n_kv_heads == 0:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        if self.kv not in KV_CONVENTIONS:
            raise InputError(
                f"Unknown key/value convention {self.kv!r}. Choose "
                + " or ".join(f"{k!r} ({v})" for k, v in KV_CONVENTIONS.items())
                + ".",
                field="kv",
            )

    @property
    def grouped(self) -> bool:
        """Whether <k>/<v> readers are per key/value head (only when heads share them)."""
        return self.kv == "grouped" and self.n_kv_heads != self.n_heads

    @property
    def n_kv_readers(self) -> int:
        """How many <k> (and <v>) readers a layer has."""
        return self.n_kv_heads if self.grouped else self.n_heads

    @property
    def group(self) -> int:
        """How many query heads share one key/value head."""
        return self.n_heads // self.n_kv_heads

    def describe(self) -> str:
        """'12 layers x 12 heads', with the key/value heads and wiring when they matter."""
        out = f"{self.n_layers} layers x {self.n_heads} heads"
        if self.n_kv_heads != self.n_heads:
            out += f" sharing {self.n_kv_heads} key/value heads ({self.kv})"
        if self.parallel:
            out += ", parallel residual"
        return out


@dataclass(frozen=True)
class Node:
    """A writer or a reader: `kind` is input, head, mlp or logits; `qkv` marks a head's input."""

    kind: str  # input, head, mlp, logits; kv: a key/value head's <k> or <v> (grouped)
    layer: int = -1  # -1 for input; n_layers for logits
    head: int = -1  # the query head; for kind kv, the key/value head
    qkv: str = ""

    @property
    def name(self) -> str:
        if self.kind == "input":
            return "input"
        if self.kind == "logits":
            return "logits"
        if self.kind == "mlp":
            return f"m{self.layer}"
        if self.kind == "kv":
            return f"a{self.layer}.kv{self.head}<{self.qkv}>"
        return f"a{self.layer}.h{self.head}" + (f"<{self.qkv}>" if self.qkv else "")

    @property
    def writer(self) -> Node:
        """The writer this node names, without a q/k/v input mark (a0.h1<q> -> a0.h1)."""
        return Node(self.kind, self.layer, self.head)


def writers(n_layers: int, n_heads: int) -> list[Node]:
    """Every writer in forward order: input, then each layer's heads and its MLP."""
    out = [Node("input")]
    for layer in range(n_layers):
        out += [Node("head", layer, h) for h in range(n_heads)]
        out.append(Node("mlp", layer))
    return out


def readers(n_layers: int, n_heads: int, n_kv: int | None = None) -> list[Node]:
    """Every reader in forward order: each layer's q, k, v inputs (all heads), its MLP; logits.

    With `n_kv` (the grouped convention), a layer's <k> and <v> readers are its `n_kv`
    key/value heads' (`a{L}.kv{G}<k>`) instead of every query head's."""
    out = []
    for layer in range(n_layers):
        out += [Node("head", layer, h, "q") for h in range(n_heads)]
        for letter in ("k", "v"):
            if n_kv is None:
                out += [Node("head", layer, h, letter) for h in range(n_heads)]
            else:
                out += [Node("kv", layer, g, letter) for g in range(n_kv)]
        out.append(Node("mlp", layer))
    out.append(Node("logits", n_layers))
    return out


def shape_readers(shape: GraphShape) -> list[Node]:
    """`readers` of a model shape, in its key/value convention."""
    return readers(shape.n_layers, shape.n_heads, shape.n_kv_heads if shape.grouped else None)


def feeds(writer: Node, reader: Node, parallel: bool = False) -> bool:
    """Whether `writer`'s output reaches `reader`'s input directly (through the residual stream).

    With `parallel` (a parallel-residual model), a layer's MLP reads the layer's input: its own
    layer's heads do not feed it."""
    if writer.kind == "input" or reader.kind == "logits":
        return True
    if reader.kind == "mlp":  # the MLP reads after its own layer's attention
        same_layer_head = writer.kind == "head" and writer.layer == reader.layer and not parallel
        return writer.layer < reader.layer or same_layer_head
    return writer.layer < reader.layer  # a head reads before its layer's attention


def edges(
    n_layers: int, n_heads: int, n_kv: int | None = None, parallel: bool = False
) -> list[tuple[Node, Node]]:
    """Every edge (writer, reader), grouped by reader in forward order."""
    ws = writers(n_layers, n_heads)
    return [(w, r) for r in readers(n_layers, n_heads, n_kv) for w in ws if feeds(w, r, parallel)]


def n_edges(n_layers: int, n_heads: int, n_kv: int | None = None, parallel: bool = False) -> int:
    """How many edges the graph has: for each reader, the writers before it.

    Before layer L's attention there are 1 + L * (n_heads + 1) writers; each of the layer's
    n_heads + 2 * n_kv head inputs (n_kv = n_heads, ungrouped) reads all of them, its MLP reads
    them and (unless parallel) the layer's heads, and the logits read every writer.
    """
    per_layer_inputs = n_heads + 2 * (n_heads if n_kv is None else n_kv)
    total = 0
    for layer in range(n_layers):
        before = 1 + layer * (n_heads + 1)
        total += per_layer_inputs * before + before + (0 if parallel else n_heads)
    return total + 1 + n_layers * (n_heads + 1)


_NODE = re.compile(
    r"^(?:(input)|(logits)|m(\d+)|a(\d+)\.h(\d+)(?:<([qkv])>)?|a(\d+)\.kv(\d+)<([kv])>)$"
)


def parse_node(
    name: str, n_layers: int, n_heads: int, field: str = "circuit", n_kv: int | None = None
) -> Node:
    """The node called `name` (input, a3.h2, a3.h2<q>, m3, logits; a3.kv1<k> in the grouped
    convention, `n_kv` key/value heads); a teaching error otherwise."""
    match = _NODE.match(name.strip())
    if match is None:
        raise InputError(
            f"{name!r} is not a node name. Writers are 'input', 'a{{L}}.h{{H}}' (a head) and "
            "'m{L}' (an MLP); readers are 'a{L}.h{H}<q>', '<k>', '<v>', 'm{L}' and 'logits' "
            "(e.g. 'a9.h9', 'a7.h3<v>', 'm0'), and 'a{L}.kv{G}<k>' / '<v>' for a key/value "
            "head in the grouped convention.",
            field=field,
        )
    inp, logits, mlp, layer, head, qkv, kv_layer, kv_head, kv_letter = match.groups()
    if inp:
        return Node("input")
    if logits:
        return Node("logits", n_layers)
    if mlp is not None:
        node = Node("mlp", int(mlp))
    elif kv_layer is not None:
        node = Node("kv", int(kv_layer), int(kv_head), kv_letter)
    else:
        node = Node("head", int(layer), int(head), qkv or "")
    if not 0 <= node.layer < n_layers:
        raise InputError(
            f"{name!r}: layer {node.layer} is out of range; this model has layers 0 to "
            f"{n_layers - 1}.",
            field=field,
        )
    if node.kind == "head" and not 0 <= node.head < n_heads:
        raise InputError(
            f"{name!r}: head {node.head} is out of range; this model has heads 0 to {n_heads - 1}.",
            field=field,
        )
    if node.kind == "kv":
        if n_kv is None:
            raise InputError(
                f"{name!r} names a key/value head's input (the grouped convention), but the "
                "graph here is ungrouped: every query head has its own <k> and <v> readers, "
                "e.g. 'a3.h2<k>'. Ask for the grouped graph (kv 'grouped') on a model whose "
                "heads share keys and values.",
                field=field,
            )
        if not 0 <= node.head < n_kv:
            raise InputError(
                f"{name!r}: key/value head {node.head} is out of range; this model has "
                f"key/value heads 0 to {n_kv - 1}.",
                field=field,
            )
    elif node.kind == "head" and node.qkv in ("k", "v") and n_kv is not None:
        raise InputError(
            f"{name!r} names a query head's own {node.qkv} input (the ungrouped convention), "
            f"but the graph here is grouped: {n_heads} query heads share {n_kv} key/value "
            f"heads, whose inputs are 'a{node.layer}.kv{{G}}<{node.qkv}>' (G = 0 to {n_kv - 1}; "
            f"head {node.head} reads key/value head {node.head // (n_heads // n_kv)}).",
            field=field,
        )
    return node


def parse_edge(
    name: str,
    n_layers: int,
    n_heads: int,
    field: str = "circuit",
    n_kv: int | None = None,
    parallel: bool = False,
) -> tuple[Node, Node]:
    """The edge called `name` ('a0.h1->a2.h3<v>'); a teaching error if it is not in the graph."""
    parts = name.split("->")
    if len(parts) != 2:
        raise InputError(
            f"{name!r} is not an edge name: write WRITER->READER, e.g. 'a0.h1->a2.h3<v>' or "
            "'m0->logits'.",
            field=field,
        )
    writer = parse_node(parts[0], n_layers, n_heads, field, n_kv)
    reader = parse_node(parts[1], n_layers, n_heads, field, n_kv)
    if writer.kind == "logits" or writer.qkv:
        raise InputError(f"{name!r}: {writer.name!r} reads; it writes nothing.", field=field)
    if parallel and reader.kind == "mlp" and writer.kind == "head" and writer.layer == reader.layer:
        raise InputError(
            f"{name!r} is not an edge: this model has a parallel residual stream, so the MLP of "
            f"layer {reader.layer} reads the layer's input, before its heads write. Its readers "
            f"of heads are heads of earlier layers, e.g. 'a{max(reader.layer - 1, 0)}.h0->"
            f"m{reader.layer}'" + (" (none: layer 0)" if reader.layer == 0 else "") + ".",
            field=field,
        )
    if reader.kind == "input":
        raise InputError(f"{name!r}: the input reads nothing.", field=field)
    if reader.kind == "head" and not reader.qkv:
        raise InputError(
            f"{name!r}: say which input of {reader.name} the edge enters: "
            f"{reader.name}<q>, <k> or <v>.",
            field=field,
        )
    if not feeds(writer, reader, parallel):
        raise InputError(
            f"{name!r} is not an edge: {writer.name} does not come before {reader.name}, so "
            "its output cannot reach that input.",
            field=field,
        )
    return writer, reader


def edge_name(writer: Node, reader: Node) -> str:
    return f"{writer.name}->{reader.name}"


_SHORT_HEAD = re.compile(r"^(\d+)\.(\d+)(?:\.([qkv]))?$")


def _short(name: str) -> str:
    """'9.9' -> 'a9.h9', '9.9.q' -> 'a9.h9<q>'; other names unchanged."""
    match = _SHORT_HEAD.match(name.strip())
    if match is None:
        return name.strip()
    layer, head, qkv = match.groups()
    return f"a{layer}.h{head}" + (f"<{qkv}>" if qkv else "")


def names_of(value: str | Iterable[str], field: str = "circuit") -> list[str]:
    """Node or edge names given as a list, or as one string of comma-separated names (as the
    CLI takes them: 'a0.h7,m0'); a teaching error for anything else (a tuple of numbers)."""
    if isinstance(value, str):
        return [n.strip() for n in value.split(",") if n.strip()]
    if not isinstance(value, Iterable):
        raise InputError(
            f"The {field} are a {type(value).__name__}: give a list of names such as "
            "['a0.h1', 'm0'] (nodes) or ['a0.h1->m2'] (edges), or one comma-separated string.",
            field=field,
        )
    out = list(value)
    for item in out:
        if not isinstance(item, str):
            raise InputError(
                f"{item!r} among the {field} is a {type(item).__name__}, not a name: write a "
                "head as 'a{L}.h{H}' (e.g. 'a9.h9', or '9.9' for path patching), an MLP as "
                "'m{L}', an edge as 'WRITER->READER'.",
                field=field,
            )
    return out


def parse_senders(spec: str | list[str], n_layers: int, n_heads: int) -> list[Node]:
    """Path patching's senders: 'all' (every head), or heads and MLPs ('9.9', 'a9.h9', 'm0')."""
    names = names_of(spec, "senders")
    if [n.strip() for n in names] == ["all"]:
        return [Node("head", layer, h) for layer in range(n_layers) for h in range(n_heads)]
    out = []
    for name in names:
        if not name.strip():
            continue
        node = parse_node(_short(name), n_layers, n_heads, "senders")
        if node.kind not in ("head", "mlp") or node.qkv:
            raise InputError(
                f"Sender {name!r} is not a head or an MLP: senders write into the residual "
                "stream, e.g. '9.9' (layer 9, head 9) or 'm0' (layer 0's MLP).",
                field="senders",
            )
        out.append(node)
    if not out:
        raise InputError("No senders given: give 'all' or heads like '9.9,10.0'.", field="senders")
    return list(dict.fromkeys(out))


def parse_receivers(
    spec: str | list[str], n_layers: int, n_heads: int, n_kv_heads: int | None = None
) -> list[Node]:
    """Path patching's receivers: 'logits', or head inputs ('9.9.q', 'a9.h9<k>') and MLPs ('m3').

    On a model whose heads share keys and values (`n_kv_heads` < `n_heads`), 'a9.h9<k>' is the
    key input as query head 9 uses it, and 'a9.kv2<k>' is key/value head 2's input, which every
    query head of its group reads."""
    names = [n.strip() for n in names_of(spec, "receivers")]
    names = [n for n in names if n]
    if names == ["logits"]:
        return [Node("logits", n_layers)]
    shared = n_kv_heads if n_kv_heads is not None and n_kv_heads != n_heads else None
    out = []
    for name in names:
        grouped = ".kv" in name and shared is not None
        if ".kv" in name and shared is None:
            raise InputError(
                f"Receiver {name!r}: this model's heads do not share keys and values; give a "
                "head's own input, e.g. '9.9.k'.",
                field="receivers",
            )
        node = parse_node(_short(name), n_layers, n_heads, "receivers", shared if grouped else None)
        if node.kind == "logits":
            raise InputError(
                "'logits' is a receiver on its own: give either 'logits' or heads' inputs.",
                field="receivers",
            )
        if node.kind == "input" or (node.kind == "head" and not node.qkv):
            raise InputError(
                f"Receiver {name!r}: give a head's input ('9.9.q', '9.9.k', '9.9.v'), an MLP "
                "('m3') or 'logits'.",
                field="receivers",
            )
        out.append(node)
    if not out:
        raise InputError(
            "No receivers given: give 'logits' or head inputs like '9.9.q,9.6.q'.",
            field="receivers",
        )
    return list(dict.fromkeys(out))


__all__ = [
    "KV_CONVENTIONS",
    "QKV",
    "GraphShape",
    "Node",
    "edge_name",
    "edges",
    "feeds",
    "n_edges",
    "parse_edge",
    "parse_node",
    "parse_receivers",
    "parse_senders",
    "readers",
    "shape_readers",
    "writers",
]
