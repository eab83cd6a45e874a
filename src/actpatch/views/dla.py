"""Direct logit attribution (DLA): what each head, MLP and the embeddings write straight into
the answer.

The final residual stream is a sum: the embeddings, every attention layer's output (the sum
of its heads' outputs, plus the output projection's bias) and every MLP's output. The metric is
read from it through the final norm and the unembedding. With the norm's scale *frozen* at the
value the run computed (TransformerLens's default in `apply_ln_to_stack`), that read-out is
linear, so each part's share is

    share(part) = (w_f * P(part) / s) . (W_U[:, target] - W_U[:, wrong])

with `P` the norm's centring (LayerNorm; none for RMS norms), `w_f` its weight and `s` the scale
of the run's own final residual. The shares sum exactly to the metric, less a constant (`const`:
the norm's and the unembedding's biases). The approximation is in reading a share as "what this
part does": a part's removal would also move the scale. Models whose attention output is
normed after the heads are summed (Gemma 2/3, OLMo 2) get the same treatment there: each head's
output goes through that norm with its scale frozen too. A final soft-cap (Gemma 2) is not
linear: the shares then sum to the metric before it, and `unexplained` says by how much.

The metric is the logit difference (target minus wrong answer) when a wrong answer is given,
else the target's logit; both are linear read-outs, as DLA needs. Values are averaged over
pairs, at the final position (where the answer is read).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from actpatch.errors import InputError
from actpatch.patching import metrics
from actpatch.patching.experiment import Experiment, check_experiment
from actpatch.patching.results import ResultWarning
from actpatch.views.common import both_runs, warnings
from actpatch.views.results import DirectEffects, DLAResult


@dataclass
class _Parts:
    """One run's residual stream at the final position, in parts (float32, before the final
    norm): heads (layer, head, pairs, d_model), mlp and attn_bias (layer, pairs, d_model),
    embed and the whole residual x (pairs, d_model)."""

    heads: Tensor
    mlp: Tensor
    attn_bias: Tensor
    embed: Tensor
    x: Tensor


@dataclass
class _ReadOut:
    """The final norm (its kind, weight, bias and epsilon) and the unembedding."""

    layernorm: bool
    w: Tensor | None
    b: Tensor | None
    eps: float
    W_U: Tensor  # (d_model, d_vocab)
    b_U: Tensor | None
    softcap: float | None


def _rms(x: Tensor, eps: float) -> Tensor:
    return (x.pow(2).mean(-1, keepdim=True) + eps).sqrt()


def _fast_parts(exp: Experiment, which: str) -> tuple[_Parts, _ReadOut]:
    T = exp.runner
    run = exp.run(which, ["z", "mlp_out", "resid_pre", "resid_post"])
    L, H, dh = T.n_layers, T.n_heads, T.d_head
    spec = T.spec
    heads, mlp, bias = [], [], []
    for layer in range(L):
        lw = T.weights.layers[layer]
        z = run.cache[("z", layer)][:, -1].float()  # (pairs, head, d_head)
        W_O = lw.W_O.float().view(H, dh, -1)
        o = torch.einsum("phd,hde->hpe", z, W_O)  # (head, pairs, d_model)
        b = lw.b_O.float() if lw.b_O is not None else torch.zeros_like(o[0, 0])
        b = b.expand_as(o[0])
        if lw.ln1_post is not None:  # normed after the heads are summed: freeze that scale too
            if spec.norm != "rmsnorm":
                raise InputError(
                    f"{exp.model.name}'s post-attention norm is not an RMS norm; DLA cannot "
                    "freeze its scale.",
                    field="model",
                )
            s = _rms(o.sum(0) + b, spec.norm_eps)  # (pairs, 1)
            o, b = o * lw.ln1_post.w.float() / s, b * lw.ln1_post.w.float() / s
        heads.append(o)
        bias.append(b)
        mlp.append(run.cache[("mlp_out", layer)][:, -1].float())
    parts = _Parts(
        heads=torch.stack(heads),
        mlp=torch.stack(mlp),
        attn_bias=torch.stack(bias),
        embed=run.cache[("resid_pre", 0)][:, -1].float(),
        x=run.cache[("resid_post", L - 1)][:, -1].float(),
    )
    W = T.weights
    read = _ReadOut(
        layernorm=spec.norm == "layernorm",
        w=W.ln_final.w.float(),
        b=W.ln_final.b.float() if W.ln_final.b is not None else None,
        eps=spec.norm_eps,
        W_U=W.W_U.float(),
        b_U=W.b_U.float() if W.b_U is not None else None,
        softcap=spec.final_softcap,
    )
    return parts, read


def _bridge_parts(exp: Experiment, which: str) -> tuple[_Parts, _ReadOut]:
    """The same parts from TransformerLens's own decomposition on its bridge."""
    runner = exp.runner
    bridge, L, H = runner.bridge, runner.n_layers, runner.n_heads
    tokens = exp.clean_tokens if which == "clean" else exp.corrupt_tokens
    with runner.lock, torch.inference_mode():
        _, cache = bridge.run_with_cache(tokens)
        stack = cache.stack_head_results(layer=-1, pos_slice=-1)  # (layer * head, pairs, d)
        heads = stack.float().view(L, H, *stack.shape[1:])
        mlp = torch.stack([cache[f"blocks.{i}.hook_mlp_out"][:, -1] for i in range(L)]).float()
        embed = cache["blocks.0.hook_resid_pre"][:, -1].float()
        x = cache[f"blocks.{L - 1}.hook_resid_post"][:, -1].float()
        try:
            b_O = bridge.b_O.float()  # (layer, d_model)
        except AttributeError:  # a model without output-projection biases
            b_O = torch.zeros(L, x.shape[-1], device=x.device)
    cfg = bridge.cfg
    norm = getattr(bridge.ln_final, "_original_component", bridge.ln_final)
    w = getattr(norm, "weight", None)
    b = getattr(norm, "bias", None)
    parts = _Parts(heads, mlp, b_O[:, None, :].expand(L, *x.shape), embed, x)
    read = _ReadOut(
        layernorm=str(cfg.normalization_type).upper().startswith("LN"),
        w=w.detach().float() if w is not None else None,
        b=b.detach().float() if b is not None else None,
        eps=float(cfg.eps),
        W_U=bridge.W_U.detach().float(),
        b_U=bridge.b_U.detach().float() if getattr(bridge, "b_U", None) is not None else None,
        softcap=getattr(cfg, "output_logits_soft_cap", None) or None,
    )
    return parts, read


def _effects(exp: Experiment, parts: _Parts, read: _ReadOut, metric: str, actual: float):
    """Each part's share of the metric through the frozen final norm, averaged over pairs."""
    t = exp.target_ids
    direction = read.W_U[:, t].T  # (pairs, d_model)
    const = read.b_U[t] if read.b_U is not None else torch.zeros(len(t), device=t.device)
    if metric == "logit_diff":
        assert exp.wrong_ids is not None
        direction = direction - read.W_U[:, exp.wrong_ids].T
        if read.b_U is not None:
            const = const - read.b_U[exp.wrong_ids]
    x = parts.x
    if read.layernorm:
        s = (x.var(-1, unbiased=False, keepdim=True) + read.eps).sqrt()
    else:
        s = _rms(x, read.eps)
    weighted = direction * read.w if read.w is not None else direction  # (pairs, d_model)
    if read.b is not None:
        const = const + direction @ read.b

    def share(part: Tensor) -> Tensor:  # (..., pairs, d_model) -> (...,) mean over pairs
        if read.layernorm:
            part = part - part.mean(-1, keepdim=True)
        return ((part / s) * weighted).sum(-1).mean(-1)

    return DirectEffects(
        heads=share(parts.heads).cpu(),
        mlp=share(parts.mlp).cpu(),
        embed=float(share(parts.embed)),
        attn_bias=share(parts.attn_bias).cpu(),
        const=float(const.float().mean()),
        actual=actual,
    )


def _actual(exp: Experiment, which: str, metric: str) -> float:
    """The model's own metric, mean over pairs: the logit difference, or the target's logit."""
    logits = exp.logits(which).float()
    if metric == "logit_diff":
        assert exp.wrong_ids is not None
        return float(metrics.logit_diff(logits, exp.target_ids, exp.wrong_ids).mean())
    return float(logits.gather(1, exp.target_ids[:, None]).mean())


def direct_logit_attribution(exp: Experiment) -> DLAResult:
    """Every head's, MLP's and the embeddings' direct share of the metric at the final position,
    on the clean and corrupted runs (module docstring)."""
    t0 = time.perf_counter()
    check_experiment(exp)
    metric = "logit_diff" if exp.wrong_ids is not None else "logit"
    fast = exp.backend == "fast"
    if fast:
        both_runs(exp, ["z", "mlp_out", "resid_pre", "resid_post"])  # one batched forward
    found = warnings(exp)
    effects = {}
    softcap = None
    for which in ("clean", "corrupt"):
        parts, read = (_fast_parts if fast else _bridge_parts)(exp, which)
        softcap = read.softcap
        effects[which] = _effects(exp, parts, read, metric, _actual(exp, which, metric))
    note = (
        "The final norm's scale is frozen at each run's own value (TransformerLens's "
        "apply_ln_to_stack), so the shares are linear and sum to the metric less const (the "
        "norm's and unembedding's biases)."
    )
    if softcap:
        found.append(
            ResultWarning(
                "softcap",
                f"{exp.model.name} soft-caps its logits at {softcap}: the shares sum to the "
                "logit difference before the cap, so total and actual differ (unexplained).",
                "model",
            )
        )
    return DLAResult(
        model=exp.model.name,
        backend=exp.backend,
        devices=exp.model.devices,
        metric=metric,
        clean=effects["clean"],
        corrupt=effects["corrupt"],
        n_pairs=exp.n_pairs,
        norm_note=note,
        warnings=found,
        seconds=time.perf_counter() - t0,
    )
