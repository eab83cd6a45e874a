"""A crowd of synchronous dataset sweeps against one server: /health latency and memory.

    python benchmarks/bench_burst.py                     # 60 sweeps of ioi:64 on the demo model
    python benchmarks/bench_burst.py --sweeps 20 --idle 10
    MALLOC_ARENA_MAX=2 python benchmarks/bench_burst.py  # the server inherits the environment

The server is the real one (`actpatch.api.serve`, uvicorn) in a subprocess on the loopback,
with a fresh data folder. `--sweeps` clients each send one `POST /sweep` on a 64-pair dataset at
the same moment (the issue's burst); a client answered 429 waits the `Retry-After` it was given
and sends again, as a well-behaved client does. Meanwhile one more client asks `GET /health`
every quarter second and records how long each answer took. The server's resident memory is
sampled from /proc every 0.1 s (its peak is the kernel's high-water mark, VmHWM), then read
again after `--idle` seconds with nothing to do: memory the allocator kept shows there.

It prints the /health latencies (median, worst), the sweeps' outcomes (200, 429 retried, other),
the RSS before the burst, its peak, and the RSS after the idle wait. A behaviour check with a
generous bound lives in tests/api/test_load.py; this script is for the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def call(base: str, method: str, path: str, body: Any = None, timeout: float = 900):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="demo")
    parser.add_argument("--sweeps", type=int, default=60, help="concurrent sweep clients")
    parser.add_argument("--dataset", default="ioi:64", help="each sweep's dataset (seed added)")
    parser.add_argument("--component", default="z")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds idle after the burst")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="actpatch-burst-") as data_dir:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "ACTPATCH_DATA_DIR": data_dir}
        code = f"from actpatch.api import serve; serve(model={args.model!r}, port={port})"
        server = subprocess.Popen(
            [sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            result = burst(base, server, args)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    health = result["health_ms"]
    print(f"model {args.model}, {args.sweeps} concurrent POST /sweep on {args.dataset}")
    print(
        f"env MALLOC_ARENA_MAX={os.environ.get('MALLOC_ARENA_MAX', '(unset)')}; "
        f"this machine: {os.cpu_count()} cores"
    )
    print(
        f"/health during the burst: median {health['median']:.0f} ms, worst {health['max']:.0f} "
        f"ms over {health['n']} requests ({health['over_1s']} over 1 s)"
    )
    print(
        f"sweeps: {result['ok']} answered 200, {result['refused_429']} refusals (429, retried), "
        f"other {result['other']}; burst took {result['burst_s']:.1f} s"
    )
    print(
        f"server RSS: before {result['rss_before_mib']:.0f} MiB, peak {result['rss_peak_mib']:.0f} "
        f"MiB, after {args.idle:g} s idle {result['rss_idle_mib']:.0f} MiB"
    )


def burst(base: str, server: subprocess.Popen[bytes], args: argparse.Namespace) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if call(base, "GET", "/health", timeout=5)[0] == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("the server did not start within 300 s")
        time.sleep(0.2)
    # One sweep first, so imports and the model's first forward are not counted in the burst.
    first = call(base, "POST", "/sweep", {"dataset": f"{args.dataset}:999", "component": "z"})
    if first[0] != 200:
        raise SystemExit(f"a first sweep failed: {first[0]} {first[2][:500]!r}")
    time.sleep(2)
    before = memory_kib(server.pid)["VmRSS"]

    outcomes: list[str] = []
    lock = threading.Lock()
    go = threading.Event()

    def sweeper(i: int) -> None:
        body = {"dataset": f"{args.dataset}:{i}", "component": args.component}
        go.wait()
        while True:
            status, headers, _ = call(base, "POST", "/sweep", body)
            if status == 429:
                with lock:
                    outcomes.append("429")
                time.sleep(float(headers.get("Retry-After") or 1))
                continue
            with lock:
                outcomes.append("200" if status == 200 else str(status))
            return

    latencies: list[float] = []
    peak = [before]
    done = threading.Event()

    def health() -> None:
        while not done.is_set():
            t0 = time.perf_counter()
            with contextlib.suppress(OSError):
                call(base, "GET", "/health", timeout=300)
            latencies.append(time.perf_counter() - t0)
            time.sleep(0.25)

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], memory_kib(server.pid)["VmRSS"])
            time.sleep(0.1)

    threads = [threading.Thread(target=sweeper, args=(i,)) for i in range(args.sweeps)]
    for t in threads:
        t.start()
    watchers = [threading.Thread(target=health), threading.Thread(target=sample)]
    t0 = time.perf_counter()
    go.set()
    for t in watchers:
        t.start()
    for t in threads:
        t.join()
    burst_s = time.perf_counter() - t0
    done.set()
    for t in watchers:
        t.join()
    peak_kib = max(peak[0], memory_kib(server.pid)["VmHWM"])
    time.sleep(args.idle)
    idle = memory_kib(server.pid)["VmRSS"]
    ms = [1000 * s for s in latencies]
    return {
        "health_ms": {
            "median": statistics.median(ms),
            "max": max(ms),
            "n": len(ms),
            "over_1s": sum(m > 1000 for m in ms),
        },
        "ok": outcomes.count("200"),
        "refused_429": outcomes.count("429"),
        "other": len([o for o in outcomes if o not in ("200", "429")]),
        "burst_s": burst_s,
        "rss_before_mib": before / 1024,
        "rss_peak_mib": peak_kib / 1024,
        "rss_idle_mib": idle / 1024,
    }


if __name__ == "__main__":
    main()
