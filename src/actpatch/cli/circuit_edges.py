"""`actpatch circuit edges`: score every edge of the model's graph with EAP, EAP-IG or
EAP-IG over activations, and optionally patch the top edges exactly (--verify)."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    add_option,
    add_workers,
    direction,
    experiments,
    load_for,
    progress_bar,
    request,
    spread,
)
from actpatch.cli.report import report
from actpatch.cli.tables import role
from actpatch.errors import InputError
from actpatch.patching.options import DEFAULT_STEPS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("edges", help="score every edge with EAP or EAP-IG")
    add_common(p)
    add_experiment(p)
    add_ranking(p)
    p.add_argument("--by-pos", action="store_true", help="keep each edge's score by position")
    add_option(p, "--format", "edge_format", what="the JSON written by --json and --out: ")
    p.add_argument(
        "--verify", type=int, default=0, help="patch the top K edges exactly to check them"
    )
    p.add_argument("--top", type=int, default=20, help="how many top edges to list (20)")
    add_keep(p)
    add_workers(p)


def add_ranking(p: argparse.ArgumentParser) -> None:
    """How edges are scored: --method, --steps, --max-memory, --kv (also `circuit evaluate`'s,
    which ranks the edges this way when given no file)."""
    add_option(p, "--method", "edge_method")
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"EAP-IG's interpolation steps ({DEFAULT_STEPS})",
    )
    p.add_argument(
        "--max-memory",
        default=None,
        help="what one batched gradient run may hold, e.g. 4GB (default 1GiB on a CPU, half "
        "the free memory on a GPU); EAP-IG runs its points in more batches rather than run out "
        "of memory",
    )
    add_option(p, "--kv", "kv", what="on a grouped-query model: ")


def run(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import circuit_graph
    from actpatch.patching.edges import edge_attribution, edge_attribution_many

    model = load_for(args)
    pairs = experiments(args, model)
    options = {
        "steps": args.steps,
        "metric": args.metric,
        "direction": direction(args),
        "kv": args.kv,
        "max_memory": args.max_memory,
    }
    if args.by_pos:
        if len(pairs) > 1:
            raise InputError(
                f"Scores by position need prompt pairs of one token length; this dataset has "
                f"{len(pairs)} length groups (a position means something else in each). "
                "Use a single-template dataset, or drop the position breakdown.",
                field="dataset",
            )
        result = edge_attribution(pairs[0], args.method, by_pos=True, verify=args.verify, **options)
    else:
        result = edge_attribution_many(
            pairs,
            args.method,
            verify=args.verify,
            progress=progress_bar(args.method),
            **options,
            **spread(args),
        )
    mib = args.format == "mib"
    return report(
        args,
        mib_payload(result, model) if mib else result.to_dict(),
        file="circuit_edges_mib.json" if mib else "circuit_edges.json",
        text=lambda: print_edges(result, args.top),
        kind="edges",
        request=request(
            args,
            model,
            method=args.method,
            steps=args.steps,
            kv=args.kv,
            by_pos=args.by_pos or None,
            verify=args.verify or None,
        ),
        kept=result.to_dict() if mib else None,
        warnings=result.warnings,
        plots={
            "circuit.png": lambda path: circuit_graph(result, path, model.n_layers, model.n_heads)
        },
    )


def mib_payload(result: Any, model: Any) -> dict[str, Any]:
    """The edge scores as MIB's importance-score file (`actpatch.patching.mib.to_mib`)."""
    from actpatch.patching.mib import to_mib

    graph = result.graph
    return to_mib(
        result.names,
        result.scores,
        n_layers=graph["n_layers"],
        n_heads=graph["n_heads"],
        d_model=model.d_model,
        parallel=graph["parallel"],
        n_kv_heads=graph["n_kv_heads"],
        kv=graph["kv"],
    )


def print_edges(result: Any, top: int) -> None:
    """What ran, the `top` edges, and the verified ones beside their exact effect."""
    steps = f", {result.steps} steps" if result.method != "eap" else ""
    print(
        f"{result.method}{steps} ({result.direction}) on {result.model} ({result.backend} path): "
        f"{len(result.edges):,} edges, {result.n_pairs} pair(s), metric {result.metric}"
    )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    gap = result.clean - result.corrupt
    print(f"\ntop {top} edges (score summed over positions; clean - corrupted = {gap:+.4g}):")
    for e in result.top(top):
        print(f"  {e.name + role(result.model, e.source):<34} {e.score:+.4g}")
    if result.verified:
        print(f"\nverified exactly (one edge patched alone, {result.direction}):")
        print(f"  {'edge':<34} {'score':>10} {'exact':>10}")
        scores = {e.name: e.score for e in result.edges}
        for c in result.verified:
            print(f"  {c.edge:<34} {scores[c.edge]:>+10.4g} {c.effect:>+10.4g}")
    print(f"\n{result.method} took {result.seconds:.2f} s")
