"""What a sweep, an ablation sweep or a single patch returns: the numbers, what they were
computed on, and how (`actpatch.patching.engine`, `.ablation`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor

from actpatch.patching.results.shown import Shown
from actpatch.patching.results.warning import ResultWarning, read_warnings
from actpatch.patching.serial import jsonable, nested, number_of, optional_tensor, tensor_of

if TYPE_CHECKING:
    from actpatch.patching.statistics import Interval


def aligned_positions(data: dict[str, Any]) -> dict[str, Any]:
    """The prompts' tokens and positions a sweep's or an attribution's `to_dict` wrote (what was
    patched, what had no counterpart, what was the same, the alignment), as constructor
    arguments; a file without them reads as empty."""
    return dict(
        clean_tokens=list(data.get("clean_tokens", [])),
        corrupt_tokens=list(data.get("corrupt_tokens", [])),
        patched_positions=list(data.get("patched_positions", [])),
        unpatched_positions=list(data.get("unpatched_positions", [])),
        identical_positions=list(data.get("identical_positions", [])),
        alignment=dict(data.get("alignment", {})),
    )


@dataclass(repr=False)
class SweepResult(Shown):
    """A patching sweep: the metric after each patch, raw and normalized (clean = 1, corrupt = 0).

    `raw[i, j, ...]` is indexed by `axes` (e.g. ("layer", "head")). NaN marks a cell that was
    not patched (a position with no counterpart in the other prompt); `normalized` is all NaN
    when the clean and corrupted metrics are equal, and `note` says so. `backend` names the
    path that computed it ("fast" or "bridge"); `warnings` says what makes the numbers
    doubtful (`actpatch.patching.guardrails`). Over several length groups of a dataset,
    `length_groups` lists them and `tokens` are the first group's.
    """

    # What its JSON's "result" field says it is (`actpatch.read_result` reads it back by it).
    result_kind: ClassVar[str] = "sweep"

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
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
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
        """A JSON-ready dict, as the CLI and the API print it.

        `per_pair=False` leaves out the per-pair values (e.g. a running sweep's snapshots).
        """
        out = {
            "result": self.result_kind,
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
            "devices": self.devices,
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
        return cls(**cls._fields_of(data))

    @staticmethod
    def _fields_of(data: dict[str, Any]) -> dict[str, Any]:
        """The constructor's arguments from what `to_dict` wrote."""
        from actpatch.patching.statistics import Interval

        return dict(
            model=data["model"],
            component=data["component"],
            metric=data["metric"],
            direction=data["direction"],
            axes=tuple(data["axes"]),
            raw=tensor_of(data["raw"]),
            normalized=tensor_of(data["normalized"]),
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            tokens=list(data["tokens"]),
            **aligned_positions(data),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            devices=list(data.get("devices", [])),
            note=data.get("note"),
            warnings=read_warnings(data),
            length_groups=list(data.get("length_groups", [])),
            batching=data.get("batching", "grouped" if data.get("length_groups") else "single"),
            batching_note=data.get("batching_note"),
            per_pair=optional_tensor(data, "per_pair"),
            clean_per_pair=optional_tensor(data, "clean_per_pair"),
            corrupt_per_pair=optional_tensor(data, "corrupt_per_pair"),
            ci=None if data.get("ci") is None else Interval.from_dict(data["ci"]),
            position_convention=data.get("position_convention", "index"),
            position_labels=list(data.get("position_labels", [])),
            complete=bool(data.get("complete", True)),
            values_done=data.get("values_done"),
            values_total=data.get("values_total"),
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TopToken:
        """A top token as a patch's JSON lists it ({"token", "prob"})."""
        return cls(token=data["token"], prob=float(data["prob"]))


@dataclass(repr=False)
class PatchResult(Shown):
    """One patch (e.g. one head): the target's probability and rank in the clean, corrupted and
    patched runs, the recovery, and each run's top tokens; plus the chosen metric."""

    result_kind: ClassVar[str] = "patch"
    # The keys of `index` its JSON spreads among its other fields, in the engine's order.
    index_keys: ClassVar[tuple[str, ...]] = ("layer", "head", "pos")

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
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (what the CLI prints as JSON): the target's probabilities, ranks
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
            "result": self.result_kind,
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
            "devices": self.devices,
            "note": self.note,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PatchResult:
        """The patch a `to_dict` wrote (the CLI's `--out`, a stored run), without recomputing
        anything. The fields the server adds beside them (`cached`, `clean_tokens`, ...) are
        left out; a file without `backend`, `devices`, `note` or `warnings` reads as empty."""

        def tops(key: str) -> list[TopToken]:
            return [TopToken.from_dict(t) for t in data.get(key, [])]

        return cls(
            model=data["model"],
            component=data["component"],
            direction=data["direction"],
            index={k: int(data[k]) for k in cls.index_keys if data.get(k) is not None},
            clean_prob=float(data["clean_prob"]),
            corrupt_prob=float(data["corrupt_prob"]),
            patched_prob=float(data["patched_prob"]),
            recovery_pct=number_of(data.get("recovery_pct")),
            clean_rank=int(data["clean_rank"]),
            corrupt_rank=int(data["corrupt_rank"]),
            patched_rank=int(data["patched_rank"]),
            top_clean=tops("top_clean"),
            top_corrupt=tops("top_corrupt"),
            top_patched=tops("top_patched"),
            metric=data["metric"],
            metric_clean=number_of(data.get("metric_clean")),
            metric_corrupt=number_of(data.get("metric_corrupt")),
            metric_patched=number_of(data.get("metric_patched")),
            metric_normalized=number_of(data.get("metric_normalized")),
            patched_positions=list(data.get("patched_positions", [])),
            tokens=list(data.get("tokens", [])),
            backend=data.get("backend", ""),
            devices=list(data.get("devices", [])),
            note=data.get("note"),
            warnings=read_warnings(data),
        )


@dataclass(repr=False)
class AblationResult(SweepResult):
    """An ablation sweep: the metric after ablating each cell in the clean run.

    The fields of a sweep (its base is the clean run, so `direction` is "noising"), plus how
    each cell was ablated: `ablation` (zero, mean or resample), `reference` (what the value was
    computed from), `seed` and `resample_from` (resampling: pair i took pair
    `resample_from[i]`'s activation).
    """

    result_kind: ClassVar[str] = "ablation"

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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AblationResult:
        """The ablation a `to_dict` wrote: the sweep's fields and how each cell was ablated."""
        return cls(
            **cls._fields_of(data),
            ablation=data["ablation"],
            reference=data.get("reference", ""),
            seed=data.get("seed"),
            resample_from=list(data.get("resample_from", [])),
        )
