"""The memory half of `bench_circuits.py`: EAP-IG on a Llama-3.2-1B-shaped model in a child
process (its peak resident memory its own), and `eap_ig_memory`, a model of EAP-IG's memory from
a Llama-shaped model's sizes, held against those peaks."""

from __future__ import annotations

import gc
import resource
import time
from dataclasses import dataclass

import actpatch
from actpatch.models import LoadedModel
from actpatch.patching.budget import DEFAULT_MAX_MEMORY
from actpatch.patching.edges import edge_attribution
from random_models import CLEAN, CORRUPT, LLAMA_1B, build

GIB = 2**30


def fresh(model: LoadedModel, pairs: int = 1) -> actpatch.Experiment:
    """A new experiment on the IOI pair (`pairs` copies of it): nothing cached, so a timing of
    it includes its two runs."""
    if pairs == 1:
        return actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
    return actpatch.Experiment(model, [CLEAN] * pairs, [CORRUPT] * pairs, " Mary", " John")


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
