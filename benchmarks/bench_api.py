"""Time the REST API on a GPT-2-small-shaped model: a warm /patch, and a full head sweep.

    python benchmarks/bench_api.py                  # builds a random GPT-2 small in a temp folder
    python benchmarks/bench_api.py --model demo     # or any model `actpatch serve` can load

The server is the real one (`actpatch.api.serve`, uvicorn) in a subprocess, so the client's
work never shares a Python interpreter with the server's. The default model has GPT-2 small's
shape exactly (12 layers, 12 heads, d_model 768, 50257 tokens, 124M parameters) with random
weights: latency depends on the shape, not on the values. Prompts: the IOI pair.

- cold /patch: the first request on a prompt pair (two full forward passes, then the patch);
- warm /patch: later requests on the same pair, each a different head (the clean and
  corrupted runs come from the server's cache: one partial forward pass each);
- /sweep z: every head (12 x 12 = 144 patches), the engine's batched sweep.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

IOI = {
    "clean_prompt": "When Mary and John went to the store, John gave a drink to",
    "corrupt_prompt": "When Mary and John went to the store, Mary gave a drink to",
    "target_token": " Mary",
    "wrong_token": " John",
}


def build_gpt2_small_shaped(folder: Path) -> Path:
    """Write a GPT-2 small-shaped model with random weights and GPT-2's tokenizer to `folder`."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    from actpatch.tokenizer import save_gpt2_tokenizer

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(str(folder))
    save_gpt2_tokenizer(folder)
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(model: str, port: int, threads: int | None) -> subprocess.Popen[bytes]:
    code = f"from actpatch.api import serve; serve(model={model!r}, port={port})"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    if threads is not None:
        env["ACTPATCH_TORCH_THREADS"] = str(threads)
    quiet = subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=quiet, stderr=quiet)


def wait_until_up(client: httpx.Client, server: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if client.get("/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f} s")


def timed(client: httpx.Client, path: str, body: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    t0 = time.perf_counter()
    response = client.post(path, json=body)
    seconds = time.perf_counter() - t0
    response.raise_for_status()
    return seconds, response.json()


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(1000 * v for v in values)
    return {
        "median_ms": round(statistics.median(ms), 1),
        "p90_ms": round(ms[int(0.9 * (len(ms) - 1))], 1),
        "min_ms": round(ms[0], 1),
        "n": len(ms),
    }


def run(model: str, n_patches: int, n_sweeps: int, threads: int | None) -> dict[str, Any]:
    port = free_port()
    server = start_server(model, port, threads)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as client:
            wait_until_up(client, server, timeout=300)
            info = client.get("/models").json()["models"][0]
            n_layers, n_heads = info["n_layers"], info["n_heads"]

            cold, _ = timed(client, "/patch", {**IOI, "layer": 0, "head": 0})
            warm, server_s = [], []
            for i in range(n_patches):
                body = {**IOI, "layer": i % n_layers, "head": (i * 5) % n_heads}
                seconds, answer = timed(client, "/patch", body)
                assert answer["cached"], "the second /patch on a pair must reuse its runs"
                warm.append(seconds)
                server_s.append(answer["seconds"])
            sweeps, sweep_s = [], []
            for _ in range(n_sweeps):
                seconds, answer = timed(client, "/sweep", {**IOI, "component": "z"})
                sweeps.append(seconds)
                sweep_s.append(answer["seconds"])
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "model": info["name"],
        "torch_threads": threads if threads is not None else "server default",
        "shape": f"{n_layers} layers x {n_heads} heads, d_model {info['d_model']}, "
        f"{info['n_params'] / 1e6:.0f}M params",
        "cold_patch_ms": round(1000 * cold, 1),
        "warm_patch": summary(warm),
        "warm_patch_server_only": summary(server_s),
        "head_sweep": summary(sweeps),
        "head_sweep_engine_only": summary(sweep_s),
        "cells_per_sweep": n_layers * n_heads,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model spec `actpatch serve` takes (default: random)")
    parser.add_argument("--patches", type=int, default=30, help="warm /patch requests to time")
    parser.add_argument("--sweeps", type=int, default=3, help="head sweeps to time")
    parser.add_argument(
        "--threads",
        type=int,
        nargs="*",
        default=[None],
        help="ACTPATCH_TORCH_THREADS for the server; several values: one run each",
    )
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="actpatch-bench-") as tmp:
        model = args.model
        if model is None:
            print("building a GPT-2-small-shaped random model ...", file=sys.stderr)
            model = str(build_gpt2_small_shaped(Path(tmp) / "gpt2-small-random"))
        results = [run(model, args.patches, args.sweeps, t) for t in args.threads]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for result in results:
        report(result)


def report(result: dict[str, Any]) -> None:
    print(f"model: {result['model']} ({result['shape']})")
    print(f"server torch threads: {result['torch_threads']} (this machine: {os.cpu_count()} cores)")
    print(f"cold /patch (first on the pair):          {result['cold_patch_ms']:8.1f} ms")
    for key, label in (
        ("warm_patch", "warm /patch, client wall time"),
        ("warm_patch_server_only", "warm /patch, server compute"),
        ("head_sweep", f"/sweep z ({result['cells_per_sweep']} heads), wall"),
        ("head_sweep_engine_only", "/sweep z, engine only"),
    ):
        s = result[key]
        print(
            f"{label:<40} {s['median_ms']:8.1f} ms median  "
            f"(p90 {s['p90_ms']:.1f}, min {s['min_ms']:.1f}, n={s['n']})"
        )


if __name__ == "__main__":
    main()
