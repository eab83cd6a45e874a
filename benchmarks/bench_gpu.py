"""Everything issue 22 measured on a GPU, in one run, printed as the issue's table.

Random-weight models built directly on the device in their dtype (seed 0), the 15-token IOI
pair (`random_models.py`), one process, on one GPU (sized for the issue's bound: under five
minutes on one H100/H200):

- GPT-2-small-shaped, float32: the head sweep (144 cells) and the resid_pre sweep (180), and
  TransformerLens's loops on the same GPU (`get_act_patch_attn_head_out_all_pos`,
  `get_act_patch_resid_pre`, through its bridge over the same weights), their ratio and the
  largest difference; one Hugging Face forward of both prompts; the same head sweep written by
  hand with plain PyTorch hooks (one forward of a batch of 144, each row patching one head);
  AtP over z_by_pos + mlp_out + resid_pre, EAP and EAP-IG (5 steps); the head sweep of
  ioi:64, ioi:256 and ioi:1024; how many kernels a head sweep launches and how long the GPU is
  busy in it (whether the sweep waits on launches rather than on arithmetic); the head sweep
  replayed from a CUDA graph (`cuda_graphs`, `gpu_graphs.py`) and AtP over the same cells;
- Llama-3.2-1B-shaped: the head sweep in float32, then the same weights cast to bfloat16 (built
  once, never re-initialised in the other dtype) and the largest difference between the two;
- Llama-3.1-8B-shaped, bfloat16: head sweep, resid_pre sweep, AtP of heads by position, memory;
- Qwen2.5-32B-shaped, bfloat16: head sweep, resid_pre sweep, memory (a model that does not fit
  the free memory is skipped, and the row says so);
- exactness: the GPT-2-shaped head sweep on the GPU against the same weights on the CPU;
- a device map: the GPT-2-shaped model saved to a folder and loaded with
  `actpatch.load_model(folder, device_map=FILE.json)`, the embeddings, the first half of the
  blocks and the unembedding on `cuda:0`, the other blocks on `cpu`: its head sweep against the
  single-device one, its time, the backend that ran it and the devices the weights are on.

Every time is the median of several runs after warm-up runs, with CUDA synchronised before and
after each; each sweep starts from a fresh experiment (its two unpatched runs included);
TransformerLens's loops (hundreds of forwards each, after ours warmed the kernels) run once.
A row that fails says so in the table, the rows after it still run, and the script exits 1.
`--smoke` runs every row on the CPU with tiny shapes (the device map then all `cpu`, block by
block, which goes through the same loading path): tests/test_bench_gpu.py runs it.

    python benchmarks/bench_gpu.py [--smoke] [--repeats 10] [--skip-tl] [--skip-big]
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's loops draw progress bars

import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

import actpatch
from actpatch.datasets import load_dataset
from actpatch.models import LoadedModel
from actpatch.patching.attribution import attribute_components
from actpatch.patching.edges import edge_attribution
from actpatch.patching.experiment import dataset_experiments
from actpatch.tokenizer import gpt2_tokenizer
from gpu_baselines import experiment, hand_batched_heads, launches, max_diff, ms, tl_loops
from gpu_graphs import graphs_row
from random_models import gpu_configs

GB = 1e9
ATP_COMPONENTS = ("z_by_pos", "mlp_out", "resid_pre")
# The table's rows, in the order: (key, model, what was measured).
GPT2, L1B = "GPT-2-small-shaped", "Llama-3.2-1B-shaped"
L8B, Q32B = "Llama-3.1-8B-shaped", "Qwen2.5-32B-shaped"
ROWS = (
    ("sweeps", f"{GPT2}, fp32", "head sweep / resid_pre; TransformerLens's loop, same device"),
    ("hf", "same", "one Hugging Face forward of both prompts"),
    ("hooks", "same", "the same head sweep hand-batched with plain PyTorch hooks (one forward)"),
    ("attribution", "same", "AtP over z_by_pos + mlp_out + resid_pre / EAP / EAP-IG (5 steps)"),
    ("ioi", "same", "ioi dataset head sweep"),
    ("launches", "same", "launch-bound evidence: kernels and busy time of one head sweep"),
    ("graphs", "same", "head sweep replayed from a CUDA graph (cuda_graphs); AtP over z"),
    ("1b", f"{L1B}, fp32 / bf16", "head sweep"),
    ("8b", f"{L8B}, bf16", "head sweep / resid_pre / AtP by position; memory"),
    ("32b", f"{Q32B}, bf16", "head sweep / resid_pre; memory"),
    ("exact", f"{GPT2}, fp32", "exactness: head sweep on the device against the CPU, same weights"),
    ("cast", f"{L1B}", "bf16 against fp32 on the same weights (built once in fp32, cast)"),
    ("split", f"{GPT2}, fp32", "device map: blocks split between the device and cpu (FILE.json)"),
)


class Bench:
    """The run's device, settings and table; each row is printed as soon as it is measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.configs = gpu_configs(args.smoke)
        self.results: dict[str, str] = {}
        self.failed: list[str] = []
        self.t0 = time.perf_counter()

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def timed(
        self,
        run: Callable[[Any], Any],
        setup: Callable[[], Any] = lambda: None,
        repeats: int | None = None,
        warmup: int = 1,
    ) -> tuple[float, Any]:
        """(median seconds, last result) of `run(setup())`; only `run` is timed, synchronised."""
        repeats = repeats or self.args.repeats
        if self.args.smoke:  # every row once, as fast as it goes: the figures mean nothing
            repeats, warmup = 1, 0
        result = None
        for _ in range(warmup):
            result = run(setup())
        times = []
        for _ in range(repeats):
            arg = setup()
            self.sync()
            t0 = time.perf_counter()
            result = run(arg)
            self.sync()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), result

    def release(self) -> None:
        """Hand memory no longer referenced back to the GPU (its allocator caches it)."""
        if self.cuda:
            gc.collect()
            torch.cuda.empty_cache()

    def free_bytes(self) -> int:
        if self.cuda:
            return int(torch.cuda.mem_get_info(self.device)[0])
        import psutil

        return int(psutil.virtual_memory().available)

    def reset_peak(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> str:
        """The peak memory since `reset_peak`: the GPU's allocations, or the process's RSS."""
        if self.cuda:
            return f"peak {torch.cuda.max_memory_allocated(self.device) / GB:.1f} GB allocated"
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        return f"peak RSS of the process {rss / GB:.1f} GB"

    def model_label(self, label: str, kind: str | None) -> str:
        if not self.args.smoke or kind is None:
            return label
        c = self.configs[kind]
        return (
            f"{label} (smoke: {c.num_hidden_layers} layers, {c.num_attention_heads} heads, "
            f"d_model {c.hidden_size})"
        )

    def row(self, key: str, text: str) -> None:
        self.results[key] = text
        _, model, what = next(r for r in ROWS if r[0] == key)
        elapsed = time.perf_counter() - self.t0
        print(f"[{elapsed:6.1f} s] {model} | {what} | {text}", flush=True)

    @contextmanager
    def rows(self, *keys: str) -> Iterator[None]:
        """Measure some rows; a failure is written into them (and fails the run at the end)
        rather than losing the rows that follow."""
        try:
            yield
        except Exception as exc:
            for key in keys:
                if key not in self.results:
                    self.fail(key, exc)
        finally:
            self.release()

    def fail(self, key: str, exc: Exception, before: str = "") -> None:
        """Row `key` failed with `exc` (after `before`, what it had measured): the traceback,
        then the row says so, and the run will exit with an error."""
        traceback.print_exc()
        lines = str(exc).splitlines() or [""]
        self.row(key, f"{before}FAILED: {type(exc).__name__}: {lines[0][:200]}")
        self.failed.append(key)


def build(bench: Bench, kind: str, dtype: torch.dtype, device: torch.device | str) -> LoadedModel:
    """A random-weight model of `kind` built directly on `device` in `dtype` (seed 0)."""
    torch.manual_seed(0)
    with torch.device(device):
        hf_model = AutoModelForCausalLM.from_config(bench.configs[kind], dtype=dtype)
    hf_model.eval()
    hf_model.requires_grad_(False)
    return LoadedModel(f"random {kind}", "random weights", hf_model, gpt2_tokenizer())


def does_not_fit(bench: Bench, kind: str, dtype: torch.dtype) -> str | None:
    """Why `kind` in `dtype` cannot be built on the device (its weights, 5% and 4 GB for the
    sweeps' activations, against the free memory), or None."""
    bench.release()  # what the models before it left in the allocator's cache
    with torch.device("meta"):
        shape = AutoModelForCausalLM.from_config(bench.configs[kind], dtype=dtype)
    weights = sum(p.numel() * p.element_size() for p in shape.parameters())
    need, free = weights * 1.05 + (0 if bench.args.smoke else 4e9), bench.free_bytes()
    if need <= free:
        return None
    return (
        f"skipped: needs about {need / GB:.0f} GB ({weights / GB:.1f} GB of weights), "
        f"{free / GB:.0f} GB free on {bench.device}"
    )


# -- GPT-2-small-shaped ---------------------------------------------------------------------


def gpt2_rows(bench: Bench, cpu_model: LoadedModel, model: LoadedModel) -> None:
    """Every GPT-2-small-shaped row: ours, Hugging Face's forward, plain hooks, attribution,
    datasets, launches, TransformerLens, exactness against the CPU and the device map."""
    sweeps: dict[str, Any] = {}
    with bench.rows("sweeps"):
        for component in ("z", "resid_pre"):
            sweeps[component] = bench.timed(
                lambda exp, c=component: actpatch.sweep(exp, c, "logit_diff"),
                lambda: experiment(model),
                warmup=2,
            )
    if len(sweeps) < 2:
        return  # every other row compares with these
    (t_z, z), (t_resid, resid) = sweeps["z"], sweeps["resid_pre"]
    print(
        f"  head sweep {ms(t_z)} ({z.raw.numel()} cells, {z.backend} path); resid_pre "
        f"{ms(t_resid)} ({resid.raw.numel()} cells)",
        flush=True,
    )

    forwards: dict[str, float] = {}
    with bench.rows("hf"):
        exp = experiment(model)
        runner, both = exp.runner, torch.cat([exp.clean_tokens, exp.corrupt_tokens])

        def ours_forward(tokens: torch.Tensor) -> Any:
            with torch.inference_mode():
                return runner.unembed(runner.run(runner.embed(tokens)))

        def hf_forward(tokens: torch.Tensor) -> Any:
            with torch.inference_mode():
                return model.hf_model(tokens).logits

        forwards["ours"], _ = bench.timed(lambda _: ours_forward(exp.corrupt_tokens), warmup=3)
        forwards["hf"], _ = bench.timed(lambda _: hf_forward(both), warmup=3)
        bench.row(
            "hf",
            f"{ms(forwards['hf'])} (2 x {both.shape[1]} tokens, all logits); our fast forward "
            f"of one prompt {ms(forwards['ours'])}",
        )

    with bench.rows("hooks"):
        t_hooks, by_hand = bench.timed(lambda _: hand_batched_heads(model), warmup=2)
        bench.row(
            "hooks",
            f"{ms(t_hooks)} (batch {z.raw.numel()}, last position's logits; ours "
            f"{t_hooks / t_z:.2f}x as fast); max |difference| from ours "
            f"{max_diff(by_hand, z.normalized):.1e}",
        )

    with bench.rows("launches"):
        n_kernels, busy = launches(
            lambda: actpatch.sweep(experiment(model), "z"), bench.cuda, bench.sync
        )
        evidence = "; ".join(
            f"head sweep = {t_z / t:.1f} / resid_pre = {t_resid / t:.1f} {what}"
            for what, t in (
                ("Hugging Face forwards of both prompts", forwards.get("hf")),
                ("of our forwards of one prompt", forwards.get("ours")),
            )
            if t
        )
        if not bench.cuda:
            evidence += f"; {n_kernels} operator calls in one head sweep (no GPU timeline)"
        else:
            evidence += (
                f"; one head sweep launches {n_kernels} kernels "
                f"({t_z * 1e6 / max(n_kernels, 1):.1f} us each), the GPU busy {busy:.1f} ms "
                f"of {t_z * 1000:.1f} ms "
                f"({100 * busy / 1000 / t_z:.0f}%): far under 100% means it waits on launches, "
                "which CUDA graphs or torch.compile of the cell batches could cut"
            )
        bench.row("launches", evidence)

    with bench.rows("graphs"):
        bench.row("graphs", graphs_row(bench, model, t_z, z))

    with bench.rows("attribution"):
        t_atp, _ = bench.timed(
            lambda e: attribute_components(e, ATP_COMPONENTS, "atp", "denoising", "logit_diff"),
            lambda: experiment(model),
        )
        t_eap, _ = bench.timed(lambda e: edge_attribution(e, "eap"), lambda: experiment(model))
        t_ig, _ = bench.timed(
            lambda e: edge_attribution(e, "eap-ig", steps=5), lambda: experiment(model)
        )
        bench.row(
            "attribution",
            f"{ms(t_atp)} / {ms(t_eap)} / {ms(t_ig)}; against the exact head sweep "
            f"{t_atp / t_z:.2f}x / {t_eap / t_z:.2f}x / {t_ig / t_z:.2f}x its time "
            "(the issue's target: AtP no slower, <= 1x)",
        )

    with bench.rows("ioi"):
        figures = []
        for n in (2, 4, 8) if bench.args.smoke else (64, 256, 1024):
            data = load_dataset(f"ioi:{n}")
            seconds, _ = bench.timed(
                lambda exps: actpatch.sweep_many(exps, "z"),
                lambda data=data: dataset_experiments(model, data),
                repeats=min(3, bench.args.repeats),
                warmup=1,
            )
            figures.append((n, seconds))
        bench.row(
            "ioi",
            " / ".join(f"ioi:{n}" for n, _ in figures)
            + ": "
            + " / ".join(ms(s) for _, s in figures),
        )

    text = f"{ms(t_z)} ({z.raw.numel()} cells) / {ms(t_resid)} ({resid.raw.numel()} cells)"
    if bench.args.skip_tl:
        bench.row("sweeps", text + "; TransformerLens not run (--skip-tl)")
    else:
        try:
            tl = tl_loops(model, bench.sync)
        except Exception as exc:
            bench.fail("sweeps", exc, text + "; TransformerLens's loops ")
        else:
            bench.row(
                "sweeps",
                f"{text}; TransformerLens's loop {ms(tl['z'][0])} / {ms(tl['resid_pre'][0])} "
                f"({tl['z'][0] / t_z:.0f}x / {tl['resid_pre'][0] / t_resid:.0f}x); max "
                f"|normalized difference| {max_diff(tl['z'][1], z.normalized):.1e} / "
                f"{max_diff(tl['resid_pre'][1], resid.normalized):.1e}",
            )

    with bench.rows("exact"):
        t_cpu, on_cpu = bench.timed(
            lambda e: actpatch.sweep(e, "z", "logit_diff"),
            lambda: experiment(cpu_model),
            repeats=1,
            warmup=0,
        )
        bench.row(
            "exact",
            f"max |normalized difference| {max_diff(z.normalized, on_cpu.normalized):.1e} "
            f"({bench.device} against cpu, {z.raw.numel()} cells; largest |value| "
            f"{float(on_cpu.normalized.abs().nan_to_num().max()):.2f}); the CPU sweep "
            f"{ms(t_cpu)} ({torch.get_num_threads()} threads)",
        )

    with bench.rows("split"):
        bench.row("split", device_map_split(bench, cpu_model, sweeps["z"]))


def device_map_split(bench: Bench, cpu_model: LoadedModel, single: tuple[float, Any]) -> str:
    """The GPT-2-shaped model saved to a folder and loaded with a device map (FILE.json): the
    embeddings, the first half of the blocks, the final norm and the (tied) unembedding on the
    device, the other blocks on the CPU; in `--smoke` every entry is `cpu`, block by block.
    Its head sweep's time and difference from the single-device sweep."""
    first = str(bench.device) if bench.cuda else "cpu"
    n_layers = cpu_model.n_layers
    placement = {
        "transformer.wte": first,
        "transformer.wpe": first,
        **{f"transformer.h.{i}": first if i < n_layers // 2 else "cpu" for i in range(n_layers)},
        "transformer.ln_f": first,
        "lm_head": first,  # tied to transformer.wte: the two share a device
    }
    with tempfile.TemporaryDirectory() as tmp:
        folder, map_file = Path(tmp) / "model", Path(tmp) / "device_map.json"
        hf_logging.disable_progress_bar()  # no "Writing model shards" bar
        cpu_model.hf_model.save_pretrained(folder)
        map_file.write_text(json.dumps(placement))
        split = actpatch.load_model(str(folder), device_map=str(map_file))
        t_split, result = bench.timed(
            lambda e: actpatch.sweep(e, "z", "logit_diff"),
            lambda: experiment(split),
            repeats=min(3, bench.args.repeats),
        )
        devices = split.devices
    t_single, z = single
    return (
        f"{ms(t_split)} ({result.backend} path; blocks 0-{n_layers // 2 - 1} on {first}, "
        f"{n_layers // 2}-{n_layers - 1} on cpu; the model's devices: {', '.join(devices)}); "
        "the single-device "
        f"sweep {ms(t_single)}; max |normalized difference| from it "
        f"{max_diff(result.normalized, z.normalized):.1e}"
    )


# -- the bigger models ----------------------------------------------------------------------


def head_sweep(bench: Bench, model: LoadedModel) -> tuple[float, actpatch.SweepResult]:
    """The median time and the result of `model`'s head sweep from fresh experiments."""
    return bench.timed(lambda e: actpatch.sweep(e, "z", "logit_diff"), lambda: experiment(model))


def one_billion(bench: Bench) -> None:
    """Llama-3.2-1B-shaped: the head sweep in float32, then the same weights cast to bfloat16."""
    with bench.rows("1b", "cast"):
        reason = does_not_fit(bench, "llama1b", torch.float32)
        if reason:
            bench.row("1b", reason)
            bench.row("cast", reason)
            return
        fp32 = build(bench, "llama1b", torch.float32, bench.device)
        hf_model = fp32.hf_model
        t32, z32 = head_sweep(bench, fp32)
        del fp32  # the cached runner reads the fp32 tensors: a new LoadedModel after the cast
        gc.collect()
        bf16 = LoadedModel(
            "random llama1b, cast", "random weights", hf_model.to(torch.bfloat16), gpt2_tokenizer()
        )
        t16, z16 = head_sweep(bench, bf16)
        bench.row(
            "1b",
            f"{ms(t32)} / {ms(t16)} ({z32.raw.numel()} cells, {z32.backend} path)",
        )
        bench.row(
            "cast",
            f"max |normalized difference| {max_diff(z16.normalized, z32.normalized):.2e} "
            f"(head sweep, {z32.raw.numel()} cells; largest |value| "
            f"{float(z32.normalized.abs().nan_to_num().max()):.2f}; clean - corrupt logit "
            f"difference {float(z32.clean - z32.corrupt):.3f} in fp32, "
            f"{float(z16.clean - z16.corrupt):.3f} in bf16)",
        )


def big(bench: Bench, key: str, kind: str, atp: bool) -> None:
    """A bfloat16 model built on the device: head sweep, resid_pre sweep (and AtP of heads by
    position), the weights' size and the peak memory."""
    with bench.rows(key):
        reason = does_not_fit(bench, kind, torch.bfloat16)
        if reason:
            bench.row(key, reason)
            return
        t0 = time.perf_counter()
        model = build(bench, kind, torch.bfloat16, bench.device)
        bench.sync()
        built = time.perf_counter() - t0
        weights = sum(p.numel() * p.element_size() for p in model.hf_model.parameters())
        bench.reset_peak()
        repeats = min(3, bench.args.repeats)
        figures, cells = [], []
        for component in ("z", "resid_pre"):
            seconds, result = bench.timed(
                lambda e, c=component: actpatch.sweep(e, c, "logit_diff"),
                lambda: experiment(model),
                repeats=repeats,
            )
            figures.append(seconds)
            cells.append(f"{result.raw.numel()}")
        if atp:
            seconds, result = bench.timed(
                lambda e: actpatch.attribute(e, "z_by_pos", "atp", "denoising", "logit_diff"),
                lambda: experiment(model),
                repeats=repeats,
            )
            figures.append(seconds)
            cells.append(f"{result.estimate.numel()}")
        bench.row(
            key,
            " / ".join(ms(s) for s in figures)
            + f" ({' / '.join(cells)} cells); {model.n_params / 1e9:.3g} B parameters, "
            f"weights {weights / GB:.1f} GB, {bench.peak()}; built in {built:.1f} s",
        )


def environment(bench: Bench) -> str:
    from importlib.metadata import version

    line = (
        f"torch {torch.__version__}, CUDA {torch.version.cuda}, transformers "
        f"{version('transformers')}, TransformerLens {version('transformer-lens')}; "
        f"{torch.get_num_threads()} CPU threads; device {bench.device}"
    )
    if bench.cuda:
        free, total = torch.cuda.mem_get_info(bench.device)
        line += (
            f": {torch.cuda.get_device_name(bench.device)}, {free / GB:.1f} of "
            f"{total / GB:.1f} GB free"
        )
    else:
        line += f", {bench.free_bytes() / GB:.1f} GB of memory available"
    return line


def print_table(bench: Bench) -> None:
    print("\n| model | what | result |\n|---|---|---|")
    kinds = {"sweeps": "gpt2", "1b": "llama1b", "8b": "llama8b", "32b": "qwen32b"}
    kinds |= {"exact": "gpt2", "cast": "llama1b", "split": "gpt2"}
    for key, model, what in ROWS:
        label = bench.model_label(model, kinds.get(key))
        print(f"| {label} | {what} | {bench.results.get(key, 'not run')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU, every row")
    parser.add_argument(
        "--device", default=None, help="default: cuda if there is one (cpu with --smoke)"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs (default 10; 1 with --smoke)"
    )
    parser.add_argument("--skip-tl", action="store_true", help="skip TransformerLens's loops")
    parser.add_argument(
        "--skip-big", action="store_true", help="skip the 8B- and 32B-shaped models"
    )
    args = parser.parse_args()
    if args.device is None:
        args.device = "cpu" if args.smoke or not torch.cuda.is_available() else "cuda:0"
    if args.repeats is None:
        args.repeats = 1 if args.smoke else 10
    if not args.smoke and not args.device.startswith("cuda"):
        sys.exit(
            f"bench_gpu.py measures a GPU, and the device here is {args.device!r}: run it on a "
            "machine with a CUDA GPU, or pass --smoke to run every row with tiny shapes on the CPU."
        )
    bench = Bench(args)
    print(environment(bench), flush=True)
    if args.smoke:
        print("--smoke: tiny shapes stand in for every model; the figures mean nothing")

    with bench.rows("sweeps", "hf", "hooks", "attribution", "ioi", "launches", "exact", "split"):
        cpu_model = build(bench, "gpt2", torch.float32, "cpu")
        model = LoadedModel(
            cpu_model.name,
            cpu_model.source,
            copy.deepcopy(cpu_model.hf_model).to(bench.device),
            cpu_model.tokenizer,
        )
        gpt2_rows(bench, cpu_model, model)
        del model, cpu_model
    one_billion(bench)
    if args.skip_big:
        for key in ("8b", "32b"):
            bench.row(key, "not run (--skip-big)")
    else:
        big(bench, "8b", "llama8b", atp=True)
        big(bench, "32b", "qwen32b", atp=False)

    print_table(bench)
    print(f"\ntotal {time.perf_counter() - bench.t0:.1f} s")
    if bench.failed:
        sys.exit(f"rows that failed: {', '.join(bench.failed)}")


if __name__ == "__main__":
    main()
