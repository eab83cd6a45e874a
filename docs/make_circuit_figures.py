"""Regenerate docs/circuits.md's pictures of the demo model's IOI circuit (offline, ~30 s).

Prints the numbers the page quotes: each method's top edges with their exact effects, and the
faithfulness of the top-n edges.
"""

import dataclasses
from pathlib import Path

import torch

import actpatch
from actpatch.circuit_plots import circuit_graph, faithfulness_curve, path_heatmap
from actpatch.datasets import ioi
from actpatch.patching.circuit import evaluate, evaluate_mib
from actpatch.patching.edges import edge_attribution
from actpatch.patching.paths import path_patch

HERE = Path(__file__).parent
SIZES = [0, 5, 10, 20, 50, 100, 200, 500, 1519]


def main() -> None:
    torch.manual_seed(0)
    model = actpatch.load_model("demo")
    data = ioi(50, seed=0, split="heldout", same_length=True)
    exp = actpatch.Experiment(model, data.clean, data.corrupt, data.target, data.wrong)
    curves = []
    for method in ("eap-ig", "eap"):
        edges = edge_attribution(exp, method, steps=5, verify=10)
        print(f"\n{method}: {len(edges.edges)} edges in {edges.seconds:.2f} s")
        for e, check in zip(edges.edges[:10], edges.verified, strict=True):
            print(f"  {e.name:<22} score {e.score:+7.3f}   exact {check.effect:+7.3f}")
        if method == "eap-ig":
            print(circuit_graph(edges, HERE / "img" / "circuit-demo-graph.png", 4, 8, top=40))
        curve = evaluate(exp, ranked=[e.name for e in edges.edges], sizes=SIZES)
        curve.method = method
        curves.append(curve)
        print("  faithfulness:", [(p.n_edges, round(p.faithfulness, 3)) for p in curve.points])
    print(faithfulness_curve(curves, HERE / "img" / "circuit-demo-faithfulness.png"))
    to_logits = path_patch(exp, "all", "logits")
    print(path_heatmap(to_logits, HERE / "img" / "circuit-demo-path-logits.png"))
    print("path patching -> logits, top:", to_logits.top(4))
    movers = [name for name, _ in to_logits.top(2)]  # the heads that write the answer
    receivers = [f"{m}<v>" for m in movers]
    into = path_patch(exp, "all", receivers)
    print(f"path patching -> {', '.join(receivers)}, top:", into.top(4))
    mib_scores(exp)
    gqa_circuit()


def gqa_circuit() -> None:
    """The two-hop circuit planted in a grouped-query Llama (docs/planted-circuits.md): found by
    EAP-IG in both key/value conventions and by path patching; its graph drawn."""
    import tempfile

    from actpatch.planted import build_two_hop_gqa_circuit

    with tempfile.TemporaryDirectory() as folder:
        planted = build_two_hop_gqa_circuit(folder)
        model = actpatch.load_model(folder)
        pair = planted.pairs[0]
        exp = actpatch.Experiment(model, pair.clean, pair.corrupt, pair.target, pair.wrong)
        print(f"\nplanted GQA two-hop circuit: key edge {planted.key_edge}")
        for kv in ("ungrouped", "grouped"):
            edges = edge_attribution(exp, "eap-ig", steps=5, kv=kv, verify=3)
            print(f"  eap-ig ({kv}, {len(edges.edges)} edges):")
            for e, check in zip(edges.edges[:3], edges.verified, strict=True):
                print(f"    {e.name:<22} score {e.score:+8.2f}   exact {check.effect:+8.2f}")
            if kv == "ungrouped":
                graph = HERE / "img" / "circuit-gqa-graph.png"
                named = dataclasses.replace(edges, model="the planted GQA two-hop model")
                print(circuit_graph(named, graph, model.n_layers, model.n_heads, top=12))
        into = path_patch(exp, "all", "a2.h2<v>")
        print("  path patching -> a2.h2<v>, top:", into.top(3))
        circuit = [e.name for e in edge_attribution(exp, "eap-ig", steps=5).edges[:7]]
        faith = evaluate(exp, edges=circuit).faithfulness
        print(f"  faithfulness of EAP-IG's top 7 edges: {faith:.3f}")


def mib_scores(exp: actpatch.Experiment) -> None:
    """MIB's evaluation of the demo model's IOI scorings: CPR and CMD at MIB's fractions."""
    print("\nMIB evaluation (CPR from the signed ranking, CMD from the |score| one):")
    for method in ("eap", "eap-ig", "eap-ig-act"):
        edges = edge_attribution(exp, method, steps=5)
        for ablation in ("corrupt", "mean"):
            mib = evaluate_mib([exp], edges.names, edges.scores, ablation=ablation).mib
            assert mib is not None
            faith = [round(f, 3) for f in mib["faithfulness"]["absolute"]]
            print(
                f"  {method:<11} {ablation:<8} CPR {mib['cpr']:.3f}  CMD {mib['cmd']:.3f}  "
                f"(|score| CPR {mib['cpr_absolute']:.3f}; signed CMD {mib['cmd_signed']:.3f}); "
                f"|score| curve {faith}"
            )


if __name__ == "__main__":
    main()
