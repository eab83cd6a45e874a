"""What the edge-level and path methods return: path patching's senders, edge attribution's
scores, exact edge checks and circuits' faithfulness (`actpatch.patching.paths`, `.edges`,
`.circuit`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from actpatch.patching.results.shown import Shown
from actpatch.patching.results.warning import ResultWarning, read_warnings
from actpatch.patching.serial import jsonable, nested, number_of, tensor_of


@dataclass(repr=False)
class PathPatchResult(Shown):
    """Path patching (Wang et al. 2022): the metric when only the receivers see each sender's
    change. `raw[layer, head]` when the senders are every head, else one value per sender
    (`senders` names them, EAP-IG style: 'a9.h9', 'm0'). Normalized: clean = 1, corrupted = 0.
    """

    result_kind: ClassVar[str] = "path"

    model: str
    senders: list[str]
    receivers: list[str]
    freeze_mlps: bool
    metric: str
    direction: str
    raw: Tensor
    normalized: Tensor
    clean: float
    corrupt: float
    tokens: list[str]
    n_pairs: int
    seconds: float
    backend: str
    note: str | None = None
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)

    @property
    def all_heads(self) -> bool:
        return self.raw.dim() == 2

    def values(self) -> list[tuple[str, float, float]]:
        """(sender, raw, normalized) for every sender, in the order of `senders`."""
        raw, norm = self.raw.flatten().tolist(), self.normalized.flatten().tolist()
        return list(zip(self.senders, raw, norm, strict=True))

    def top(self, k: int = 10) -> list[tuple[str, float]]:
        """The k senders whose path moved the metric most from the unpatched run, with their
        normalized (else raw) value."""
        use_norm = not bool(self.normalized.isnan().all())
        unpatched = (0.0 if self.direction == "denoising" else 1.0) if use_norm else None
        if unpatched is None:
            unpatched = self.corrupt if self.direction == "denoising" else self.clean
        rows = [(s, n if use_norm else r) for s, r, n in self.values()]
        rows.sort(key=lambda item: -abs(item[1] - unpatched))
        return rows[:k]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: `raw` and `normalized` are [layer][head] with every head as sender."""
        return {
            "result": self.result_kind,
            "model": self.model,
            "senders": self.senders,
            "receivers": self.receivers,
            "freeze_mlps": self.freeze_mlps,
            "metric": self.metric,
            "direction": self.direction,
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "raw": nested(self.raw),
            "normalized": nested(self.normalized),
            "tokens": self.tokens,
            "n_pairs": self.n_pairs,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "devices": self.devices,
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PathPatchResult:
        """The path patching a `to_dict` wrote (the CLI's `--out`, a stored run), without
        recomputing anything."""
        return cls(
            model=data["model"],
            senders=list(data["senders"]),
            receivers=list(data["receivers"]),
            freeze_mlps=bool(data["freeze_mlps"]),
            metric=data["metric"],
            direction=data["direction"],
            raw=tensor_of(data["raw"]),
            normalized=tensor_of(data["normalized"]),
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            tokens=list(data.get("tokens", [])),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            devices=list(data.get("devices", [])),
            note=data.get("note"),
            warnings=read_warnings(data),
        )


@dataclass
class CircuitPoint:
    """One circuit's size (edges kept), its metric, and its faithfulness."""

    n_edges: int
    metric: float
    faithfulness: float  # (metric - corrupted) / (clean - corrupted); NaN when undefined

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_edges": self.n_edges,
            "metric": jsonable(self.metric),
            "faithfulness": jsonable(self.faithfulness),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuitPoint:
        return cls(
            n_edges=int(data["n_edges"]),
            metric=number_of(data["metric"]),
            faithfulness=number_of(data["faithfulness"]),
        )


@dataclass(repr=False)
class CircuitResult(Shown):
    """Circuit evaluation: the clean run with every edge outside the circuit ablated.

    `points` holds one circuit, or a faithfulness curve (the top n edges of a ranking for each
    n). `ablation` says what replaced an ablated writer: the corrupted run's output, or the
    mean over every prompt.
    """

    result_kind: ClassVar[str] = "circuit"

    model: str
    metric: str
    ablation: str
    clean: float
    corrupt: float
    points: list[CircuitPoint]
    total_edges: int
    n_pairs: int
    seconds: float
    backend: str
    nodes: list[str] | None = None
    method: str | None = None  # where a ranking came from, e.g. "eap-ig"
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
    # the graph evaluated: n_layers, n_heads, n_kv_heads, kv (the key/value convention), parallel
    graph: dict[str, Any] = field(default_factory=dict)
    # MIB's summary when asked for (`actpatch.patching.mib`): fractions, curves, CPR and CMD
    mib: dict[str, Any] | None = None

    @property
    def faithfulness(self) -> float:
        """The (last) circuit's faithfulness."""
        return self.points[-1].faithfulness

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result_kind,
            "model": self.model,
            "metric": self.metric,
            "ablation": self.ablation,
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "faithfulness": jsonable(self.faithfulness),
            "points": [p.to_dict() for p in self.points],
            "total_edges": self.total_edges,
            "nodes": self.nodes,
            "method": self.method,
            "kv": self.graph.get("kv", "ungrouped"),
            "graph": self.graph,
            "mib": self.mib,
            "n_pairs": self.n_pairs,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "devices": self.devices,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CircuitResult:
        """The circuit evaluation a `to_dict` wrote (the CLI's `--out`, a stored run), without
        recomputing anything. `faithfulness` is its last point's; a file without `graph` keeps
        its `kv`."""
        graph = dict(data.get("graph") or {})
        if "kv" not in graph and data.get("kv", "ungrouped") != "ungrouped":
            graph["kv"] = data["kv"]
        return cls(
            model=data["model"],
            metric=data["metric"],
            ablation=data["ablation"],
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            points=[CircuitPoint.from_dict(p) for p in data["points"]],
            total_edges=int(data["total_edges"]),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            nodes=data.get("nodes"),
            method=data.get("method"),
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
            graph=graph,
            mib=data.get("mib"),
        )


@dataclass
class EdgeCheck:
    """One edge patched exactly: the metric, its change from the base run, and that change
    normalized by clean - corrupted (what an attribution score estimates)."""

    edge: str
    metric: float
    effect: float
    normalized: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "edge": self.edge,
            "metric": jsonable(self.metric),
            "effect": jsonable(self.effect),
            "normalized": jsonable(self.normalized),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeCheck:
        return cls(
            edge=data["edge"],
            metric=number_of(data["metric"]),
            effect=number_of(data["effect"]),
            normalized=number_of(data["normalized"]),
        )


@dataclass
class EdgeScore:
    """One edge's attribution score (EAP-IG's name, 'a0.h1->a2.h3<v>'), summed over positions;
    `by_pos` keeps the score at each position of the base prompt when asked for."""

    name: str
    score: float
    by_pos: list[float] | None = None

    @property
    def source(self) -> str:
        return self.name.split("->")[0]

    @property
    def target(self) -> str:
        return self.name.split("->")[1]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source, "target": self.target, "score": self.score}
        if self.by_pos is not None:
            out["by_pos"] = self.by_pos
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeScore:
        """An edge as `to_dict` writes it: its source and target, its score, `by_pos` if kept."""
        by_pos = data.get("by_pos")
        return cls(
            name=f"{data['source']}->{data['target']}",
            score=number_of(data["score"]),
            by_pos=None if by_pos is None else [number_of(v) for v in by_pos],
        )


@dataclass(repr=False)
class EdgeResult(Shown):
    """Edge attribution (EAP or EAP-IG): every edge of the graph with its score, strongest
    (by magnitude) first: `names[i]` scores `scores[i]` (`by_pos[i]` per position, when kept).
    `edges` gives them as `EdgeScore`s. `verified` holds the top edges patched exactly, when
    asked for."""

    result_kind: ClassVar[str] = "edges"

    model: str
    method: str
    steps: int
    metric: str
    direction: str
    clean: float
    corrupt: float
    names: list[str]
    scores: list[float]
    tokens: list[str]
    first_diff: int
    n_pairs: int
    seconds: float
    backend: str
    by_pos: list[list[float]] | None = None
    verified: list[EdgeCheck] = field(default_factory=list)
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
    # the graph scored: n_layers, n_heads, n_kv_heads, kv (the key/value convention), parallel
    graph: dict[str, Any] = field(default_factory=dict)

    @property
    def kv(self) -> str:
        """The key/value convention of the graph's <k>/<v> readers."""
        return str(self.graph.get("kv", "ungrouped"))

    def top(self, k: int = 10) -> list[EdgeScore]:
        """The k strongest edges."""
        by_pos = self.by_pos
        return [
            EdgeScore(n, s, by_pos[i] if by_pos is not None else None)
            for i, (n, s) in enumerate(zip(self.names[:k], self.scores[:k], strict=True))
        ]

    @functools.cached_property
    def edges(self) -> list[EdgeScore]:
        """Every edge, strongest first (built on first use: GPT-2 small has 32,491)."""
        return self.top(len(self.names))

    def to_dict(self, top: int | None = None) -> dict[str, Any]:
        """A JSON-ready dict; `top` keeps only the strongest edges (all by default)."""
        edges = self.top(len(self.names) if top is None else top)
        return {
            "result": self.result_kind,
            "model": self.model,
            "method": self.method,
            "steps": self.steps,
            "metric": self.metric,
            "direction": self.direction,
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "n_edges": len(self.names),
            "kv": self.kv,
            "graph": self.graph,
            "edges": [e.to_dict() for e in edges],
            "verified": [c.to_dict() for c in self.verified],
            "tokens": self.tokens,
            "first_diff": self.first_diff,
            "n_pairs": self.n_pairs,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "devices": self.devices,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EdgeResult:
        """The edge attribution a `to_dict` wrote (the CLI's `--out`, a stored run), without
        recomputing anything. A file written with `top` holds only its strongest edges, and so
        does the result read back (its `n_edges` then counts those)."""
        edges = [EdgeScore.from_dict(e) for e in data["edges"]]
        kept = [e.by_pos for e in edges if e.by_pos is not None]
        return cls(
            model=data["model"],
            method=data["method"],
            steps=int(data["steps"]),
            metric=data["metric"],
            direction=data["direction"],
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            names=[e.name for e in edges],
            scores=[e.score for e in edges],
            tokens=list(data.get("tokens", [])),
            first_diff=int(data.get("first_diff", 0)),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            by_pos=kept if edges and len(kept) == len(edges) else None,
            verified=[EdgeCheck.from_dict(c) for c in data.get("verified", [])],
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
            graph=dict(data.get("graph") or {}),
        )


@dataclass(repr=False)
class VerifyResult(Shown):
    """Edges patched exactly, one at a time: each edge's metric and effect."""

    result_kind: ClassVar[str] = "verify"

    model: str
    metric: str
    direction: str
    clean: float
    corrupt: float
    edges: list[EdgeCheck]
    seconds: float
    backend: str
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result_kind,
            "model": self.model,
            "metric": self.metric,
            "direction": self.direction,
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "edges": [c.to_dict() for c in self.edges],
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "devices": self.devices,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerifyResult:
        """The exact edge checks a `to_dict` wrote (a stored run), without recomputing
        anything."""
        return cls(
            model=data["model"],
            metric=data["metric"],
            direction=data["direction"],
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            edges=[EdgeCheck.from_dict(c) for c in data["edges"]],
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
        )
