"""MIB's circuit track: its importance-score files, its circuit sizes, pruning, CPR and CMD.

MIB (Mueller et al. 2025, "MIB: A Mechanistic Interpretability Benchmark";
github.com/hannamw/MIB-circuit-track) scores a circuit-discovery method by one number per edge.
Its evaluation (`MIB_circuit_track/evaluation.py`, on EAP-IG's `Graph`) then, for each of ten
*fractions* of the graph's edges (0.1%, 0.2%, 0.5%, 1%, 2%, 5%, 10%, 20%, 50%, 100%):

1. keeps the top `int(fraction * n_edges)` edges by score (by |score| when `absolute`);
2. *prunes* them: drops every kept edge that is not on a path of kept edges from the input to
   the logits (a node with no kept edge in, or none out, loses its edges; repeated);
3. runs the model with every other edge ablated and measures *faithfulness*,
   (circuit's metric - empty circuit's) / (clean model's - empty circuit's).

Two areas summarise the ten points, both by the trapezoid rule over the fractions (a linear
x axis from 0.001 to 1, not the pruned circuits' sizes):

- **CPR** (circuit performance ratio, higher is better): the area under faithfulness;
- **CMD** (circuit-model distance, lower is better): the area under |1 - faithfulness|.

MIB's `print_results.py` reports CPR from the signed ranking (`absolute=False`) and CMD from
the absolute one (`absolute=True`) when both were run.

The files (`circuits/ioi-eap-ig.json`, written by EAP-IG's `Graph.to_json`) are JSON:

    {"cfg": {"n_layers": 12, "n_heads": 12, "parallel_attn_mlp": false, "d_model": 768},
     "nodes": {"input": {"in_graph": true}, "a0.h0": {"in_graph": false}, ..., "logits": ...},
     "edges": {"input->a0.h0<q>": {"score": -0.0003, "in_graph": false}, ...}}

Edge and node names are EAP-IG's, which are ours (`actpatch.patching.graph`). In a model with
grouped-query attention MIB names a key and a value input per *query* head (TransformerLens's
`ungroup_grouped_query_attention`), which is our `kv="ungrouped"` graph; our grouped graph
(`a{L}.kv{G}<k>`) has no MIB form. With parallel attention and MLP (`parallel_attn_mlp`), a
layer's MLP does not read its own layer's heads.

This module is torch-free: pure functions on names, scores and the graph's shape.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from actpatch.errors import InputError
from actpatch.patching.graph import writers
from actpatch.patching.options import KV_CONVENTIONS

# MIB's ten fractions of the graph's edges (`percentages` in evaluation.py).
MIB_FRACTIONS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0)
# The keys of EAP-IG's Graph.cfg, which Graph.to_json writes as the file's `cfg`.
MIB_CFG_KEYS = ("n_layers", "n_heads", "parallel_attn_mlp", "d_model")
KV_LAYOUTS = tuple(KV_CONVENTIONS)

_FIELD = "circuit"


# --- the graph, in EAP-IG's order -------------------------------------------------------------


def mib_node_names(n_layers: int, n_heads: int) -> list[str]:
    """Every node in EAP-IG's order: input, each layer's heads and MLP, then logits (the graph's
    writers, `actpatch.patching.graph.writers`, and the logits)."""
    return [*(w.name for w in writers(n_layers, n_heads)), "logits"]


def mib_edge_names(n_layers: int, n_heads: int, *, parallel: bool = False) -> list[str]:
    """Every edge in the order EAP-IG's `Graph.from_model` adds them (and `to_json` writes them).

    Layer by layer: each writer so far feeds every head's q, k and v input; then (sequential)
    every writer so far, this layer's heads included, feeds the MLP, or (parallel) each earlier
    writer feeds the heads and the MLP in turn. Last, every writer feeds the logits.
    """
    out: list[str] = []
    stream = ["input"]
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        mlp = f"m{layer}"
        for writer in stream:
            out += [f"{writer}->{head}<{letter}>" for head in heads for letter in "qkv"]
            if parallel:
                out.append(f"{writer}->{mlp}")
        stream += heads
        if not parallel:
            out += [f"{writer}->{mlp}" for writer in stream]
        stream.append(mlp)
    return out + [f"{writer}->logits" for writer in stream]


def mib_sizes(n_edges: int) -> list[int]:
    """How many edges MIB keeps at each of its fractions: `int(fraction * n_edges)`.

    GPT-2 small's 32,491 edges give 32, 64, 162, 324, 649, 1624, 3249, 6498, 16245 and 32491.
    """
    if n_edges < 0:
        raise InputError(f"A graph has no negative number of edges ({n_edges}).", field=_FIELD)
    return [int(fraction * n_edges) for fraction in MIB_FRACTIONS]


# --- top-n selection and pruning ----------------------------------------------------------------


def _ends(edge: str) -> tuple[str, str]:
    """An edge's writer and reader node ('a0.h1->a2.h3<v>' -> ('a0.h1', 'a2.h3'))."""
    writer, sep, reader = edge.partition("->")
    if not sep or not writer or not reader:
        raise InputError(
            f"{edge!r} is not an edge name: write WRITER->READER, e.g. 'a0.h1->a2.h3<v>'.",
            field=_FIELD,
        )
    return writer, reader.split("<", 1)[0]


def prune(edges: Iterable[str]) -> list[str]:
    """The edges that lie on a path from the input to the logits, in their given order.

    This is EAP-IG's `Graph.prune` on edges: it removes, until nothing changes, every node with
    no kept edge in (the input excepted) or none out (the logits excepted), and every edge of a
    removed node. In a graph without cycles what remains is exactly the edges u->v with u
    reachable from the input and v reaching the logits. A head counts as reached when any of
    its q, k or v inputs is.
    """
    kept = list(edges)
    ends = [_ends(e) for e in kept]
    children: dict[str, list[str]] = {}
    parents: dict[str, list[str]] = {}
    for writer, reader in ends:
        children.setdefault(writer, []).append(reader)
        parents.setdefault(reader, []).append(writer)
    from_input = _reach("input", children)
    to_logits = _reach("logits", parents)
    return [e for e, (w, r) in zip(kept, ends, strict=True) if w in from_input and r in to_logits]


def _reach(start: str, step: Mapping[str, list[str]]) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in step.get(todo.pop(), []):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def select_top(
    names: Sequence[str],
    scores: Sequence[float],
    n: int,
    *,
    absolute: bool = True,
    pruned: bool = True,
) -> list[str]:
    """The top `n` edges by score, best first, then pruned as MIB does (EAP-IG's `apply_topn`).

    `absolute` ranks by |score| (EAP-IG's default; MIB's CMD), else by the signed score (MIB's
    CPR). Ties keep the order of `names`; EAP-IG breaks them by `torch.argsort`, which promises
    no order, so a circuit cut inside a tie may differ from MIB's by the tied edges. Pruning can
    leave fewer than `n` edges; MIB still places the circuit at its fraction of the graph.
    """
    if len(names) != len(scores):
        raise InputError(
            f"{len(names)} edge names but {len(scores)} scores: give one score per edge.",
            field=_FIELD,
        )
    if not 0 <= n <= len(names):
        raise InputError(
            f"Cannot keep the top {n} edges: there are {len(names)} scored edges.", field=_FIELD
        )
    nan = [name for name, s in zip(names, scores, strict=True) if math.isnan(s)]
    if nan:
        raise InputError(
            f"{len(nan)} edges have no score (NaN), e.g. {', '.join(nan[:3])}: score every edge "
            "(0.0 for an edge the method did not reach) before ranking.",
            field=_FIELD,
        )

    def key(i: int) -> float:
        return -abs(scores[i]) if absolute else -scores[i]

    order = sorted(range(len(names)), key=key)  # stable: ties keep the given order
    top = [names[i] for i in order[:n]]
    return prune(top) if pruned else top


def mib_circuits(
    names: Sequence[str], scores: Sequence[float], *, absolute: bool = True
) -> list[list[str]]:
    """MIB's ten circuits: the pruned top `int(fraction * len(names))` edges for each fraction.

    `names` must be every edge of the graph: the fractions are of the whole graph.
    """
    return [select_top(names, scores, n, absolute=absolute) for n in mib_sizes(len(names))]


# --- the areas ------------------------------------------------------------------------------------


def _xs(fractions: Sequence[float], n: int, log_scale: bool) -> list[float]:
    if len(fractions) != n:
        raise InputError(
            f"{n} faithfulness values for {len(fractions)} fractions: give one per fraction "
            f"(MIB's are {', '.join(f'{f:g}' for f in MIB_FRACTIONS)}).",
            field=_FIELD,
        )
    return [math.log(x) for x in fractions] if log_scale else list(fractions)


def cpr(
    faithfulness: Sequence[float],
    fractions: Sequence[float] = MIB_FRACTIONS,
    *,
    log_scale: bool = False,
) -> float:
    """MIB's CPR: the trapezoid-rule area under faithfulness over the fractions of edges kept.

    Sum over neighbouring points of (x2 - x1) * (f1 + f2) / 2, with x the fraction (its log
    when `log_scale`; MIB's runs use the linear scale). A curve at 1 from 0.1% to 100% scores
    0.999, not 1: the area starts at the first fraction.
    """
    xs = _xs(fractions, len(faithfulness), log_scale)
    f = list(faithfulness)
    return sum((xs[i + 1] - xs[i]) * (f[i] + f[i + 1]) / 2 for i in range(len(f) - 1))


def cmd(
    faithfulness: Sequence[float],
    fractions: Sequence[float] = MIB_FRACTIONS,
    *,
    log_scale: bool = False,
) -> float:
    """MIB's CMD: the trapezoid-rule area under |1 - faithfulness| over the fractions of edges.

    Sum of (x2 - x1) * (|1 - f1| + |1 - f2|) / 2: the distance is taken at the points, so a
    segment that crosses 1 counts both ends' distances in full (as MIB computes it).
    """
    xs = _xs(fractions, len(faithfulness), log_scale)
    d = [abs(1.0 - v) for v in faithfulness]
    return sum((xs[i + 1] - xs[i]) * (d[i] + d[i + 1]) / 2 for i in range(len(d) - 1))


# --- the shape a file is made for -------------------------------------------------------------


@dataclass(frozen=True)
class MibShape:
    """What a MIB file's `cfg` records of a model: enough to rebuild its edge graph."""

    n_layers: int
    n_heads: int
    parallel: bool = False
    d_model: int | None = None

    def describe(self, other: MibShape | None = None) -> str:
        """'12 layers x 12 heads', with d_model and parallel wiring when they tell two apart."""
        text = f"{_count(self.n_layers, 'layer')} x {_count(self.n_heads, 'head')}"
        show_d = other is None or (other.d_model is not None and other.d_model != self.d_model)
        if self.d_model is not None and show_d:
            text += f", d_model {self.d_model}"
        if other is not None and other.parallel != self.parallel:
            text += ", parallel attention and MLP" if self.parallel else ", sequential layers"
        return text


def _shape(
    n_layers: int,
    n_heads: int,
    parallel: bool,
    d_model: int | None,
    n_kv_heads: int | None,
    kv: str,
    doing: str,
) -> MibShape:
    if kv not in KV_LAYOUTS:
        raise InputError(
            f"Unknown key/value layout {kv!r}: use one of {', '.join(KV_LAYOUTS)}.", field=_FIELD
        )
    if kv == "grouped":
        raise InputError(
            f"Cannot {doing} a MIB circuit file for a graph with grouped key/value edges "
            "('a{L}.kv{G}<k>'): MIB names a key and a value input for every query head "
            "('a{L}.h{H}<k>', as TransformerLens's ungroup_grouped_query_attention does). "
            "Score the ungrouped graph (kv='ungrouped') instead.",
            field=_FIELD,
        )
    if n_layers < 1 or n_heads < 1:
        raise InputError(
            f"A model of {n_layers} layers x {n_heads} heads has no edge graph.", field=_FIELD
        )
    if n_kv_heads is not None and (n_kv_heads < 1 or n_heads % n_kv_heads):
        raise InputError(
            f"{n_kv_heads} key/value heads cannot serve {n_heads} query heads: the query heads "
            "must split evenly among them.",
            field=_FIELD,
        )
    return MibShape(n_layers, n_heads, parallel, d_model)


def _count(n: int, noun: str) -> str:
    """'1 layer', '12 layers'."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _graph_help(shape: MibShape, names: Sequence[str]) -> str:
    """What edges a graph of `shape` has, in a few lines."""
    last, heads = shape.n_layers - 1, shape.n_heads - 1
    mlp = "MLP reads earlier layers only" if shape.parallel else "MLP also reads its own heads"
    return (
        f"This model's graph ({shape.describe()}) has {len(names):,} edges named "
        f"WRITER->READER: writers input, a{{L}}.h{{H}} and m{{L}}; readers a{{L}}.h{{H}}<q>, "
        f"<k>, <v>, m{{L}} and logits; L from 0 to {last}, H from 0 to {heads}. A head reads "
        f"the input and earlier layers, a layer's {mlp}, the logits read every writer "
        f"(e.g. {names[0]}, {names[-1]})."
    )


def _check_names(given: Iterable[str], valid: Sequence[str], shape: MibShape, what: str) -> None:
    known = set(valid)
    unknown = [n for n in given if n not in known]
    if unknown:
        shown = ", ".join(repr(n) for n in unknown[:5])
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise InputError(
            f"Found {_count(len(unknown), what)} not in this model's graph: {shown}{more}. "
            + _graph_help(shape, valid),
            field=_FIELD,
        )


# --- writing --------------------------------------------------------------------------------------


def to_mib(
    names: Sequence[str],
    scores: Sequence[float],
    *,
    n_layers: int,
    n_heads: int,
    d_model: int,
    parallel: bool = False,
    n_kv_heads: int | None = None,
    kv: str = "ungrouped",
    top_n: int | None = None,
    absolute: bool = True,
) -> dict[str, Any]:
    """The JSON object of a MIB importance-score file for every edge's score.

    `names` and `scores` must cover every edge of the graph once (MIB ranks the whole graph),
    in any order; the file lists them in EAP-IG's order. `in_graph` marks a circuit inside the
    file: every edge and node when `top_n` is None (the whole model), else the pruned top
    `top_n` edges (`select_top` with `absolute`) and the nodes they touch. MIB's evaluation
    re-selects its own circuits from the scores, so `in_graph` matters only to readers of
    this one circuit. `cfg` holds EAP-IG's keys (n_layers, n_heads, parallel_attn_mlp,
    d_model), with n_heads the query heads.
    """
    shape = _shape(n_layers, n_heads, parallel, d_model, n_kv_heads, kv, "write")
    order = mib_edge_names(n_layers, n_heads, parallel=parallel)
    if len(names) != len(scores):
        raise InputError(
            f"{len(names)} edge names but {len(scores)} scores: give one score per edge.",
            field=_FIELD,
        )
    _check_names(names, order, shape, "edge")
    twice = [name for name, count in Counter(names).items() if count > 1]
    if twice:
        raise InputError(
            f"Edges scored twice: {', '.join(twice[:5])}. Give each edge one score.",
            field=_FIELD,
        )
    score_of = dict(zip(names, scores, strict=True))
    missing = [n for n in order if n not in score_of]
    if missing:
        raise InputError(
            f"{len(missing)} of the graph's {len(order):,} edges have no score, e.g. "
            f"{', '.join(missing[:3])}: MIB ranks every edge, so score them all (0.0 for an "
            "edge the method did not reach).",
            field=_FIELD,
        )
    if top_n is None:
        chosen = set(order)
    else:
        chosen = set(select_top(names, scores, top_n, absolute=absolute))
    writers_in = {_ends(e)[0] for e in chosen}
    return {
        "cfg": {
            "n_layers": n_layers,
            "n_heads": n_heads,
            "parallel_attn_mlp": parallel,
            "d_model": d_model,
        },
        "nodes": {
            node: {"in_graph": node == "logits" or node in writers_in}
            for node in mib_node_names(n_layers, n_heads)
        },
        "edges": {
            name: {"score": float(score_of[name]), "in_graph": name in chosen} for name in order
        },
    }


# --- reading --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MibCircuit:
    """An edge-level MIB circuit file, read: every edge's score and whether it is in the circuit.

    `names` lists the graph's edges in the file's order, then any the file leaves out, which
    take score 0.0 and are not in the circuit, as EAP-IG's `Graph.from_json` leaves them
    (`n_missing` counts them). `scores` is None for a file of circuit membership only (MIB's
    "multiple circuits" submissions carry no scores).
    """

    shape: MibShape
    names: tuple[str, ...]
    scores: tuple[float, ...] | None
    in_graph: tuple[bool, ...]
    n_missing: int

    @property
    def circuit(self) -> list[str]:
        """The edges marked in the circuit (`in_graph`), in the file's order."""
        return [n for n, keep in zip(self.names, self.in_graph, strict=True) if keep]


def _cfg_shape(cfg: Any) -> MibShape:
    if not isinstance(cfg, Mapping):
        raise InputError(
            "The file's 'cfg' is not an object: MIB files hold {'n_layers': ..., 'n_heads': ..., "
            "'parallel_attn_mlp': ..., 'd_model': ...}.",
            field=_FIELD,
        )
    absent = [k for k in ("n_layers", "n_heads", "parallel_attn_mlp") if k not in cfg]
    if absent:
        raise InputError(
            f"The file's 'cfg' lacks {', '.join(absent)}: EAP-IG builds the graph from "
            f"{', '.join(MIB_CFG_KEYS)}; add them for the model the scores were made on.",
            field=_FIELD,
        )
    n_layers, n_heads = cfg["n_layers"], cfg["n_heads"]
    d_model = cfg.get("d_model")
    ints = [n_layers, n_heads] + ([d_model] if d_model is not None else [])
    if any(isinstance(v, bool) or not isinstance(v, int) for v in ints):
        raise InputError(
            f"The file's 'cfg' has n_layers {n_layers!r}, n_heads {n_heads!r}, d_model "
            f"{d_model!r}: they must be whole numbers.",
            field=_FIELD,
        )
    return MibShape(n_layers, n_heads, bool(cfg["parallel_attn_mlp"]), d_model)


def _same_shape(made: MibShape, ours: MibShape) -> bool:
    d_differs = None not in (made.d_model, ours.d_model) and made.d_model != ours.d_model
    return (made.n_layers, made.n_heads, made.parallel) == (
        ours.n_layers,
        ours.n_heads,
        ours.parallel,
    ) and not d_differs


def _finite(value: Any) -> bool:
    is_number = isinstance(value, int | float) and not isinstance(value, bool)
    return is_number and math.isfinite(value)


_NEURON_KEYS = ("neurons", "neurons_scores")


def _load(data: str | bytes | Mapping[str, Any]) -> Mapping[str, Any]:
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise InputError(
                f"The circuit file is not valid JSON ({exc}). MIB circuit files are JSON "
                "objects with 'cfg', 'nodes' and 'edges'.",
                field=_FIELD,
            ) from exc
    if not isinstance(data, Mapping):
        raise InputError(
            "The circuit file is not a JSON object: MIB circuit files hold 'cfg', 'nodes' and "
            "'edges'.",
            field=_FIELD,
        )
    absent = [k for k in ("cfg", "nodes", "edges") if k not in data]
    if absent:
        raise InputError(
            f"The circuit file lacks {', '.join(repr(k) for k in absent)}: a MIB circuit file "
            "(EAP-IG's Graph.to_json) holds 'cfg' (the model's shape), 'nodes' and 'edges' "
            "('writer->reader': {'score': ..., 'in_graph': ...}).",
            field=_FIELD,
        )
    for key in ("nodes", "edges"):
        if not isinstance(data[key], Mapping):
            raise InputError(
                f"The file's {key!r} is not an object of name -> fields.", field=_FIELD
            )
    return data


def _check_nodes(nodes: Mapping[str, Any], shape: MibShape) -> None:
    _check_names(nodes, mib_node_names(shape.n_layers, shape.n_heads), shape, "node")
    for name, fields in nodes.items():
        if not isinstance(fields, Mapping):
            raise InputError(f"Node {name!r}: expected {{'in_graph': ...}}.", field=_FIELD)
        scored = _finite(fields.get("score")) or any(k in fields for k in _NEURON_KEYS)
        if scored:
            raise InputError(
                f"Node {name!r} carries node or neuron scores: this is a node- or "
                "neuron-level MIB file, and actpatch reads edge-level ones (a score on every "
                "edge). Export the method's edge scores instead.",
                field=_FIELD,
            )


def from_mib(
    data: str | bytes | Mapping[str, Any],
    *,
    n_layers: int,
    n_heads: int,
    d_model: int | None = None,
    parallel: bool = False,
    n_kv_heads: int | None = None,
    kv: str = "ungrouped",
) -> MibCircuit:
    """Read an edge-level MIB circuit file (its JSON text or object) for a model of this shape.

    Refuses a file made for another shape (naming both), edge or node names this model's graph
    lacks (saying what it has), and node- or neuron-level files.
    """
    ours = _shape(n_layers, n_heads, parallel, d_model, n_kv_heads, kv, "read")
    doc = _load(data)
    made = _cfg_shape(doc["cfg"])
    if not _same_shape(made, ours):
        raise InputError(
            f"This circuit file was made for a model of {made.describe(ours)}; this model has "
            f"{ours.describe(made)}. Use the file made for this model, or load the model the "
            "file was made for.",
            field=_FIELD,
        )
    order = mib_edge_names(n_layers, n_heads, parallel=parallel)
    edges: Mapping[str, Any] = doc["edges"]
    _check_names(edges, order, ours, "edge")
    _check_nodes(doc["nodes"], ours)

    names, scores, in_graph = [], [], []
    with_score = 0
    for name, fields in edges.items():
        if not isinstance(fields, Mapping) or not isinstance(fields.get("in_graph"), bool):
            raise InputError(
                f"Edge {name!r}: expected {{'score': <number>, 'in_graph': true or false}}, "
                f"got {fields!r}.",
                field=_FIELD,
            )
        score = fields.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, int | float)):
            raise InputError(f"Edge {name!r}: its score {score!r} is not a number.", field=_FIELD)
        if score is not None:
            with_score += 1
        names.append(name)
        scores.append(float(score) if score is not None else 0.0)
        in_graph.append(fields["in_graph"])
    if 0 < with_score < len(names):
        raise InputError(
            f"{len(names) - with_score} of the file's {len(names)} edges have no 'score': give "
            "every edge a score (an importance-score file) or none (a circuit file).",
            field=_FIELD,
        )
    missing = [n for n in order if n not in edges]
    names += missing
    scores += [0.0] * len(missing)
    in_graph += [False] * len(missing)
    return MibCircuit(
        shape=made,
        names=tuple(names),
        scores=tuple(scores) if with_score else None,
        in_graph=tuple(in_graph),
        n_missing=len(missing),
    )


__all__ = [
    "KV_LAYOUTS",
    "MIB_CFG_KEYS",
    "MIB_FRACTIONS",
    "MibCircuit",
    "MibShape",
    "cmd",
    "cpr",
    "from_mib",
    "mib_circuits",
    "mib_edge_names",
    "mib_node_names",
    "mib_sizes",
    "prune",
    "select_top",
    "to_mib",
]
