"""`actpatch serve`: start the web page and the REST API (`actpatch.api.serve`)."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.dtypes import DTYPES


def add_parser(sub: Any) -> None:
    p = sub.add_parser("serve", help="start the web app and REST API")
    p.add_argument("--model", default=None, help="model to serve (default: gpt2, else demo)")
    p.add_argument("--host", default=None, help="default: $ACTPATCH_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="default: $ACTPATCH_PORT or 8000")
    p.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda")
    p.add_argument("--dtype", default=None, choices=list(DTYPES), help="model precision")
    p.add_argument("--max-memory", default=None, help="per-batch activation budget, e.g. 4GB")
    p.add_argument(
        "--device-map", default=None, help="auto, balanced or a JSON file of module -> device"
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="on one CUDA GPU, replay sweeps' patched batches from recorded CUDA graphs",
    )


def run(args: argparse.Namespace) -> int:
    from actpatch.api import serve

    serve(
        model=args.model,
        host=args.host,
        port=args.port,
        device=args.device,
        dtype=args.dtype,
        max_memory=args.max_memory,
        device_map=args.device_map,
        cuda_graphs=args.cuda_graphs,
    )
    return 0
