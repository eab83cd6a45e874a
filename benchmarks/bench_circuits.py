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
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from transformer_lens.tools.analysis import attribution_patching as tla

import actpatch
from actpatch.models import LoadedModel
from actpatch.patching.cells import DEFAULT_MAX_MEMORY
from actpatch.patching.edges import edge_attribution
from actpatch.patching.graph import parse_senders
from actpatch.patching.paths import path_patch
from random_models import CLEAN, CORRUPT, LLAMA_1B, build

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


def fresh(model: LoadedModel, pairs: int = 1) -> actpatch.Experiment:
    """A new experiment on the IOI pair (`pairs` copies of it): nothing cached, so a timing of
    it includes its two runs."""
    if pairs == 1:
        return actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    return actpatch.Experiment(model, [CLEAN] * pairs, [CORRUPT] * pairs, " Mary", " John")


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


def _rss() -> float:
    """This process's resident memory now, in GiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 2**20
    return float("nan")


def _peak() -> float:
    """This process's peak resident memory (since the last `_reset_peak`), in GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB


def _reset_peak() -> bool:
    """Start the peak resident memory afresh (Linux 4.0+: /proc/self/clear_refs); whether it
    could."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def one_billion(check_pairs: int) -> dict[str, object]:
    """The Llama-3.2-1B-shaped model's EAP-IG (5 steps, whole graph) on the IOI pair, then on
    `check_pairs` copies of it: each one's time and peak resident memory."""
    out: dict[str, object] = {"rss_start_gib": _rss()}
    t0 = time.perf_counter()
    model = build("llama1b")
    out.update(
        build_s=time.perf_counter() - t0,
        n_params=model.n_params,
        rss_built_gib=_rss(),
        peak_build_gib=_peak(),
    )
    runs = []
    for pairs in (1, check_pairs) if check_pairs > 1 else (1,):
        gc.collect()
        own = _reset_peak()
        exp = fresh(model, pairs)
        rss_before = _rss()
        t0 = time.perf_counter()
        result = edge_attribution(exp, "eap-ig", steps=5)
        seconds = time.perf_counter() - t0
        runs.append(
            {
                "pairs": pairs,
                "seconds": seconds,
                "edges": len(result.names),
                "tokens": len(result.tokens),
                "positions": len(result.tokens) - result.first_diff,
                "rss_before_gib": rss_before,
                "peak_gib": _peak(),
                "peak_is_own": own,
            }
        )
        del exp, result
    out["runs"] = runs
    return out


def print_one_billion(child: dict) -> None:
    """The child's figures: the 1B model's build, and each EAP-IG run's time and peak."""
    print(
        f"  {child['n_params'] / 1e9:.2f} B parameters, built in {child['build_s']:.1f} s "
        f"(peak RSS {child['peak_build_gib']:.2f} GiB, {child['rss_built_gib']:.2f} GiB after)"
    )
    for r in child["runs"]:
        print(
            f"  EAP-IG, 5 steps, {r['edges']} edges, {r['pairs']} x {r['tokens']} tokens: "
            f"{r['seconds']:.2f} s; peak RSS {r['peak_gib']:.2f} GiB"
            + ("" if r["peak_is_own"] else " (the whole process's: could not reset it)")
        )
    whole = max(child["peak_build_gib"], *(r["peak_gib"] for r in child["runs"]))
    print(f"  peak RSS of the whole process: {whole:.2f} GiB")


# -- a model of EAP-IG's memory ----------------------------------------------------------------


@dataclass(frozen=True)
class LlamaShape:
    """The sizes of a Llama-shaped model that EAP-IG's memory depends on."""

    name: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    d_mlp: int
    vocab: int
    tied: bool

    @property
    def n_params(self) -> int:
        d, dh = self.d_model, self.d_model // self.n_heads
        attention = d * 2 * (self.n_heads + self.n_kv_heads) * dh  # W_Q, W_K, W_V, W_O
        per_layer = attention + 3 * d * self.d_mlp + 2 * d  # gated MLP, two norms
        return self.vocab * d * (1 if self.tied else 2) + self.n_layers * per_layer + d


SHAPE_1B = LlamaShape(
    "Llama-3.2-1B",
    n_layers=LLAMA_1B["num_hidden_layers"],
    n_heads=LLAMA_1B["num_attention_heads"],
    n_kv_heads=LLAMA_1B["num_key_value_heads"],
    d_model=LLAMA_1B["hidden_size"],
    d_mlp=LLAMA_1B["intermediate_size"],
    vocab=LLAMA_1B["vocab_size"],
    tied=LLAMA_1B["tie_word_embeddings"],
)
SHAPE_8B = LlamaShape("Llama-3.1-8B", 32, 32, 8, 4096, 14336, 128256, tied=False)
# the graph's edge names and a result's lists, in Python objects (measured: 142-154 bytes an
# edge on the 1B and 8B shapes)
HOST_BYTES_PER_EDGE = 150


def eap_ig_memory(
    shape: LlamaShape,
    *,
    item: int,
    pairs: int,
    tokens: int,
    positions: int,
    steps: int = 5,
    kv: str = "ungrouped",
    host: bool = True,
) -> dict[str, float]:
    """The bytes EAP-IG over the whole graph of a Llama-shaped model holds: each term of
    `edges.edge_attribution` and its peak ("peak").

    `item`: bytes a weight takes (4 float32, 2 bfloat16); `tokens`: the prompts' length;
    `positions`: those the gradient run covers (from the first that differs); `host`: count
    the graph's Python objects (on a GPU they are in host memory). Transients are added, not
    taken in turns: what one phase frees the allocator keeps (glibc's heap on a CPU,
    PyTorch's caching allocator on a GPU). Checked against the 1B model's measured peak
    resident memory (`one_billion`, `print_memory`): 1-3% under it.
    """
    L, H, K, d, f = shape.n_layers, shape.n_heads, shape.n_kv_heads, shape.d_model, shape.d_mlp
    dh = d // H
    kv_in = H if kv == "ungrouped" else K  # <k> and <v> readers of a layer
    rp = pairs * positions  # each per-edge tensor holds a d_model vector per pair-position
    writers = 1 + L * (H + 1)
    readers = 1 + L * (H + 2 * kv_in + 1)
    # each reader reads every writer before it (an MLP also its layer's heads), logits all
    edges = (
        sum((H + 2 * kv_in) * (1 + layer * (H + 1)) + 1 + layer * (H + 1) + H for layer in range(L))
        + writers
    )
    wide = item < 4  # bfloat16/float16: some intermediates are float32 copies
    t: dict[str, float] = {}
    t["weights"] = shape.n_params * item
    # split.Parts, per layer: W_Q, W_K, W_V laid out per head (a copy in the model's dtype)
    # and read backwards through the norm's scale (float32)
    t["Parts' W_Q/K/V copies"] = L * (H + 2 * K) * dh * d * (item + 4)
    # the experiment's two cached runs: resid_pre, rot_k, v, z and mlp_out at every token
    t["cached runs"] = 2 * pairs * tokens * L * (2 * d + 2 * K * dh + H * dh) * item
    t["writer deltas"] = writers * rp * d * item  # (writers, pairs, pos, d_model)
    # one gradient run covers as many interpolation points as reader_grads' budget allows
    per_step = item * rp * L * d * (16 + 3 * H)
    chunk = min(steps, max(1, DEFAULT_MAX_MEMORY // per_step))
    n_runs = -(-steps // chunk)
    # float32 (readers, pairs, pos, d_model); two while a later run's share is added
    copies = 2 if n_runs > 1 else 1
    t[f"reader gradients (x{copies})"] = readers * rp * d * 4 * copies
    row_pos = chunk * rp
    # per layer and row-position: the hooked activations and, after the backward, their
    # gradients (resid_pre, q, k and v per reader, mlp_in, resid_post) ...
    kept = (3 * d + (H + 2 * kv_in) * dh) * item
    # ... and what autograd saves besides: rotated q and k; the MLP's gate, SiLU(gate) and up;
    # the attention pattern (float32, and a copy in the model's dtype); the RMS norms' input
    # in float32. The backward frees these a layer at a time as the gradients fill in.
    saved = ((H + kv_in) * dh + 3 * f) * item + H * tokens * (4 + item * wide) + 2 * d * 4 * wide
    logits = 2 * chunk * pairs * shape.vocab * item  # the final position's, and their gradient
    t["gradient run"] = row_pos * L * (kept + max(saved, kept)) + logits
    # after it, its activations and gradients; one layer's input gradients of every reader
    t["kept activations and gradients"] = row_pos * L * 2 * kept
    t["one layer's reader gradients"] = (H + 2 * kv_in) * row_pos * d * (4 + item * wide)
    t["graph and result (host)"] = edges * HOST_BYTES_PER_EDGE if host else 0
    t["peak"] = sum(t.values())
    t["edges"], t["gradient runs"], t["points per run"] = edges, n_runs, chunk
    return t


def print_memory(child: dict | None) -> None:
    """The memory model against the 1B model's measured peaks, and its 8B figures."""
    print("\n== a model of EAP-IG's memory (eap_ig_memory), 5 steps, whole graph, ungrouped")
    if child is not None:
        # the process as built (Python, the libraries, the weights as transformers leaves
        # them) stands in for the model's weights term
        built = float(child["rss_built_gib"]) * GIB  # type: ignore[arg-type]
        for r in child["runs"]:  # type: ignore[attr-defined]
            m = eap_ig_memory(
                SHAPE_1B, item=4, pairs=r["pairs"], tokens=r["tokens"], positions=r["positions"]
            )
            predicted = built + m["peak"] - m["weights"]
            measured = r["peak_gib"] * GIB
            print(
                f"  1B, float32, {r['pairs']} x {r['tokens']} tokens ({r['positions']} "
                f"positions run): predicted peak {predicted / GIB:.2f} GiB (the process as "
                f"built, {built / GIB:.2f} GiB, + {(m['peak'] - m['weights']) / GIB:.2f} GiB), "
                f"measured {measured / GIB:.2f} GiB: {100 * (predicted / measured - 1):+.1f}%"
            )
    for pairs in (1, 16):
        m = eap_ig_memory(SHAPE_8B, item=2, pairs=pairs, tokens=20, positions=20, host=False)
        print(
            f"\n  8B, bfloat16, {pairs} x 20 tokens (all 20 positions run), one GPU: "
            f"{m['peak'] / 1e9:.1f} GB ({int(m['edges'])} edges; {int(m['gradient runs'])} "
            f"gradient runs of {int(m['points per run'])} point(s), "
            f"{m['gradient run'] / m['points per run'] / 1e9:.2f} GB a point)"
        )
        for name, value in m.items():
            if name not in ("peak", "edges", "gradient runs", "points per run") and value:
                print(f"    {name:<34} {value / 1e9:8.2f} GB")
    print(
        "  (plus the CUDA context, about 0.5 GB, and the graph's Python objects on the host: "
        f"{eap_ig_memory(SHAPE_8B, item=2, pairs=1, tokens=20, positions=20)['edges']:.0f} "
        f"edges x {HOST_BYTES_PER_EDGE} bytes)"
    )


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
