"""What the views return: plain dataclasses of tensors and labels, JSON-ready through `to_dict`.

The JSON field names are a contract (the CLI's `--json` and the API print them): `layer`,
`head`, `tokens`, `corrupt_tokens`, `clean` and `corrupt` for attention; `metric`, `clean` and
`corrupt` as `{"heads", "mlp", "embed", "total", "actual"}` for DLA; `clean` and `corrupt` as
`{"metric", "target_rank", "top"}` and `tokens` for the logit lens; `model`, `backend`,
`warnings` and `seconds` on each. Fields may be added, never renamed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor

from actpatch.patching.results import ResultWarning
from actpatch.patching.results.shown import Shown
from actpatch.patching.results.warning import read_warnings
from actpatch.patching.serial import tensor_of


def _rows(t: Tensor) -> list[Any]:
    """A tensor as nested lists of floats (rounded to 6 significant digits: a pattern's weights
    and a logit's share are not known better than that)."""
    return [float(f"{x:.6g}") for x in t.tolist()] if t.dim() == 1 else [_rows(r) for r in t]


def _tensor(rows: Any) -> Tensor:
    """What `_rows` wrote, as a tensor: float64, which holds each of its 6-digit decimals as the
    JSON does, so that a view read back gives exactly the table its CSV export writes."""
    return tensor_of(rows, torch.float64)


@dataclass(repr=False, frozen=True)
class AttentionResult(Shown):
    """Attention patterns of one layer's heads on the clean and corrupted runs of one pair.

    `clean[i]` and `corrupt[i]` are head `heads[i]`'s pattern, (query position, key position),
    each row summing to 1 over the keys a query may read. For a grouped-query model each query
    head has its own pattern (its key/value head is `kv_heads[i]`).
    """

    # What its JSON's "result" field says it is (`actpatch.read_result` reads it back by it).
    result_kind: ClassVar[str] = "attention"

    model: str
    backend: str
    layer: int
    heads: list[int]
    kv_heads: list[int]
    tokens: list[str]
    corrupt_tokens: list[str]
    clean: Tensor  # (heads, query_pos, key_pos)
    corrupt: Tensor  # (heads, query_pos, key_pos)
    pair: int = 0
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
    # Seconds the view took (its forward passes too, unless the experiment had them cached).
    seconds: float = 0.0

    @property
    def head(self) -> int:
        return self.heads[0]

    def top_attended(self, which: str = "clean", head: int | None = None, k: int = 3) -> list:
        """Per query position, the `k` key positions attended most: [(key_pos, weight)]."""
        pattern = self.clean if which == "clean" else self.corrupt
        i = self.heads.index(self.head if head is None else head)
        values, index = pattern[i].topk(min(k, pattern.shape[-1]), dim=-1)
        return [
            [(int(p), float(w)) for p, w in zip(ps, ws, strict=True) if w > 0]
            for ps, ws in zip(index.tolist(), values.tolist(), strict=True)
        ]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "result": self.result_kind,
            "model": self.model,
            "backend": self.backend,
            "devices": self.devices,
            "layer": self.layer,
            "head": self.head,
            "kv_head": self.kv_heads[0],
            "pair": self.pair,
            "tokens": self.tokens,
            "corrupt_tokens": self.corrupt_tokens,
            "clean": _rows(self.clean[0]),
            "corrupt": _rows(self.corrupt[0]),
            "warnings": [w.to_dict() for w in self.warnings],
            "seconds": round(self.seconds, 4),
        }
        if len(self.heads) > 1:
            out["heads"] = self.heads
            out["by_head"] = [
                {"head": h, "kv_head": g, "clean": _rows(c), "corrupt": _rows(k)}
                for h, g, c, k in zip(
                    self.heads, self.kv_heads, self.clean, self.corrupt, strict=True
                )
            ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttentionResult:
        """The patterns a `to_dict` wrote (the CLI's `--out`, a stored run): every head's, from
        `by_head` when there were several, with the JSON's 6 significant digits."""
        heads = data.get("by_head") or [{**data, "kv_head": data.get("kv_head", data["head"])}]
        return cls(
            model=data["model"],
            backend=data.get("backend", ""),
            layer=int(data["layer"]),
            heads=[int(h["head"]) for h in heads],
            kv_heads=[int(h["kv_head"]) for h in heads],
            tokens=list(data["tokens"]),
            corrupt_tokens=list(data["corrupt_tokens"]),
            clean=_tensor([h["clean"] for h in heads]),
            corrupt=_tensor([h["corrupt"] for h in heads]),
            pair=int(data.get("pair", 0)),
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
            seconds=float(data.get("seconds", 0.0)),
        )


@dataclass(frozen=True)
class DirectEffects:
    """One run's direct contributions to the metric's direction, averaged over pairs.

    `heads[layer, head]`, `mlp[layer]`, `embed` (token and position embeddings), `attn_bias[layer]`
    (the attention output's bias, which no head owns) and `const` (the final norm's and the
    unembedding's biases): their sum is `total`; `actual` is the model's own metric.
    """

    heads: Tensor  # (layer, head)
    mlp: Tensor  # (layer,)
    embed: float
    attn_bias: Tensor  # (layer,)
    const: float
    actual: float
    # The total as computed from the unrounded parts, kept by `from_dict` (the JSON's parts have
    # 6 significant digits, and their sum would not be the total it wrote); None: the parts' sum.
    written_total: float | None = field(default=None, repr=False)

    @property
    def total(self) -> float:
        if self.written_total is not None:
            return self.written_total
        parts = self.heads.sum() + self.mlp.sum() + self.attn_bias.sum()
        return float(parts) + self.embed + self.const

    def to_dict(self) -> dict[str, Any]:
        return {
            "heads": _rows(self.heads),
            "mlp": _rows(self.mlp),
            "embed": self.embed,
            "attn_bias": _rows(self.attn_bias),
            "const": self.const,
            "total": self.total,
            "actual": self.actual,
            "unexplained": self.actual - self.total,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DirectEffects:
        """One run's shares as `to_dict` wrote them, and the total it wrote."""
        mlp = _tensor(data["mlp"])
        bias = data.get("attn_bias")
        return cls(
            heads=_tensor(data["heads"]),
            mlp=mlp,
            embed=float(data["embed"]),
            attn_bias=torch.zeros_like(mlp) if bias is None else _tensor(bias),
            const=float(data.get("const", 0.0)),
            actual=float(data["actual"]),
            written_total=None if data.get("total") is None else float(data["total"]),
        )


@dataclass(repr=False, frozen=True)
class DLAResult(Shown):
    """Direct logit attribution on the clean and corrupted runs, and their difference.

    `metric` is "logit_diff" (target minus wrong answer) or "logit" (the target's logit, when no
    wrong answer is given): a linear read-out of the final residual stream, as DLA needs.
    """

    result_kind: ClassVar[str] = "dla"

    model: str
    backend: str
    metric: str
    clean: DirectEffects
    corrupt: DirectEffects
    n_pairs: int
    norm_note: str
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
    # Seconds the view took (its forward passes too, unless the experiment had them cached).
    seconds: float = 0.0
    # The difference as computed from the unrounded runs, kept by `from_dict` (as `total`);
    # None: computed from `clean` and `corrupt`.
    written_difference: dict[str, Any] | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        c, k = self.clean, self.corrupt
        return {
            "result": self.result_kind,
            "model": self.model,
            "backend": self.backend,
            "devices": self.devices,
            "metric": self.metric,
            "position": "final",
            "n_pairs": self.n_pairs,
            "clean": c.to_dict(),
            "corrupt": k.to_dict(),
            "difference": self.written_difference
            or {
                "heads": _rows(c.heads - k.heads),
                "mlp": _rows(c.mlp - k.mlp),
                "embed": c.embed - k.embed,
                "total": c.total - k.total,
                "actual": c.actual - k.actual,
            },
            "norm": self.norm_note,
            "warnings": [w.to_dict() for w in self.warnings],
            "seconds": round(self.seconds, 4),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DLAResult:
        """The attribution a `to_dict` wrote (the CLI's `--out`, a stored run): each part's
        share with the JSON's 6 significant digits, and the totals and difference it wrote."""
        return cls(
            model=data["model"],
            backend=data.get("backend", ""),
            metric=data["metric"],
            clean=DirectEffects.from_dict(data["clean"]),
            corrupt=DirectEffects.from_dict(data["corrupt"]),
            n_pairs=int(data["n_pairs"]),
            norm_note=data.get("norm", ""),
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
            seconds=float(data.get("seconds", 0.0)),
            written_difference=data.get("difference"),
        )


@dataclass(frozen=True)
class LensRun:
    """The logit lens of one run: per read-out point, the metric (mean over pairs), the target's
    rank and probability and the top tokens (of the first pair)."""

    metric: list[float]
    target_rank: list[int]
    target_prob: list[float]
    top: list[list[str]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "target_rank": self.target_rank,
            "target_prob": self.target_prob,
            "top": self.top,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensRun:
        return cls(
            metric=list(data["metric"]),
            target_rank=list(data["target_rank"]),
            target_prob=list(data.get("target_prob", [])),
            top=[list(t) for t in data["top"]],
        )


@dataclass(repr=False, frozen=True)
class LensResult(Shown):
    """The logit lens on the clean and corrupted runs: `labels[i]` names read-out point i
    (`resid_pre 0` ... `resid_post L-1`, and `resid_mid L` with sub-layers); the last point is the
    model's own output."""

    result_kind: ClassVar[str] = "lens"

    model: str
    backend: str
    metric: str
    labels: list[str]
    tokens: list[str]
    target: str
    clean: LensRun
    corrupt: LensRun
    n_pairs: int
    warnings: list[ResultWarning] = field(default_factory=list)
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
    # Seconds the view took (its forward passes too, unless the experiment had them cached).
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result_kind,
            "model": self.model,
            "backend": self.backend,
            "devices": self.devices,
            "metric": self.metric,
            "labels": self.labels,
            "tokens": self.tokens,
            "target": self.target,
            "n_pairs": self.n_pairs,
            "clean": self.clean.to_dict(),
            "corrupt": self.corrupt.to_dict(),
            "warnings": [w.to_dict() for w in self.warnings],
            "seconds": round(self.seconds, 4),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LensResult:
        """The logit lens a `to_dict` wrote (the CLI's `--out`, a stored run)."""
        return cls(
            model=data["model"],
            backend=data.get("backend", ""),
            metric=data["metric"],
            labels=list(data["labels"]),
            tokens=list(data.get("tokens", [])),
            target=data["target"],
            clean=LensRun.from_dict(data["clean"]),
            corrupt=LensRun.from_dict(data["corrupt"]),
            n_pairs=int(data["n_pairs"]),
            warnings=read_warnings(data),
            devices=list(data.get("devices", [])),
            seconds=float(data.get("seconds", 0.0)),
        )
