"""Reproduction reports: published findings about a model, beside our numbers for them.

`reproduce_ioi` runs, on GPT-2 small, the experiments of TransformerLens's activation-patching
demo (its eight IOI prompts; each corrupted prompt is the adjacent clean prompt, with the names
swapped, so the corrupted logit difference is exactly minus the clean one), plus path patching
of the circuit that Wang et al. 2022 found, and prints each finding beside ours with its
tolerance and where the reference value comes from.

The references are about GPT-2 small, and are shown only for it. On any other model (`demo`,
SmolLM2, a local folder) the report runs the same experiments and reports what they find there,
without reference numbers: the clean and corrupted logit differences, the *handoff layer* (the
first layer from which patching the residual stream at the final position restores more than
patching it at S2: where the answer's information moves), the heads with the largest effects,
and by role, as path patching finds them (direct effects on the logits, the heads feeding the
strongest one's query, and those feeding theirs' values). `references=True` shows GPT-2 small's
values on another model too (a model of its shape, say), where a head's index means something
else and agreement is not expected; a row about a layer or head the model lacks is then "n/a".
The prompts are the TL demo's when their names are single tokens of one length for the served
model's tokenizer; otherwise eight pairs of one IOI template drawn for that tokenizer
(`actpatch.datasets.ioi`), as the report's notes say.

Reference values:
- "TL demo": TransformerLens, demos/Activation_Patching_in_TL_Demo.ipynb, the outputs stored
  in the notebook (github.com/TransformerLensOrg/TransformerLens, commit 4cd36aa): its printed
  logit differences and the values of its resid_pre, attn_head_out (all positions) and per-block
  heatmaps. The notebook ran GPT-2 small on a GPU; our engine equals TransformerLens's patching
  functions to 1e-4, so the tolerance (0.02 normalized, 0.01 logits) only absorbs hardware and
  float-order differences.
- "Wang et al.": `actpatch.known_roles.CITATION`, Section 3 (path patching from each head to the
  logits finds the name movers, 9.9, 9.6, 10.0, and the negative name movers, 10.7 and 11.10; to
  the name movers' queries, the S-inhibition heads; to the S-inhibition heads' values, the
  induction and duplicate-token heads). The paper measured these on its ABC distribution, not on
  these eight name-swapped prompts, so the report checks ranks, not values; each row says which
  rank counts as agreeing.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from actpatch.errors import ModelUnavailableError
from actpatch.known_roles import CITATION, ROLES, is_gpt2_small

IOI_DEMO_PROMPTS = (
    "When John and Mary went to the shops, John gave the bag to",
    "When John and Mary went to the shops, Mary gave the bag to",
    "When Tom and James went to the park, James gave the ball to",
    "When Tom and James went to the park, Tom gave the ball to",
    "When Dan and Sid went to the shops, Sid gave an apple to",
    "When Dan and Sid went to the shops, Dan gave an apple to",
    "After Martin and Amy went to the park, Amy gave a drink to",
    "After Martin and Amy went to the park, Martin gave a drink to",
)
IOI_DEMO_ANSWERS = (
    (" Mary", " John"),
    (" John", " Mary"),
    (" Tom", " James"),
    (" James", " Tom"),
    (" Dan", " Sid"),
    (" Sid", " Dan"),
    (" Martin", " Amy"),
    (" Amy", " Martin"),
)
TL_DEMO = (
    "TransformerLens demos/Activation_Patching_in_TL_Demo.ipynb (commit 4cd36aa), stored outputs"
)
WANG = f"{CITATION}, Section 3"
OURS = "this model's own experiments (no published values for it)"
# Path patching effects (normalized) below this are reported as none: no head to follow.
MEANINGFUL = 0.01

# The TL demo's stored heatmaps, at the positions the findings are about (normalized).
RESID_PRE_S2 = (1.0, 1.0007, 1.0011, 1.0003, 0.9949, 0.9676, 0.9675, 0.9228)  # layers 0-7
RESID_PRE_END = {9: 0.9384, 10: 1.0048, 11: 0.9914}
HEAD_OUT = {(10, 7): -0.4799, (5, 5): 0.3435, (8, 6): 0.3186, (9, 9): 0.2636, (11, 10): -0.2782}
MLP0_S2 = 0.8508
CLEAN_LOGIT_DIFF = 3.5519


@dataclass
class Finding:
    """One published finding: the reference, ours, the tolerance and whether they agree
    (None when ours cannot be computed on this model)."""

    name: str
    reference: str
    ours: str
    tolerance: str
    agree: bool | None
    source: str
    value: float | None = None  # ours, as a number, where it is one

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reference": self.reference,
            "ours": self.ours,
            "value": None if self.value is None or math.isnan(self.value) else self.value,
            "tolerance": self.tolerance,
            "agree": self.agree,
            "source": self.source,
        }


@dataclass
class ReproductionReport:
    """Each finding of a study beside ours, on the model the report was run on."""

    study: str
    model: str
    reference_model: str
    findings: list[Finding]
    seconds: float
    backend: str
    notes: list[str] = field(default_factory=list)
    warnings: list[Any] = field(default_factory=list)

    @property
    def is_reference_model(self) -> bool:
        return is_gpt2_small(self.model)

    def counts(self) -> tuple[int, int, int]:
        """(agree, disagree, not applicable)."""
        agree = sum(f.agree is True for f in self.findings)
        disagree = sum(f.agree is False for f in self.findings)
        return agree, disagree, len(self.findings) - agree - disagree

    def to_dict(self) -> dict[str, Any]:
        agree, disagree, na = self.counts()
        return {
            "study": self.study,
            "model": self.model,
            "reference_model": self.reference_model,
            "is_reference_model": self.is_reference_model,
            "has_references": self.has_references,
            "findings": [f.to_dict() for f in self.findings],
            "agree": agree,
            "disagree": disagree,
            "not_applicable": na,
            "notes": self.notes,
            "seconds": round(self.seconds, 4),
            "backend": self.backend,
            "warnings": [w.to_dict() for w in self.warnings],
        }

    @property
    def has_references(self) -> bool:
        """Whether the findings carry published values (else they are this model's own)."""
        return any(f.source != OURS for f in self.findings)

    def text(self) -> str:
        """The report as a table for a terminal."""
        if not self.has_references:
            lines = [
                f"{self.study} experiments on {self.model} ({self.backend} path): what they "
                "find on this model (no published values for it)",
                *[f"note: {n}" for n in self.notes],
                "",
                *[f"  {f.name:<48} {f.ours}" for f in self.findings],
                f"\nthe report took {self.seconds:.1f} s",
            ]
            return "\n".join(lines)
        lines = [
            f"{self.study} reproduction on {self.model} ({self.backend} path); findings are "
            f"about {self.reference_model}",
            *[f"note: {n}" for n in self.notes],
            "",
            f"  {'finding':<44} {'reference':>16} {'ours':>16} {'tolerance':<22} agree",
        ]
        sources: dict[str, int] = {}
        for f in self.findings:
            mark = {True: "yes", False: "NO", None: "n/a"}[f.agree]
            n = sources.setdefault(f.source, len(sources) + 1)
            lines.append(
                f"  {f.name:<44} {f.reference:>16} {f.ours:>16} {f.tolerance:<22} {mark} [{n}]"
            )
        agree, disagree, na = self.counts()
        lines.append(f"\n{agree} agree, {disagree} disagree, {na} not applicable")
        lines.append("sources:")
        lines += [f"  [{n}] {source}" for source, n in sources.items()]
        lines.append(f"\nthe report took {self.seconds:.1f} s")
        return "\n".join(lines)


def ioi_prompts() -> dict[str, list[str]]:
    """The TL demo's prompt pairs as keyword arguments for `Experiment`: each corrupted prompt
    is the adjacent clean prompt (0 <-> 1, 2 <-> 3, ...), with the answers kept."""
    swap = [i + 1 if i % 2 == 0 else i - 1 for i in range(len(IOI_DEMO_PROMPTS))]
    return {
        "clean": list(IOI_DEMO_PROMPTS),
        "corrupt": [IOI_DEMO_PROMPTS[j] for j in swap],
        "target": [a for a, _ in IOI_DEMO_ANSWERS],
        "wrong": [b for _, b in IOI_DEMO_ANSWERS],
    }


def _load(model: Any, device: str) -> Any:
    from actpatch.models import LoadedModel, load_model

    if isinstance(model, LoadedModel):
        return model
    spec = model or "gpt2"
    try:
        return load_model(spec, device=device)
    except ModelUnavailableError as exc:
        if not is_gpt2_small(spec):
            raise
        raise ModelUnavailableError(
            "The IOI reproduction is about GPT-2 small, and its weights could not be loaded "
            f"here.\n{exc.message}\nThe report can also run on another model (give it as the "
            "model, e.g. 'demo'): every experiment then runs on that model and the report says "
            "what it finds there, without GPT-2 small's published values (ask for the "
            "references to see them beside it anyway).",
            field="model",
        ) from None


def _num(value: float, digits: int = 4) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:+.{digits}f}"


def _close(name: str, ref: float, ours: float | None, tol: float, source: str) -> Finding:
    if ours is None or math.isnan(ours):
        return Finding(name, _num(ref), "n/a", f"+-{tol:g}", None, source)
    return Finding(
        name, _num(ref), _num(ours), f"+-{tol:g}", abs(ours - ref) <= tol, source, float(ours)
    )


def _rank_finding(
    name: str, heads: tuple[tuple[int, int], ...], ranked: list[str] | None, within: int, how: str
) -> Finding:
    """Whether every head of `heads` is among the first `within` of `ranked` sender names."""
    wanted = [f"a{layer}.h{head}" for layer, head in heads]
    reference = ", ".join(f"{layer}.{head}" for layer, head in heads)
    tolerance = f"all in the top {within}"
    if ranked is None:
        return Finding(name, reference, "n/a", tolerance, None, WANG)
    ranks = [ranked.index(w) + 1 if w in ranked else None for w in wanted]
    shown = ", ".join(f"#{r}" if r is not None else "-" for r in ranks)
    agree = all(r is not None and r <= within for r in ranks)
    return Finding(f"{name} ({how})", reference, shown, tolerance, agree, WANG)


def _prompts_for(loaded: Any) -> tuple[dict[str, list[str]], str | None]:
    """The TL demo's prompt pairs if the served tokenizer reads their names as single tokens
    and their prompts at one length; else eight pairs of one template drawn for it, and a note
    saying so."""
    prompts = ioi_prompts()
    names = {a for pair in IOI_DEMO_ANSWERS for a in pair}
    single = all(len(loaded.to_tokens(n, prepend_bos=False)) == 1 for n in names)
    lengths = {len(loaded.to_tokens(p)) for p in IOI_DEMO_PROMPTS}
    if single and len(lengths) == 1:
        return prompts, None
    from actpatch.datasets import ioi

    data = ioi(8, seed=0, same_length=True, tokenizer=loaded.tokenizer)
    assert data.wrong is not None
    note = (
        "the TL demo's names are not all single tokens of one prompt length for this model's "
        f"tokenizer, so the report runs eight IOI pairs of one template drawn for it ({data.name})"
    )
    return {
        "clean": data.clean,
        "corrupt": data.corrupt,
        "target": data.target,
        "wrong": data.wrong,
    }, note


def _ours(name: str, value: str, number: float | None = None) -> Finding:
    """A finding of this model's own, with no reference to agree with."""
    return Finding(name, "-", value, "-", None, OURS, number)


def _top_heads(values: Any, k: int, sign: float) -> str:
    """The k heads with the largest (sign * value), or |value| with sign 0, as 'L.H (+0.42)',
    from a (layer, head) or flat-over-heads tensor of normalized effects."""
    flat = values.reshape(-1)
    n_heads = values.shape[-1] if values.dim() == 2 else 0
    key = flat.abs() if sign == 0 else sign * flat
    order = key.argsort(descending=True)[:k].tolist()
    out = []
    for i in order:
        where = f"{i // n_heads}.{i % n_heads}" if n_heads else str(i)
        out.append(f"{where} ({float(flat[i]):+.2f})")
    return ", ".join(out)


def _handoff_layer(resid: Any, s2: int, end: int) -> int | None:
    """The first layer whose resid_pre patch at the final position restores more than at S2."""
    for layer in range(resid.normalized.shape[0]):
        if float(resid.normalized[layer, end]) > float(resid.normalized[layer, s2]):
            return layer
    return None


def _qualitative(exp: Any, resid: Any, heads: Any, mlp: Any, s2: int, end: int) -> list[Finding]:
    """What the experiments find on a model without published values: the handoff layer and the
    heads with the largest effects, overall and by role (path patching)."""
    from actpatch.patching.paths import path_patch

    handoff = _handoff_layer(resid, s2, end)
    findings = [
        _ours("clean logit difference", _num(resid.clean), resid.clean),
        _ours("corrupted logit difference", _num(resid.corrupt), resid.corrupt),
        _ours(
            "handoff layer (resid_pre: S2 -> end)",
            f"L{handoff}" if handoff is not None else "none",
            float(handoff) if handoff is not None else None,
        ),
        _ours(f"MLP0 output at S2 (pos {s2})", _num(float(mlp.normalized[0, s2]))),
        _ours("largest head effects (all positions)", _top_heads(heads.normalized, 3, +1.0)),
        _ours("most negative head effects", _top_heads(heads.normalized, 3, -1.0)),
    ]
    to_logits = path_patch(exp, "all", "logits").normalized
    findings += [
        _ours("direct effect on the logits (name-mover-like)", _top_heads(to_logits, 3, +1.0)),
        _ours("most negative direct effect", _top_heads(to_logits, 3, -1.0)),
    ]
    n_heads = to_logits.shape[1]
    mover = int(to_logits.reshape(-1).argmax())
    layer, head = divmod(mover, n_heads)
    if layer > 0:
        into_q = path_patch(exp, "all", f"{layer}.{head}.q").normalized
        strongest = float(into_q.abs().max())
        shown = _top_heads(into_q, 3, 0) if strongest >= MEANINGFUL else "none"
        findings.append(_ours(f"heads feeding {layer}.{head}'s query", shown))
        inhibitor = int(into_q.reshape(-1).abs().argmax())
        i_layer, i_head = divmod(inhibitor, n_heads)
        if i_layer > 0 and strongest >= MEANINGFUL:
            into_v = path_patch(exp, "all", f"{i_layer}.{i_head}.v").normalized
            findings.append(
                _ours(f"heads feeding {i_layer}.{i_head}'s value", _top_heads(into_v, 3, 0))
            )
    return findings


def reproduce_ioi(
    model: Any = None, *, device: str = "cpu", references: bool | None = None
) -> ReproductionReport:
    """Run the TL demo's IOI experiments and Wang et al.'s path patching; compare each finding
    with its published value on GPT-2 small, or report what they find on another model.
    `model`: a name, a folder, a loaded model; default GPT-2 small. `references`: show GPT-2
    small's values (default: only on GPT-2 small)."""
    from actpatch.patching.engine import sweep
    from actpatch.patching.experiment import Experiment
    from actpatch.patching.paths import path_patch

    t0 = time.perf_counter()
    loaded = _load(model, device)
    if references is None:
        references = is_gpt2_small(loaded.name)
    prompts, prompt_note = _prompts_for(loaded) if not references else (ioi_prompts(), None)
    exp = Experiment(
        loaded, prompts["clean"], prompts["corrupt"], prompts["target"], prompts["wrong"]
    )
    n_layers, n_heads = loaded.n_layers, loaded.n_heads
    s2, end = exp.first_diff, exp.clean_tokens.shape[1] - 1
    resid = sweep(exp, "resid_pre")
    heads = sweep(exp, "z")
    mlp = sweep(exp, "mlp_out")
    if not references:
        return ReproductionReport(
            study="ioi",
            model=loaded.name,
            reference_model=loaded.name,
            findings=_qualitative(exp, resid, heads, mlp, s2, end),
            seconds=time.perf_counter() - t0,
            backend=exp.backend,
            notes=[
                f"{loaded.name} is not GPT-2 small: the report shows what the IOI experiments "
                "find on it, without reference values (GPT-2 small's apply to GPT-2 small)",
                *([prompt_note] if prompt_note else []),
            ],
            warnings=resid.warnings,
        )
    findings = [
        _close("clean logit difference", CLEAN_LOGIT_DIFF, resid.clean, 0.01, TL_DEMO),
        _close("corrupted logit difference", -CLEAN_LOGIT_DIFF, resid.corrupt, 0.01, TL_DEMO),
    ]

    def at(result: Any, *index: int) -> float | None:
        sizes = result.normalized.shape
        if any(not 0 <= i < n for i, n in zip(index, sizes, strict=True)):
            return None
        return float(result.normalized[index])

    for layer, ref in enumerate(RESID_PRE_S2):
        name = f"resid_pre L{layer} at S2 (pos {s2})"
        findings.append(_close(name, ref, at(resid, layer, s2), 0.02, TL_DEMO))
    for layer, ref in RESID_PRE_END.items():
        name = f"resid_pre L{layer} at the end (pos {end})"
        findings.append(_close(name, ref, at(resid, layer, end), 0.02, TL_DEMO))
    for (layer, head), ref in HEAD_OUT.items():
        name = f"head output L{layer}H{head} (all positions)"
        findings.append(_close(name, ref, at(heads, layer, head), 0.02, TL_DEMO))
    findings.append(_close(f"MLP0 output at S2 (pos {s2})", MLP0_S2, at(mlp, 0, s2), 0.02, TL_DEMO))

    # Wang et al.'s roles, by path patching from every head.
    def exists(role: str) -> bool:
        return all(layer < n_layers and head < n_heads for layer, head in ROLES[role][1])

    def ranked(receivers: list[str], sign: float | None = None) -> list[str] | None:
        if not receivers:
            return None
        result = path_patch(exp, "all", receivers)
        effect = result.normalized.flatten()  # denoising: 0 is the unpatched run
        if sign is None:
            order = effect.abs().argsort(descending=True)
        else:
            order = (sign * effect).argsort(descending=True)
        return [result.senders[i] for i in order.tolist()]

    name_movers = ROLES["name mover"][1]
    s_inhibition = ROLES["S-inhibition"][1]
    to_logits = exists("name mover") and exists("negative name mover")
    positive = ranked(["logits"], +1.0) if to_logits else None
    negative = ranked(["logits"], -1.0) if to_logits else None
    into_nm = (
        ranked([f"{layer}.{head}.q" for layer, head in name_movers])
        if exists("name mover") and exists("S-inhibition")
        else None
    )
    into_si = (
        ranked([f"{layer}.{head}.v" for layer, head in s_inhibition])
        if exists("S-inhibition") and exists("induction") and exists("duplicate token")
        else None
    )
    findings += [
        _rank_finding("name movers", name_movers, positive, 5, "-> logits, most positive"),
        _rank_finding(
            "negative name movers",
            ROLES["negative name mover"][1],
            negative,
            3,
            "-> logits, most negative",
        ),
        _rank_finding("S-inhibition heads", s_inhibition, into_nm, 8, "-> name movers' q"),
        _rank_finding("induction heads", ROLES["induction"][1], into_si, 12, "-> S-inh. v"),
        _rank_finding(
            "duplicate-token heads", ROLES["duplicate token"][1], into_si, 12, "-> S-inh. v"
        ),
    ]
    notes = []
    if not is_gpt2_small(loaded.name):
        notes.append(
            f"{loaded.name} is not GPT-2 small: the references are GPT-2 small's, so "
            "disagreement is expected; rows about layers or heads it lacks are n/a"
        )
    return ReproductionReport(
        study="ioi",
        model=loaded.name,
        reference_model="GPT-2 small",
        findings=findings,
        seconds=time.perf_counter() - t0,
        backend=exp.backend,
        notes=notes,
        warnings=resid.warnings,
    )


__all__ = [
    "IOI_DEMO_ANSWERS",
    "IOI_DEMO_PROMPTS",
    "Finding",
    "ReproductionReport",
    "ioi_prompts",
    "reproduce_ioi",
]
