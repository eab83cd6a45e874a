"""A run's title for lists: its kind, its model's short name, what it patched and on which
prompts ("patch · gpt2 · z L8H11 · 'Paris is the capital of' vs 'Berlin is the capital of' →
' France'"). The history stores the label (what and prompts); the page and `actpatch runs
list` put the kind and `short_model_name(model)` before it. Part of `actpatch.history`."""

from __future__ import annotations

from typing import Any


def short_model_name(model: str) -> str:
    """A model as lists name it: a hub id or a folder by its last part ('gpt2' for
    'openai-community/gpt2', 'demo' for '/home/me/models/demo/')."""
    return model.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1] or model


def label_of(kind: str, request: dict[str, Any], result: dict[str, Any]) -> str:
    """A run's title for lists, after its kind and model: what was patched (component, cell,
    method), then the prompts, whole ("z L8H11 · 'Paris is the capital of' vs 'Berlin is the
    capital of' → ' France'"); a list that has no room cuts it, never the label."""
    what = " ".join(part for part in what_ran(kind, request, result) if part)
    return " · ".join(part for part in (what, prompts_of(request)) if part)


def what_ran(kind: str, request: dict[str, Any], result: dict[str, Any]) -> list[str]:
    """What a run of `kind` patched: its component and cell, its method or its edges."""
    component = str(result.get("component") or request.get("component") or "")
    if kind == "patch":
        layer, head, pos = (result.get(k, request.get(k)) for k in ("layer", "head", "pos"))
        cell = f"L{layer}" + ("" if head is None else f"H{head}")
        return [component, cell + ("" if pos is None else f" pos {pos}")]
    if kind == "ablation":
        return [component, f"{result.get('ablation') or request.get('ablate')}-ablation"]
    if kind in ("attribution", "edges"):
        return [str(result.get("method") or request.get("method") or ""), component]
    if kind == "path":
        receivers = result.get("receivers") or request.get("receivers") or "logits"
        if isinstance(receivers, list):
            receivers = ",".join(receivers)
        senders = request.get("senders", "all")
        senders = ",".join(senders) if isinstance(senders, list) else str(senders)
        return [f"senders {senders} → {receivers}"]
    if kind == "evaluation":  # from the result: the API's request and the CLI's differ
        method = result.get("method") or request.get("method")
        by = f" ranked by {method}" if method else ""
        points = result.get("points") or []
        if result.get("mib"):
            return [f"MIB evaluation{by}"]
        if result.get("nodes"):
            return [f"{len(result['nodes'])} nodes"]
        if len(points) > 1:
            return [f"faithfulness curve to {points[-1].get('n_edges')} edges{by}"]
        return [f"{points[0].get('n_edges')} edges" if points else "circuit"]
    if kind == "attention":
        layer, head = (result.get(k, request.get(k)) for k in ("layer", "head"))
        return [f"attention of L{layer}H{head}"]
    if kind == "dla":
        return [f"direct {result.get('metric') or 'logit'} attribution"]
    if kind == "lens":
        return [f"logit lens of {result.get('metric') or request.get('metric') or 'the metric'}"]
    return [component]


def prompts_of(request: dict[str, Any]) -> str:
    """The prompts a run patched: both, and the answer; a dataset by its name."""
    if request.get("dataset"):
        return f"dataset {request['dataset']}"
    if request.get("dataset_jsonl"):
        return "an uploaded dataset"
    clean, corrupt = request.get("clean_prompt"), request.get("corrupt_prompt")
    target = request.get("target_token")
    if isinstance(clean, list):
        return f"{len(clean)} pairs, the first {clean[0]!r}" if clean else ""
    if clean is None:
        return ""
    answer = f" → {target!r}" if isinstance(target, str) else ""
    return f"{clean!r} vs {corrupt!r}{answer}"
