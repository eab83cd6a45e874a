"""`actpatch circuit evaluate`: the faithfulness of a circuit, of the top-n edges as a curve, or
MIB's evaluation (--mib), with the edges from a file or ranked here (`circuit_edges`'s flags)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from actpatch.cli.circuit_edges import add_ranking
from actpatch.cli.common import (
    add_common,
    add_experiment,
    add_keep,
    add_option,
    add_workers,
    direction,
    experiments,
    load_for,
    request,
    spread,
)
from actpatch.cli.report import report
from actpatch.cli.tables import fmt
from actpatch.errors import InputError


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate", help="faithfulness of a circuit (or of the top-n edges, as a curve)"
    )
    add_common(p)
    add_experiment(p)
    add_ranking(p)
    p.add_argument(
        "--edges",
        type=Path,
        default=None,
        help="a JSON file of edges: `circuit edges --json` output, or a list of names like "
        "'a0.h1->a2.h3<v>'; default: rank every edge with --method",
    )
    p.add_argument(
        "--circuit",
        type=Path,
        default=None,
        help="a circuit file: MIB's importance-score JSON (`circuit edges --format mib`, or a "
        "MIB submission) or `circuit edges --json` output; its scores rank the edges",
    )
    p.add_argument(
        "--mib",
        action="store_true",
        help="MIB's evaluation: faithfulness at 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50 and 100%% of "
        "the edges (pruned top-n circuits), with CPR and CMD",
    )
    p.add_argument(
        "--nodes", default=None, help="a node set instead of edges, e.g. 'a9.h9,a10.h0,m0'"
    )
    p.add_argument("--top-n", type=int, default=None, help="keep the top n edges")
    p.add_argument("--threshold", type=float, default=None, help="keep the edges with |score| >= T")
    p.add_argument(
        "--curve",
        default=None,
        help="faithfulness of the top n edges for each n, e.g. '10,20,50,100' or 'auto' "
        "(the default when no circuit is given)",
    )
    add_option(p, "--ablation", "circuit_ablation", what="what replaces an ablated writer: ")
    add_keep(p)
    add_workers(p)


def run(args: argparse.Namespace) -> int:
    from actpatch.circuit_plots import faithfulness_curve
    from actpatch.patching.circuit import evaluate_many, evaluate_mib
    from actpatch.patching.edges import edge_attribution_many

    model = load_for(args)
    pairs = experiments(args, model)
    method = None
    result: Any
    common = {"metric": args.metric, "ablation": args.ablation, "kv": args.kv, **spread(args)}
    if args.mib and (args.nodes or args.top_n is not None or args.threshold is not None):
        raise InputError(
            "--mib evaluates MIB's own circuits (the top 0.1% to 100% of the edges): give a "
            "ranking (--circuit FILE, --edges FILE or --method) without --nodes, --top-n or "
            "--threshold.",
            field="circuit",
        )
    if args.nodes:
        result = evaluate_many(pairs, nodes=args.nodes.split(","), **common)
    else:
        if args.circuit is not None:
            names, scores = circuit_file(args.circuit, pairs[0], args.kv)
            method = f"file {args.circuit.name}"
        elif args.edges is not None:
            names, scores = ranked_edges(args.edges)
            method = f"file {args.edges.name}"
        else:
            ranking = edge_attribution_many(
                pairs,
                args.method,
                steps=args.steps,
                metric=args.metric,
                direction=direction(args),
                kv=args.kv,
                max_memory=args.max_memory,
                **spread(args),
            )
            names = [e.name for e in ranking.edges]
            scores = [e.score for e in ranking.edges]
            method = args.method
        if args.mib:
            result = evaluate_mib(pairs, names, scores, **common)
        elif args.threshold is not None:
            if scores is None:
                raise InputError("--threshold needs edges with scores.", field="circuit")
            names = [n for n, s in zip(names, scores, strict=True) if abs(s) >= args.threshold]
        if not args.mib:
            result = evaluate_ranking(args, pairs, names, common)
        result.method = method
    return report(
        args,
        result.to_dict(),
        file="circuit_evaluate.json",
        text=lambda: print_evaluation(result, method),
        kind="evaluation",
        request=asked(args, model, method),
        warnings=result.warnings,
        plots=(
            {"faithfulness.png": lambda path: faithfulness_curve(result, path)}
            if len(result.points) > 1
            else {}
        ),
    )


def asked(args: argparse.Namespace, model: Any, method: str | None) -> dict[str, Any]:
    """What was asked, as the history keeps it: the experiment, the circuit's source (files by
    their absolute path) and how it was cut."""
    files = {
        name: str(path.expanduser().resolve())
        for name, path in (("edges_file", args.edges), ("circuit_file", args.circuit))
        if path is not None
    }
    return request(
        args,
        model,
        method=method,
        ablation=args.ablation,
        kv=args.kv,
        nodes=args.nodes.split(",") if args.nodes else None,
        top_n=args.top_n,
        threshold=args.threshold,
        curve=args.curve,
        mib=args.mib or None,
        **files,
    )


def evaluate_ranking(
    args: argparse.Namespace, pairs: list[Any], names: list[str], common: dict[str, Any]
) -> Any:
    """One circuit (--top-n, --threshold or a file of edges without --curve) or a curve."""
    from actpatch.patching.circuit import default_sizes, evaluate_many

    if args.top_n is not None:
        names = names[: args.top_n]
    given = (args.top_n, args.threshold, args.edges, args.circuit)
    if args.curve is None and any(v is not None for v in given):
        return evaluate_many(pairs, edges=names, **common)
    sizes = (
        default_sizes(len(names))
        if args.curve in (None, "auto")
        else [int(v) for v in args.curve.split(",") if v.strip()]
    )
    return evaluate_many(pairs, ranked=names, sizes=sizes, **common)


def circuit_file(path: Path, experiment: Any, kv: str) -> tuple[list[str], list[float] | None]:
    """Edge names and scores from --circuit: MIB's JSON (read against the served model's
    shape) or actpatch's own edge JSON."""
    from actpatch.patching.graph_tables import shape_of
    from actpatch.patching.mib import from_mib

    try:
        text = path.read_text()
        data = json.loads(text)
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read a circuit from {path}: {exc}.", field="circuit") from None
    if not (isinstance(data, dict) and "cfg" in data and isinstance(data.get("edges"), dict)):
        return ranked_edges(path)
    shape = shape_of(experiment, kv)
    circuit = from_mib(
        data,
        n_layers=shape.n_layers,
        n_heads=shape.n_heads,
        d_model=experiment.model.d_model,
        parallel=shape.parallel,
        n_kv_heads=shape.n_kv_heads,
        kv=kv,
    )
    if circuit.scores is None:  # a circuit without scores: its in_graph edges
        return list(circuit.circuit), None
    return list(circuit.names), list(circuit.scores)


def ranked_edges(path: Path) -> tuple[list[str], list[float] | None]:
    """Edge names (and scores, if given) from a JSON file: `circuit edges --json` output, a list
    of {"source", "target"[, "score"]}, or a list of names."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"Cannot read edges from {path}: {exc}.", field="circuit") from None
    items = data.get("edges", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise InputError(
            f"{path} holds no list of edges: give `actpatch circuit edges --json` output or a "
            "list of names like 'a0.h1->a2.h3<v>'.",
            field="circuit",
        )
    names: list[str] = []
    scores: list[float] = []
    for item in items:
        if isinstance(item, str):
            names.append(item)
        elif isinstance(item, dict) and "source" in item and "target" in item:
            names.append(f"{item['source']}->{item['target']}")
            if "score" in item:
                scores.append(float(item["score"]))
        else:
            raise InputError(f"{path}: {item!r} is not an edge.", field="circuit")
    return names, scores if len(scores) == len(names) else None


def print_evaluation(result: Any, method: str | None) -> None:
    """What ran, then MIB's table or each circuit's size, metric and faithfulness."""
    print(
        f"circuit evaluation ({result.ablation} ablation) on {result.model} ({result.backend} "
        f"path): metric {result.metric}, {result.total_edges:,} edges in the graph"
    )
    print(f"clean {result.metric} = {result.clean:.4g}, corrupted = {result.corrupt:.4g}")
    if result.nodes:
        print(f"nodes: {', '.join(result.nodes)}")
    if method:
        print(f"edges ranked by {method}")
    if result.mib is not None:
        print_mib(result.mib)
    else:
        print(f"\n  {'edges kept':>10} {result.metric:>12} {'faithfulness':>13}")
        for point in result.points:
            print(f"  {point.n_edges:>10,} {point.metric:>+12.4g} {fmt(point.faithfulness):>12}%")
    print(f"\nevaluation took {result.seconds:.2f} s")


def print_mib(mib: dict[str, Any]) -> None:
    """MIB's table: each fraction's pruned circuits and faithfulness, both rankings; CPR, CMD."""
    print("\nMIB evaluation (circuits pruned as MIB prunes them):")
    print(f"  {'edges %':>8} {'|score| n':>10} {'faithful':>9} {'score n':>9} {'faithful':>9}")
    n, f = mib["n_edges"], mib["faithfulness"]
    for i, fraction in enumerate(mib["fractions"]):
        print(
            f"  {fraction * 100:>7.1f}% {n['absolute'][i]:>10,} {fmt(f['absolute'][i]):>8}% "
            f"{n['signed'][i]:>9,} {fmt(f['signed'][i]):>8}%"
        )
    print(
        f"\nCPR {mib['cpr']:.4f} (signed ranking; |score| ranking {mib['cpr_absolute']:.4f}), "
        f"CMD {mib['cmd']:.4f} (|score| ranking; signed ranking {mib['cmd_signed']:.4f})"
    )
