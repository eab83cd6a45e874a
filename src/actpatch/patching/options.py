"""Every option list of the engine, written once: its choices, what each means, its default.

The CLI's choices and help, the API's schemas (their literals and defaults), the page's drop-downs
(through `GET /models`'s `options`) and the core's own checks all derive from these (and from
`components.COMPONENTS`). This module imports nothing heavy, so the command line can build its
parser without loading torch.

- *Denoising* patches clean activations into the corrupted run (is this activation sufficient
  to restore the behaviour?); *noising* patches corrupted activations into the clean run (is it
  necessary?).
- Metrics are read at the final position; see `actpatch.patching.metrics` for how each is
  computed and normalized.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any

from actpatch.errors import InputError

METRICS: dict[str, str] = {
    "logit_diff": "logit(target) - logit(wrong)",
    "prob": "probability of the target",
    "logprob": "log-probability of the target",
    "rank": "rank of the target among all tokens (1 = top)",
}

DIRECTIONS: dict[str, str] = {
    "denoising": "clean activations into the corrupted run",
    "noising": "corrupted activations into the clean run",
}


def check_metric(metric: str | None, has_wrong: bool) -> str:
    """The metric to use: the one asked for, else logit_diff with a wrong answer, else prob."""
    if metric is None:
        return "logit_diff" if has_wrong else "prob"
    if metric not in METRICS:
        raise InputError(
            f"Unknown metric {metric!r}. Choose one of: {', '.join(METRICS)}.", field="metric"
        )
    if metric == "logit_diff" and not has_wrong:
        raise InputError(
            "The logit_diff metric needs a wrong answer (the answer the corrupted prompt calls "
            "for, e.g. ' John'); give one, or choose the prob metric.",
            field="wrong_token",
        )
    return metric


def check_direction(direction: str) -> str:
    """The direction, checked: denoising (clean into corrupted) or noising (the reverse)."""
    if direction not in DIRECTIONS:
        raise InputError(
            f"Unknown direction {direction!r}. Choose "
            + " or ".join(f"{name!r} ({what})" for name, what in DIRECTIONS.items())
            + ".",
            field="direction",
        )
    return direction


# Attribution patching (`actpatch.patching.attribution`) and ablation (`.ablation`).
ATTRIBUTION_METHODS: dict[str, str] = {
    "atp": "attribution patching: (source - base) . gradient, one backward pass",
    "atp*": "AtP* (Kramar et al. 2024): QK fix for queries and keys, and GradDrop",
}
GRADIENT_METRICS = ("logit_diff", "logprob", "prob")  # rank has no gradient
ABLATIONS: dict[str, str] = {
    "zero": "set to 0",
    "mean": "set to its mean over the experiment's prompts, position by position",
    "resample": "set to another pair's clean activation (seeded)",
}

# Circuits: edge attribution (`actpatch.patching.edges`) and circuit evaluation (`.circuit`).
EDGE_METHODS: dict[str, str] = {
    "eap": "edge attribution patching: the gradient at the base run",
    "eap-ig": "EAP with integrated gradients along the path between the runs' embeddings",
    "eap-ig-act": "EAP-IG over activations (MIB's EAP-IG-activations): each layer's writers "
    "moved in turn along the path between the runs' outputs",
}
KV_CONVENTIONS: dict[str, str] = {
    "ungrouped": "each query head has its own <k> and <v> readers (MIB's and EAP-IG's convention)",
    "grouped": "one <k> and one <v> reader per key/value head (a{L}.kv{G}<k>), the model's own",
}
CIRCUIT_ABLATIONS: dict[str, str] = {
    "corrupt": "ablated writers take their corrupted-run output (patching from the other run)",
    "mean": "ablated writers take their mean output over every prompt, clean and corrupted",
}
EDGE_FORMATS: dict[str, str] = {
    "actpatch": "actpatch's own JSON",
    "mib": "MIB's importance-score file (cfg, nodes, edges with score and in_graph)",
}

# Datasets: the columns of a position-resolved sweep, and how pairs of several lengths batch.
POSITIONS: dict[str, str] = {
    "auto": "role over pairs of several token lengths, else index",
    "index": "token positions",
    "role": "the roles the pairs name (IO, S1, S2, END, ... in ioi datasets)",
}
BATCHINGS: dict[str, str] = {
    "auto": "left-pad together the length groups that recompute alike: the same numbers, never "
    "slower",
    "padded": "all length groups in one batch",
    "grouped": "one sweep per length",
}
BACKENDS: dict[str, str] = {
    "auto": "the fast path when it covers the model, else the bridge",
    "fast": "the engine's own forward pass",
    "bridge": "any model TransformerLens can wrap",
}

# Defaults, each said once. `None` means "chosen from the input", and `DEFAULT_WHEN` says how.
DEFAULT_DIRECTION = "denoising"
DEFAULT_COMPONENT = "z"
DEFAULT_ATTRIBUTION_METHOD = "atp"
DEFAULT_EDGE_METHOD = "eap-ig"
DEFAULT_KV = "ungrouped"
DEFAULT_CIRCUIT_ABLATION = "corrupt"
DEFAULT_EDGE_FORMAT = "actpatch"
DEFAULT_POSITIONS = "auto"
DEFAULT_BATCHING = "auto"
DEFAULT_BACKEND = "auto"
DEFAULT_STEPS = 5  # EAP-IG's interpolation steps
DEFAULT_METRIC_WHEN = "logit_diff when a wrong answer is given, else prob"


@dataclass(frozen=True)
class Option:
    """One option: its choices (name -> what it means) and its default (None: from the input)."""

    choices: dict[str, str]
    default: str | None
    default_when: str | None = None

    def help(self) -> str:
        """The choices and the default in one line, for a help text or a description."""
        said = "; ".join(f"{name}: {what}" for name, what in self.choices.items())
        default = self.default if self.default is not None else self.default_when
        return f"{said} (default: {default})" if default else said


OPTIONS: dict[str, Option] = {
    "metric": Option(METRICS, None, DEFAULT_METRIC_WHEN),
    "gradient_metric": Option({m: METRICS[m] for m in GRADIENT_METRICS}, None, DEFAULT_METRIC_WHEN),
    "direction": Option(DIRECTIONS, DEFAULT_DIRECTION),
    "attribution_method": Option(ATTRIBUTION_METHODS, DEFAULT_ATTRIBUTION_METHOD),
    "ablation": Option(ABLATIONS, None, "none: patch instead of ablating"),
    "edge_method": Option(EDGE_METHODS, DEFAULT_EDGE_METHOD),
    "kv": Option(KV_CONVENTIONS, DEFAULT_KV),
    "circuit_ablation": Option(CIRCUIT_ABLATIONS, DEFAULT_CIRCUIT_ABLATION),
    "edge_format": Option(EDGE_FORMATS, DEFAULT_EDGE_FORMAT),
    "positions": Option(POSITIONS, DEFAULT_POSITIONS),
    "batching": Option(BATCHINGS, DEFAULT_BATCHING),
    "backend": Option(BACKENDS, DEFAULT_BACKEND),
}


def catalog() -> dict[str, Any]:
    """Every option as JSON, for `GET /models`: {name: {choices, default, default_when}}."""
    return {
        name: {"choices": dict(o.choices), "default": o.default, "default_when": o.default_when}
        for name, o in OPTIONS.items()
    }


def check_choice(option: str, value: str, field: str | None = None) -> str:
    """`value` if it is one of `option`'s choices, else an InputError naming them."""
    choices = OPTIONS[option].choices
    if value not in choices:
        raise InputError(
            f"Unknown {field or option} {value!r}. Choose one of: "
            + "; ".join(f"{name!r} ({what})" for name, what in choices.items())
            + ".",
            field=field or option,
        )
    return value


def check_ablation_direction(ablation: str | None, direction: str | None) -> None:
    """Refuse a direction given with an ablation: an ablation always acts on the clean run."""
    if ablation is not None and direction is not None:
        raise InputError(
            "An ablation always replaces activations in the clean run (the one that shows the "
            "behaviour), so it has no direction: leave out the direction, or leave out the "
            "ablation to patch.",
            field="direction",
        )


def check_index(size: int, axis: str, value: Any, allowed: str = "") -> int:
    """`value` as an index 0 to `size - 1` (a layer, head, position, pair); a teaching error for
    one out of range or not a whole number."""
    try:  # any whole number: int, numpy's (a DataFrame's cell), a 0-d integer tensor
        value = operator.index(value)
    except TypeError:
        raise InputError(
            f"{axis} {value!r} is a {type(value).__name__}: give a whole number, 0 to {size - 1}.",
            field=axis,
        ) from None
    if not 0 <= value < size:
        allowed = allowed or f"this model has {axis}s 0 to {size - 1}"
        raise InputError(
            f"{axis} {value} is out of range: {allowed}.",
            field=axis,
        )
    return value
