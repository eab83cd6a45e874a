"""benchmarks/bench_gpu.py, the GPU measurements of issue 22, end to end with `--smoke` (tiny
shapes on the CPU, the device map all `cpu` block by block): it exits 0, prints every row of the
issue's table and the extra ones the issue asks for, and the plain-hooks head sweep written in
the benchmark (Hugging Face's forward with PyTorch hooks, independent of actpatch's engine)
agrees with actpatch's sweep."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The table, row by row (model, what), then what it asks the script to add.
ROWS = [
    ("GPT-2-small-shaped, fp32", "head sweep / resid_pre; TransformerLens's loop"),
    ("same", "one Hugging Face forward of both prompts"),
    ("same", "the same head sweep hand-batched with plain PyTorch hooks"),
    ("same", "AtP over z_by_pos + mlp_out + resid_pre / EAP / EAP-IG (5 steps)"),
    ("same", "ioi dataset head sweep"),
    ("same", "launch-bound evidence"),
    ("same", "head sweep replayed from a CUDA graph"),
    ("Llama-3.2-1B-shaped, fp32 / bf16", "head sweep"),
    ("Llama-3.1-8B-shaped, bf16", "head sweep / resid_pre / AtP by position; memory"),
    ("Qwen2.5-32B-shaped, bf16", "head sweep / resid_pre; memory"),
    ("GPT-2-small-shaped, fp32", "exactness: head sweep on the device against the CPU"),
    ("Llama-3.2-1B-shaped", "bf16 against fp32 on the same weights"),
    ("GPT-2-small-shaped, fp32", "device map: blocks split between the device and cpu"),
]


@pytest.mark.slow
def test_the_smoke_run_prints_every_row():
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src")}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")][1:]
    assert len(table) == len(ROWS), table
    for line, (model, what) in zip(table, ROWS, strict=True):
        cells = [cell.strip() for cell in line.strip("|").split(" | ")]
        assert cells[0].startswith(model) and cells[1].startswith(what), line
        assert "FAILED" not in line and "not run" not in line and "skipped" not in line, line
    assert "torch " in done.stdout and "device cpu" in done.stdout

    # Hugging Face's model with plain PyTorch hooks against actpatch's head sweep
    hooks = re.search(r"max \|difference\| from ours ([0-9.e+-]+)", done.stdout)
    assert hooks is not None and float(hooks.group(1)) < 1e-4
    # an explicit block-by-block map (all on the CPU here) gives the single-device sweep
    split = next(line for line in table if line.startswith("| GPT-2") and "device map" in line)
    assert "fast path" in split and "from it 0.0e+00" in split
