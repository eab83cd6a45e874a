"""Time actpatch's circuit methods against TransformerLens, and size their memory.

Random-weight models the size of GPT-2 small (12 layers, 12 heads, d_model 768, GPT-2's
vocabulary; `random_models.py`): GPT-2, a Llama (4 KV heads) and a GPT-NeoX/Pythia (parallel
residual), on the 15-token IOI pair:

- path patching on GPT-2, all 144 senders -> logits, and -> one head's q, k and v, against a
  loop of TransformerLens hook runs (the definition, one sender at a time: freeze every head's
  hook_z at the corrupted run's value, give the sender the clean run's, read the logits; for
  q/k/v record the receiver's input in that run and patch it into a fresh corrupted run);
- EAP over every edge and EAP-IG with 5 steps on each model (on the Llama also EAP with
  `kv="grouped"`), in *forward-equivalents*: the time divided by the time of one plain forward
  pass of the prompt on our own fast path, cold (a fresh experiment each time: its two cached
  runs included) and warm;
- on GPT-2 and GPT-NeoX, EAP against TransformerLens 4.3's edge-level `attribution_patch`:
  both times, the ratio and the largest difference between the scores.

Then, in a child process (its peak memory its own), a Llama-3.2-1B-shaped model (16 layers,
32 heads, 8 KV heads, d_model 2048, d_mlp 8192, vocabulary 128256, float32): EAP-IG with 5
steps over the whole graph on the IOI pair (and on 16 copies of it, to check the memory
model): time and peak resident memory. Last, `eap_ig_memory`, a model of EAP-IG's memory from a
Llama-shaped model's sizes, against those peaks, and its figure for a Llama-3.1-8B-shaped
model in bfloat16 on one 80 GB GPU.

    python benchmarks/bench_circuits.py [--models gpt2,llama,neox] [--repeats 3] [--skip-tl]
                                        [--all-tl] [--only paths|edges] [--skip-1b]
                                        [--check-pairs 16] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformer_lens.tools.analysis import attribution_patching as tla

import actpatch
from actpatch.models import LoadedModel
from actpatch.patching.edges import edge_attribution
from actpatch.patching.graph import parse_senders
from actpatch.patching.paths import path_patch
from circuit_memory import fresh, one_billion, print_memory, print_one_billion
from random_models import build

# the forward-equivalents each method should stay under (issue 16), on GPT-2 and on the others
TARGETS = {"gpt2": {"eap": 3.0, "eap-ig": 8.0}, "other": {"eap": 3.5, "eap-ig": 8.0}}
GIB = 2**30


def best(fn: Callable[[], object], repeats: int) -> tuple[float, float, object]:
    """(best, median) seconds of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), statistics.median(times), result


def tl_path_loop(bridge, exp, receiver: tuple[int, int, str] | None) -> torch.Tensor:
    """Path patching by a loop of TransformerLens hook runs, one sender at a time (senders that
    cannot reach the receiver, in or after its layer, are skipped: their answer is the base's)."""
    n_layers, n_heads = exp.model.n_layers, exp.model.n_heads
    mary, john = int(exp.target_ids[0]), int(exp.wrong_ids[0])
    with torch.no_grad():
        _, base = bridge.run_with_cache(exp.corrupt_tokens)
        _, source = bridge.run_with_cache(exp.clean_tokens)
        base_ld = float((lambda lg: lg[0, -1, mary] - lg[0, -1, john])(bridge(exp.corrupt_tokens)))
    out = torch.full((n_layers, n_heads), base_ld)
    for s in parse_senders("all", n_layers, n_heads):
        if receiver is not None and s.layer >= receiver[0]:
            continue

        def freeze(act, hook, s=s):
            layer = int(hook.name.split(".")[1])
            new = base[hook.name].clone()
            if layer == s.layer:
                new[:, :, s.head] = source[hook.name][:, :, s.head]
            return new

        hooks = [(f"blocks.{i}.attn.hook_z", freeze) for i in range(n_layers)]
        with torch.no_grad():
            if receiver is None:
                logits = bridge.run_with_hooks(exp.corrupt_tokens, fwd_hooks=hooks)
            else:
                layer, head, qkv = receiver
                name = f"blocks.{layer}.attn.hook_{qkv}"
                record, patch = _record_and_patch(head)
                bridge.run_with_hooks(exp.corrupt_tokens, fwd_hooks=[*hooks, (name, record)])
                logits = bridge.run_with_hooks(exp.corrupt_tokens, fwd_hooks=[(name, patch)])
        out[s.layer, s.head] = float(logits[0, -1, mary] - logits[0, -1, john])
    return out


def _record_and_patch(head: int) -> tuple[Callable, Callable]:
    """Two hooks: one records a head's slice of an activation, the other patches it back in."""
    seen: dict[str, torch.Tensor] = {}

    def record(act, hook):
        seen["x"] = act[:, :, head].clone()
        return act

    def patch(act, hook):
        act = act.clone()
        act[:, :, head] = seen["x"]
        return act

    return record, patch


def time_paths(model: LoadedModel, args: argparse.Namespace) -> None:
    """Path patching from all 144 heads to the logits and to head 9.9's q, k and v, against a
    loop of TransformerLens hook runs."""
    exp = fresh(model)
    bridge = model.bridge()
    for receiver in [None, (9, 9, "q"), (9, 9, "k"), (9, 9, "v")]:
        label = "logits" if receiver is None else f"{receiver[0]}.{receiver[1]}.{receiver[2]}"
        ours, median, result = best(
            lambda label=label: path_patch(fresh(model), "all", label), args.repeats
        )
        assert isinstance(result, actpatch.patching.results.PathPatchResult)
        line = (
            f"\npath patching, 144 senders -> {label}\n"
            f"  actpatch          {ours:8.3f} s  (best of {args.repeats}, cold; median "
            f"{median:.3f} s)"
        )
        same_as_q = receiver is not None and receiver[2] != "q" and not args.all_tl
        if same_as_q:
            line += (
                "\n  TransformerLens   (its loop does the same work as for q; --all-tl times it)"
            )
        if not args.skip_tl and not same_as_q:
            t0 = time.perf_counter()
            reference = tl_path_loop(bridge, exp, receiver)
            tl_time = time.perf_counter() - t0
            diff = float((result.raw - reference).abs().max())
            line += (
                f"\n  TransformerLens   {tl_time:8.3f} s  (a loop of hook runs)\n"
                f"  speed-up          {tl_time / ours:8.1f}x   (target 20x)\n"
                f"  max |difference|  {diff:.2e} (logit difference)"
            )
        print(line, flush=True)


def tl_edges(model: LoadedModel, eap: actpatch.patching.results.EdgeResult, ours: float) -> str:
    """TransformerLens 4.3's edge-level `attribution_patch` on the IOI pair, against our EAP
    scores `eap` (computed in `ours` seconds): both times, the ratio, the largest difference.
    Its scores are per position: summed over them, by our edge names."""
    exp = fresh(model)
    bridge = model.bridge()
    mary, john = int(exp.target_ids[0]), int(exp.wrong_ids[0])  # type: ignore[index]

    def metric(logits: torch.Tensor) -> torch.Tensor:
        return logits[0, -1, mary] - logits[0, -1, john]

    params = list(bridge.parameters())  # TransformerLens differentiates through the weights
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        t0 = time.perf_counter()
        with torch.enable_grad():
            reference = tla.attribution_patch(
                bridge,
                exp.clean_tokens,
                exp.corrupt_tokens,
                metric,
                tla.EdgeAttributionConfig(granularity="edge"),
            )
        tl_time = time.perf_counter() - t0
    finally:
        for p, flag in zip(params, before, strict=True):
            p.requires_grad_(flag)
    summed: dict[str, float] = {}
    for (w, r), score in reference.edge_scores.items():
        key = f"{_name(w)}->{_name(r)}"
        summed[key] = summed.get(key, 0.0) + score
    unmatched = len(set(eap.names) ^ set(summed))
    scale = max(abs(v) for v in summed.values())
    worst = max(
        abs(score - summed.get(name, float("nan")))
        for name, score in zip(eap.names, eap.scores, strict=True)
    )
    line = (
        f"\n  TransformerLens   {tl_time:8.3f} s  (attribution_patch, granularity='edge', "
        f"{len(summed)} edges)\n"
        f"  speed-up          {tl_time / ours:8.1f}x   (target 10x)\n"
        f"  max |difference|  {worst:.2e} = {worst / scale:.2e} of the largest score"
    )
    if unmatched:
        line += f"\n  edges in one answer only: {unmatched}"
    return line


def time_edges(kind: str, model: LoadedModel, args: argparse.Namespace) -> dict[str, float]:
    """EAP (on a grouped-query model also with grouped key/value readers) and EAP-IG with 5
    steps, in forward-equivalents, cold and warm; EAP against TransformerLens on GPT-2 and
    GPT-NeoX. Returns each method's cold forward-equivalents."""
    exp = fresh(model)
    runner, tokens = exp.runner, exp.corrupt_tokens

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return runner.unembed(runner.run(runner.embed(tokens)))

    forward()
    t_forward, _, _ = best(forward, 10)
    print(
        f"\none forward pass (fast path, 1 x {tokens.shape[1]} tokens): {t_forward * 1000:.1f} ms",
        flush=True,
    )

    def equivalents(fn: Callable[[], object]) -> tuple[float, float, object]:
        """(best seconds, median forward-equivalents, last result): each timing divided by a
        forward timed just before it, so a busy host's drift cancels out; the median, so one
        disturbed forward does not decide it."""
        seconds, ratios, result = [], [], None
        for _ in range(args.repeats):
            unit, _, _ = best(forward, 3)
            t0 = time.perf_counter()
            result = fn()
            seconds.append(time.perf_counter() - t0)
            ratios.append(seconds[-1] / unit)
        return min(seconds), statistics.median(ratios), result

    targets = TARGETS["gpt2" if kind == "gpt2" else "other"]
    variants = [("eap", "ungrouped")]
    if model.n_kv_heads != model.n_heads:
        variants.append(("eap", "grouped"))
    variants.append(("eap-ig", "ungrouped"))
    summary: dict[str, float] = {}
    for method, kv in variants:

        def run(e: actpatch.Experiment, method: str = method, kv: str = kv) -> object:
            return edge_attribution(e, method, steps=5, kv=kv)

        ours, ratio, result = equivalents(lambda: run(fresh(model)))
        assert isinstance(result, actpatch.patching.results.EdgeResult)
        warm_exp = fresh(model)
        run(warm_exp)  # the experiment keeps its two runs, as the API's does
        warm, warm_ratio, _ = equivalents(lambda e=warm_exp: run(e))
        label = "EAP" if method == "eap" else "EAP-IG, 5 steps"
        if kv == "grouped":
            label += ", kv='grouped'"
        line = (
            f"\n{label}, {len(result.names)} edges\n"
            f"  actpatch          {ours:8.3f} s  (best of {args.repeats}, cold) = {ratio:.2f} "
            f"forward-equivalents (median; target <= {targets[method]:g})\n"
            f"  warm              {warm:8.3f} s  (the two runs already cached) = "
            f"{warm_ratio:.2f} forward-equivalents"
        )
        if method == "eap" and kind in ("gpt2", "neox") and not args.skip_tl:
            line += tl_edges(model, result, ours)
        print(line, flush=True)
        summary[label] = ratio
    return summary


# -- the 1B model, in a child process ----------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="gpt2,llama,neox", help="GPT-2-small-sized models: gpt2,llama,neox"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of ours")
    parser.add_argument("--skip-tl", action="store_true", help="time only actpatch")
    parser.add_argument(
        "--all-tl",
        action="store_true",
        help="also time TransformerLens's loop for the k and v receivers (the same work as q)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for both sides (default: torch's own; 1 is steadier on a busy host)",
    )
    parser.add_argument(
        "--only",
        choices=["paths", "edges"],
        default=None,
        help="time only path patching (GPT-2), or only edge attribution",
    )
    parser.add_argument(
        "--skip-1b", action="store_true", help="skip the Llama-3.2-1B-shaped model's EAP-IG"
    )
    parser.add_argument(
        "--check-pairs",
        type=int,
        default=16,
        help="the 1B model's EAP-IG also on this many copies of the pair (memory check; 1: no)",
    )
    parser.add_argument("--one-billion-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.one_billion_child:
        print(json.dumps(one_billion(args.check_pairs)))
        return

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    summary: dict[str, dict[str, float]] = {}
    for kind in args.models.split(","):
        if args.only == "paths" and kind != "gpt2":
            continue  # path patching is timed on GPT-2 only
        model = build(kind)
        print(
            f"\n== {model.name}: {model.n_layers} layers, {model.n_heads} heads "
            f"({model.n_kv_heads} KV), d_model {model.d_model}, vocabulary {model.d_vocab}",
            flush=True,
        )
        if kind == "gpt2" and args.only != "edges":
            time_paths(model, args)
        if args.only != "paths":
            summary[model.name] = time_edges(kind, model, args)
    child = None
    if not args.skip_1b and args.only != "paths":
        print(
            "\n== random Llama-3.2-1B-shaped (16 layers, 32 heads, 8 KV heads, d_model 2048, "
            "d_mlp 8192, vocabulary 128256), float32, in a child process; load average "
            f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            flush=True,
        )
        extra = ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one-billion-child",
                "--check-pairs",
                str(args.check_pairs),
                *extra,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:  # e.g. killed for memory: say so, and go on to the model
            print(f"  the child failed ({done.returncode}):\n{done.stderr[-2000:]}")
        else:
            child = json.loads(done.stdout.strip().splitlines()[-1])
            print_one_billion(child)
    if args.only != "paths":
        print_memory(child)
    if summary:
        print("\nforward-equivalents, cold (median):")
        for name, figures in summary.items():
            print(f"  {name}: " + ", ".join(f"{k} {v:.2f}" for k, v in figures.items()))
    print(f"\nload average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def _name(node: tla.Node) -> str:
    """TransformerLens's node as our (position-free) node name."""
    if node.kind == "embed":
        return "input"
    if node.kind == "logits":
        return "logits"
    if node.kind in ("mlp_out", "mlp_in"):
        return f"m{node.layer}"
    if node.kind == "attn_head_out":
        return f"a{node.layer}.h{node.head}"
    return f"a{node.layer}.h{node.head}<{node.kind[0]}>"


if __name__ == "__main__":
    main()
