"""What attribution patching returns: every cell's estimated effect and, when asked, the exact
one beside it (`actpatch.patching.attribution`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from torch import Tensor

from actpatch.patching.results.shown import Shown
from actpatch.patching.results.sweeps import aligned_positions
from actpatch.patching.results.warning import ResultWarning, read_warnings
from actpatch.patching.serial import jsonable, nested, number_of, optional_tensor, tensor_of


@dataclass(repr=False)
class AttributionResult(Shown):
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

    result_kind: ClassVar[str] = "attribution"

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
    # The devices the model's weights are on, the embedding's first (several with a device map).
    devices: list[str] = field(default_factory=list)
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
        """A JSON-ready dict, as the CLI and the API print it."""
        out: dict[str, Any] = {
            "result": self.result_kind,
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
            "devices": self.devices,
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

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributionResult:
        """The attribution a `to_dict` wrote (the CLI's `--out`, a stored run), without
        recomputing anything; without a comparison, `exact` and what goes with it are None."""

        return cls(
            model=data["model"],
            component=data["component"],
            method=data["method"],
            metric=data["metric"],
            direction=data["direction"],
            axes=tuple(data["axes"]),
            clean=number_of(data["clean"]),
            corrupt=number_of(data["corrupt"]),
            estimate=tensor_of(data["estimate"]),
            normalized=tensor_of(data["normalized"]),
            score=tensor_of(data["score"]),
            score_kind=data["score_kind"],
            tokens=list(data.get("tokens", [])),
            **aligned_positions(data),
            n_pairs=int(data["n_pairs"]),
            seconds=float(data.get("seconds", 0.0)),
            backend=data.get("backend", ""),
            devices=list(data.get("devices", [])),
            note=data.get("note"),
            warnings=read_warnings(data),
            atp=optional_tensor(data, "atp"),
            corrections=list(data.get("corrections", [])),
            exact=optional_tensor(data, "exact"),
            exact_normalized=optional_tensor(data, "exact_normalized"),
            agreement=data.get("agreement"),
            agreement_atp=data.get("agreement_atp"),
            verified=list(data.get("verified", [])),
        )
