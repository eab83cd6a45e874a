"""What a sweep or a single patch returns: the numbers, what they were computed on, and how."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from torch import Tensor

from actpatch.patching.serial import jsonable, nested, tensor_of

if TYPE_CHECKING:
    from actpatch.patching.statistics import Interval


@dataclass(frozen=True)
class ResultWarning:
    """Something about the experiment that makes its numbers doubtful, and how to fix it."""

    code: str
    message: str
    field: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "field": self.field, "message": self.message}


@dataclass
class SweepResult:
    """A patching sweep: the metric after each patch, raw and normalized (clean = 1, corrupt = 0).

    `raw[i, j, ...]` is indexed by `axes` (e.g. ("layer", "head")). NaN marks a cell that was
    not patched (a position with no counterpart in the other prompt); `normalized` is all NaN
    when the clean and corrupted metrics are equal, and `note` says so. `backend` names the
    path that computed it ("fast" or "bridge"); `warnings` says what makes the numbers
    doubtful (`actpatch.patching.guardrails`). Over several length groups of a dataset,
    `length_groups` lists them and `tokens` are the first group's.
    """

    model: str
    component: str
    metric: str
    direction: str
    axes: tuple[str, ...]
    raw: Tensor
    normalized: Tensor
    clean: float
    corrupt: float
    tokens: list[str]
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    patched_positions: list[int]
    unpatched_positions: list[int]
    identical_positions: list[int]
    alignment: dict[str, Any]
    n_pairs: int
    seconds: float
    backend: str
    note: str | None = None
    warnings: list[ResultWarning] = field(default_factory=list)
    length_groups: list[dict[str, int]] = field(default_factory=list)
    # Per pair (issue 11): raw metric per pair after each cell's patch, (pairs, *axes), and each
    # pair's unpatched clean and corrupted metric, (pairs,). `ci`: None with a single pair.
    per_pair: Tensor | None = None
    clean_per_pair: Tensor | None = None
    corrupt_per_pair: Tensor | None = None
    ci: Interval | None = None
    # "index": the pos axis is token positions of the patched run (labels: `tokens`); "role":
    # it is named roles of the pairs (IO, S1, S2, END, ...), labels in `position_labels`.
    position_convention: str = "index"
    position_labels: list[str] = field(default_factory=list)
    # False for a snapshot taken while the sweep runs (unfinished cells are NaN), with how many
    # (cell, pair) values are computed of how many.
    complete: bool = True
    values_done: int | None = None
    values_total: int | None = None
    # How the pairs were batched: "single" (one token length), "grouped" (one sweep per length
    # group, `length_groups`) or "padded" (every group left-padded into one batch: the same
    # numbers, usually faster); `batching_note` says why, when a dataset was not padded.
    batching: str = "single"
    batching_note: str | None = None

    def top(self, k: int = 10) -> list[tuple[tuple[int, ...], float]]:
        """The k cells whose patch moved the metric most, with their normalized (else raw) value.

        The effect is measured from the unpatched run: 0 when denoising (the corrupted run),
        1 when noising (the clean run).
        """
        if not self.normalized.isnan().all():
            values = self.normalized
            unpatched = 0.0 if self.direction == "denoising" else 1.0
        else:
            values = self.raw
            unpatched = self.corrupt if self.direction == "denoising" else self.clean
        flat = values.flatten()
        effect = (flat - unpatched).nan_to_num(0.0)
        order = effect.abs().argsort(descending=True)[:k]
        shape = values.shape
        out = []
        for i in order.tolist():
            index, rest = [], i
            for size in reversed(shape):
                index.append(rest % size)
                rest //= size
            out.append((tuple(reversed(index)), float(flat[i])))
        return out

    def to_dict(self, *, per_pair: bool = True) -> dict[str, Any]:
        """A JSON-ready dict, as the CLI's --json and the API print it.

        `per_pair=False` leaves out the per-pair values (e.g. a running sweep's snapshots).
        """
        out = {
            "model": self.model,
            "component": self.component,
            "metric": self.metric,
            "direction": self.direction,
            "axes": list(self.axes),
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "raw": nested(self.raw),
            "normalized": nested(self.normalized),
            "tokens": self.tokens,
            "clean_tokens": self.clean_tokens,
            "corrupt_tokens": self.corrupt_tokens,
            "patched_positions": self.patched_positions,
            "unpatched_positions": self.unpatched_positions,
            "identical_positions": self.identical_positions,
            "alignment": self.alignment,
            "n_pairs": self.n_pairs,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
            "length_groups": self.length_groups,
            "batching": self.batching,
            "batching_note": self.batching_note,
            "position_convention": self.position_convention,
            "position_labels": self.position_labels,
            "ci": None if self.ci is None else self.ci.to_dict(),
            "complete": self.complete,
        }
        if not self.complete:
            out["values_done"], out["values_total"] = self.values_done, self.values_total
        if per_pair:
            out["per_pair"] = None if self.per_pair is None else nested(self.per_pair)
            out["clean_per_pair"] = _optional(self.clean_per_pair)
            out["corrupt_per_pair"] = _optional(self.corrupt_per_pair)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepResult:
        """The result a `to_dict` wrote (e.g. a stored run), without recomputing anything."""
        from actpatch.patching.statistics import Interval

        def optional(key: str) -> Tensor | None:
            value = data.get(key)
            return None if value is None else tensor_of(value)

        return cls(
            model=data["model"],
            component=data["component"],
            metric=data["metric"],
            direction=data["direction"],
            axes=tuple(data["axes"]),
            raw=tensor_of(data["raw"]),
            normalized=tensor_of(data["normalized"]),
            clean=math.nan if data["clean"] is None else float(data["clean"]),
            corrupt=math.nan if data["corrupt"] is None else float(data["corrupt"]),
            tokens=list(data["tokens"]),
            clean_tokens=list(data.get("clean_tokens", [])),
            corrupt_tokens=list(data.get("corrupt_tokens", [])),
            patched_positions=list(data.get("patched_positions", [])),
            unpatched_positions=list(data.get("unpatched_positions", [])),
            identical_positions=list(data.get("identical_positions", [])),
            alignment=dict(data.get("alignment", {})),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            note=data.get("note"),
            warnings=[ResultWarning(**w) for w in data.get("warnings", [])],
            length_groups=list(data.get("length_groups", [])),
            batching=data.get("batching", "grouped" if data.get("length_groups") else "single"),
            batching_note=data.get("batching_note"),
            per_pair=optional("per_pair"),
            clean_per_pair=optional("clean_per_pair"),
            corrupt_per_pair=optional("corrupt_per_pair"),
            ci=None if data.get("ci") is None else Interval.from_dict(data["ci"]),
            position_convention=data.get("position_convention", "index"),
            position_labels=list(data.get("position_labels", [])),
            complete=bool(data.get("complete", True)),
        )

    def axis_labels(self) -> list[list[str]]:
        """Each axis's labels, for tables and exports: L0.., H0.., tokens or role names."""
        labels = []
        for axis, size in zip(self.axes, self.raw.shape, strict=True):
            if axis == "layer":
                labels.append([f"L{i}" for i in range(size)])
            elif axis == "head":
                labels.append([f"H{i}" for i in range(size)])
            elif self.position_convention == "role":
                labels.append(list(self.position_labels))
            else:
                labels.append([f"{i} {t!r}" for i, t in enumerate(self.tokens[:size])])
        return labels


def _optional(t: Tensor | None) -> Any:
    return None if t is None else nested(t)


@dataclass
class TopToken:
    token: str
    prob: float


@dataclass
class PatchResult:
    """One patch (e.g. one head): the target's probability and rank in the clean, corrupted and
    patched runs, the recovery, and each run's top tokens; plus the chosen metric."""

    model: str
    component: str
    direction: str
    index: dict[str, int]
    clean_prob: float
    corrupt_prob: float
    patched_prob: float
    recovery_pct: float  # NaN when clean and corrupted probabilities are equal
    clean_rank: int
    corrupt_rank: int
    patched_rank: int
    top_clean: list[TopToken]
    top_corrupt: list[TopToken]
    top_patched: list[TopToken]
    metric: str
    metric_clean: float
    metric_corrupt: float
    metric_patched: float
    metric_normalized: float
    patched_positions: list[int]
    tokens: list[str]
    backend: str
    note: str | None = None
    warnings: list[ResultWarning] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the CLI's --json prints): the target's probabilities, ranks
        and each run's top tokens first, then what else was computed and on which model."""

        def tops(items: list[TopToken]) -> list[dict[str, Any]]:
            return [{"token": t.token, "prob": t.prob} for t in items]

        return {
            "clean_prob": self.clean_prob,
            "corrupt_prob": self.corrupt_prob,
            "patched_prob": self.patched_prob,
            "recovery_pct": jsonable(self.recovery_pct),
            "clean_rank": self.clean_rank,
            "corrupt_rank": self.corrupt_rank,
            "patched_rank": self.patched_rank,
            "top_clean": tops(self.top_clean),
            "top_corrupt": tops(self.top_corrupt),
            "top_patched": tops(self.top_patched),
            "model": self.model,
            "component": self.component,
            "direction": self.direction,
            **self.index,
            "metric": self.metric,
            "metric_clean": jsonable(self.metric_clean),
            "metric_corrupt": jsonable(self.metric_corrupt),
            "metric_patched": jsonable(self.metric_patched),
            "metric_normalized": jsonable(self.metric_normalized),
            "patched_positions": self.patched_positions,
            "tokens": self.tokens,
            "backend": self.backend,
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
        }


@dataclass
class AttributionResult:
    """Attribution patching (AtP or AtP*): every cell's estimated metric change, and, when asked,
    the exact change beside it.

    `estimate[i, j, ...]` has the axes of the exact sweep of the same component, in raw metric
    units: the predicted change of the metric when that cell is patched (positive: the metric
    rises). `normalized` divides it by clean - corrupt (so, denoising, 1 is the whole gap
    recovered). `score` is what cells are ranked by: |estimate| for AtP, GradDrop's magnitude for
    AtP* (`score_kind` says which). NaN marks a cell the exact sweep would not patch (a position
    with no counterpart in the other prompt). For AtP*, `atp` is plain AtP's estimate and
    `corrections` the cells whose magnitude AtP* changed most. With a comparison, `exact` is the
    exact metric change of every cell's patch (the sweep's raw value minus the unpatched run's),
    `exact_normalized` the same over clean - corrupt, and `agreement` measures the estimate
    against it (`agreement_atp` plain AtP's, for AtP*). `verified` lists the cells patched
    exactly after screening, with both values.
    """

    model: str
    component: str
    method: str
    metric: str
    direction: str
    axes: tuple[str, ...]
    clean: float
    corrupt: float
    estimate: Tensor
    normalized: Tensor
    score: Tensor
    score_kind: str
    tokens: list[str]
    clean_tokens: list[str]
    corrupt_tokens: list[str]
    patched_positions: list[int]
    unpatched_positions: list[int]
    identical_positions: list[int]
    alignment: dict[str, Any]
    n_pairs: int
    seconds: float
    backend: str
    note: str | None = None
    warnings: list[ResultWarning] = field(default_factory=list)
    atp: Tensor | None = None
    corrections: list[dict[str, Any]] = field(default_factory=list)
    exact: Tensor | None = None
    exact_normalized: Tensor | None = None
    agreement: dict[str, Any] | None = None
    agreement_atp: dict[str, Any] | None = None
    verified: list[dict[str, Any]] = field(default_factory=list)

    def top(self, k: int = 10) -> list[tuple[tuple[int, ...], float]]:
        """The k cells ranked first (by `score`), with their estimate."""
        flat = self.score.flatten().nan_to_num(-1.0)
        out = []
        for i in flat.argsort(descending=True)[:k].tolist():
            index, rest = [], i
            for size in reversed(self.score.shape):
                index.append(rest % size)
                rest //= size
            cell = tuple(reversed(index))
            out.append((cell, float(self.estimate[cell])))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, as the CLI's --json and the API print it."""
        out: dict[str, Any] = {
            "model": self.model,
            "component": self.component,
            "method": self.method,
            "metric": self.metric,
            "direction": self.direction,
            "axes": list(self.axes),
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "estimate": nested(self.estimate),
            "normalized": nested(self.normalized),
            "score": nested(self.score),
            "score_kind": self.score_kind,
            "tokens": self.tokens,
            "clean_tokens": self.clean_tokens,
            "corrupt_tokens": self.corrupt_tokens,
            "patched_positions": self.patched_positions,
            "unpatched_positions": self.unpatched_positions,
            "identical_positions": self.identical_positions,
            "alignment": self.alignment,
            "n_pairs": self.n_pairs,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
            "atp": nested(self.atp) if self.atp is not None else None,
            "corrections": self.corrections,
            "verified": self.verified,
        }
        if self.exact is not None:
            out["exact"] = nested(self.exact)
            out["exact_normalized"] = (
                nested(self.exact_normalized) if self.exact_normalized is not None else None
            )
            out["agreement"] = self.agreement
            out["agreement_atp"] = self.agreement_atp
        return out


@dataclass
class AblationResult(SweepResult):
    """An ablation sweep: the metric after ablating each cell in the clean run.

    The fields of a sweep (its base is the clean run, so `direction` is "noising"), plus how
    each cell was ablated: `ablation` (zero, mean or resample), `reference` (what the value was
    computed from), `seed` and `resample_from` (resampling: pair i took pair
    `resample_from[i]`'s activation).
    """

    ablation: str = "zero"
    reference: str = ""
    seed: int | None = None
    resample_from: list[int] = field(default_factory=list)

    def to_dict(self, *, per_pair: bool = True) -> dict[str, Any]:
        return {
            **super().to_dict(per_pair=per_pair),
            "ablation": self.ablation,
            "reference": self.reference,
            "seed": self.seed,
            "resample_from": self.resample_from,
        }


@dataclass
class PathPatchResult:
    """Path patching (Wang et al. 2022): the metric when only the receivers see each sender's
    change. `raw[layer, head]` when the senders are every head, else one value per sender
    (`senders` names them, EAP-IG style: 'a9.h9', 'm0'). Normalized: clean = 1, corrupted = 0.
    """

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
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
        }


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


@dataclass
class CircuitResult:
    """Circuit evaluation: the clean run with every edge outside the circuit ablated.

    `points` holds one circuit, or a faithfulness curve (the top n edges of a ranking for each
    n). `ablation` says what replaced an ablated writer: the corrupted run's output, or the
    mean over every prompt.
    """

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
            "warnings": [w.to_dict() for w in self.warnings],
        }


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


@dataclass
class EdgeResult:
    """Edge attribution (EAP or EAP-IG): every edge of the graph with its score, strongest
    (by magnitude) first: `names[i]` scores `scores[i]` (`by_pos[i]` per position, when kept).
    `edges` gives them as `EdgeScore`s. `verified` holds the top edges patched exactly, when
    asked for."""

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
            "warnings": [w.to_dict() for w in self.warnings],
        }


@dataclass
class VerifyResult:
    """Edges patched exactly, one at a time: each edge's metric and effect."""

    model: str
    metric: str
    direction: str
    clean: float
    corrupt: float
    edges: list[EdgeCheck]
    seconds: float
    backend: str
    warnings: list[ResultWarning] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "metric": self.metric,
            "direction": self.direction,
            "clean": jsonable(self.clean),
            "corrupt": jsonable(self.corrupt),
            "edges": [c.to_dict() for c in self.edges],
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "warnings": [w.to_dict() for w in self.warnings],
        }
