"""Replaying a batch of patched cells from a captured CUDA graph, for a GPU that waits on launches.

On a GPU, a sweep of a small model is bound by kernel launches, not arithmetic: a GPT-2-small
head sweep launches hundreds of small kernels, each costing the CPU several microseconds, while
the GPU computes each in less. A CUDA graph records one run's kernels once and replays them all
with one launch. The patched run of a cell batch (`cells.run_cells`) has fixed shapes for a
given prompt length, component and set of cells, so it can be recorded: its inputs (the cached
residual stream, past keys and values, source activations, mask; `cells.cell_inputs`) are copied
into buffers the graph reads, the graph replays, and its output is copied out. The unpatched
runs a sweep starts from (`cached_forward`) are recorded the same way, per token shape, and so
is attribution's gradient pass from the cached runs (forward and backward passes together,
`gradients.gradient_run`), which AtP, AtP*, EAP and EAP-IG share.

When it pays: a recording costs about two ordinary runs (one to warm up, one recorded), so a
graph helps when the same shapes come back: the page re-running a sweep on the same prompt,
the batches of a dataset's length groups, a server's repeated requests. Each model keeps its
last `KEPT` recordings (each holds its own activation memory on the GPU).

A recording is checked once: its first replay must give what the eager warm-up gave on the same
buffers (`differs`). A recording that fails (out of GPU memory, an operation CUDA graphs refuse,
or a replay that does not reproduce) is logged and the run computes as it would without graphs:
the same numbers, at the eager speed.

Off by default, and only on CUDA (`load_model(..., cuda_graphs=True)`, `--cuda-graphs`,
`ACTPATCH_CUDA_GRAPHS`). On a CPU there are no CUDA graphs; `Replay` then runs the same function
eagerly on its buffers, which is how the tests check that a replay reads only its buffers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from typing import Any

import torch
from torch import Tensor

# Recordings kept per model, least recently used dropped first (each holds the GPU memory of
# its batch's activations, up to the batch budget).
KEPT = 8

Inputs = dict[str, Tensor]
logger = logging.getLogger("actpatch.graphs")


class Replay:
    """One recorded run: `fn(buffers)` captured as a CUDA graph over static input buffers."""

    def __init__(self, fn: Callable[[Inputs], Any], inputs: Inputs) -> None:
        self.fn: Callable[[Inputs], Any] | None = fn
        # The graph reads these buffers, never the caller's tensors: each call copies into them.
        self.buffers = {name: value.clone() for name, value in inputs.items()}
        self.graph: Any = None
        self.output: Any = None
        device = next(iter(inputs.values())).device
        if device.type == "cuda":
            self._record(device)

    def _record(self, device: torch.device) -> None:
        # Warm up on a side stream first, as CUDA graphs need: lazily built tables (rotary
        # angles, causal masks) and the allocator's first blocks are made outside the capture.
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            expected = _copied(self.fn(self.buffers))  # type: ignore[misc]
        torch.cuda.current_stream(device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        # thread_local: a server's other threads may use the GPU while this one records.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            self.output = self.fn(self.buffers)  # type: ignore[misc]
        # The recording must give what the run gave on the same buffers: a capture that missed
        # work would replay stale numbers. Checked once; a mismatch runs as is (`Replays.run`).
        graph.replay()
        problem = differs(self.output, expected)
        if problem is not None:
            raise RuntimeError(f"the recorded run does not reproduce its eager run: {problem}")
        self.graph = graph
        self.fn = None  # the graph holds the run; its closure (an experiment) can go

    def __call__(self, inputs: Inputs) -> Any:
        """The run on `inputs` (same names and shapes as recorded): copied in, replayed, and the
        output copied out (the next replay overwrites the graph's own output)."""
        for name, value in inputs.items():
            self.buffers[name].copy_(value)
        if self.graph is None:
            assert self.fn is not None
            return self.fn(self.buffers)
        self.graph.replay()
        return _copied(self.output)


def differs(got: Any, expected: Any, tolerance: float = 1e-3) -> str | None:
    """Where two runs' outputs (tensors, or tuples, lists and dicts of them) differ by more than
    `tolerance` relative to the larger value (NaN equal to NaN), or None when they agree."""
    if isinstance(expected, Tensor):
        if not isinstance(got, Tensor) or got.shape != expected.shape:
            return f"shape {getattr(got, 'shape', None)} against {tuple(expected.shape)}"
        a, b = got.detach().float(), expected.detach().float()
        if not torch.equal(a.isnan(), b.isnan()):
            return "NaN in other places"
        a, b = a.nan_to_num(), b.nan_to_num()
        scale = max(float(b.abs().max()) if b.numel() else 0.0, 1.0)
        worst = float((a - b).abs().max()) if b.numel() else 0.0
        if worst > tolerance * scale:
            return f"largest difference {worst:.3g} (scale {scale:.3g})"
        return None
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return "a different structure"
        for g, e in zip(got, expected, strict=True):
            problem = differs(g, e, tolerance)
            if problem is not None:
                return problem
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict) or got.keys() != expected.keys():
            return "different keys"
        for key, e in expected.items():
            problem = differs(got[key], e, tolerance)
            if problem is not None:
                return f"{key}: {problem}"
        return None
    return None


def _copied(output: Any) -> Any:
    """A copy of a run's output: a tensor, or tuples, lists and dicts of them."""
    if isinstance(output, Tensor):
        return output.clone()
    if isinstance(output, (tuple, list)):
        return type(output)(_copied(item) for item in output)
    if isinstance(output, dict):
        return {key: _copied(value) for key, value in output.items()}
    return output


class Replays:
    """A model's recordings, by key and input shapes; the least recently used dropped past
    `KEPT`."""

    def __init__(self, kept: int | None = None) -> None:
        self.kept = KEPT if kept is None else kept
        self._known: OrderedDict[Hashable, Replay] = OrderedDict()
        self._lock = threading.Lock()
        # Runs a recording failed for (an operation CUDA graphs refuse): run as they are, the
        # same numbers, without trying again.
        self._unrecordable: set[Hashable] = set()
        self.recorded = 0  # how many recordings were made (a miss), for benchmarks and tests

    def __len__(self) -> int:
        return len(self._known)

    @property
    def graph_count(self) -> int:
        """How many of the kept recordings are CUDA graphs (none on a CPU)."""
        return sum(1 for replay in self._known.values() if replay.graph is not None)

    def run(self, key: Hashable, inputs: Inputs, fn: Callable[[Inputs], Any]) -> Any:
        """`fn(inputs)`, replayed from the recording for `key` and the inputs' shapes (recorded
        first when there is none). One replay at a time per model: a graph's buffers are shared."""
        full = (key, tuple((n, tuple(v.shape), v.dtype, str(v.device)) for n, v in inputs.items()))
        with self._lock:
            if full in self._unrecordable:
                return fn(inputs)
            replay = self._known.get(full)
            if replay is None:
                try:
                    replay = Replay(fn, inputs)
                except torch.cuda.OutOfMemoryError:
                    # The recordings' memory is what ran out: let it go, and run this one as is.
                    self._known.clear()
                    torch.cuda.empty_cache()
                    logger.warning("CUDA graphs: out of GPU memory recording; recordings dropped")
                    return fn(inputs)
                except RuntimeError as exc:  # an operation CUDA graphs cannot record
                    self._unrecordable.add(full)
                    logger.warning("CUDA graphs cannot record this run, run as is: %s", exc)
                    return fn(inputs)
                self.recorded += 1
                self._known[full] = replay
                while len(self._known) > self.kept:
                    self._known.popitem(last=False)
            self._known.move_to_end(full)
            return replay(inputs)


def replays_of(runner: Any) -> Replays:
    """The recordings kept for a model's runner (made on first use)."""
    known = getattr(runner, "replays", None)
    if known is None:
        known = Replays()
        runner.replays = known
    return known


def replay(runner: Any, key: Hashable, inputs: Inputs, fn: Callable[[Inputs], Any]) -> Any:
    """`fn(inputs)` through `runner`'s recordings (`Replays.run`)."""
    return replays_of(runner).run(key, inputs, fn)


def cached_forward(runner: Any) -> Callable[..., tuple[Tensor, dict[Any, Tensor]]]:
    """`runner.run_with_cache`, replayed from a recording per token shape and cached names:
    the unpatched runs every sweep starts with. The cache comes back as copies (the next
    replay overwrites the graph's own tensors)."""

    def forward(
        tokens: Tensor, names: Iterable[str], pad: Tensor | None = None
    ) -> tuple[Tensor, dict[Any, Tensor]]:
        wanted = tuple(sorted(names))
        inputs = {"tokens": tokens.to(runner.device)}  # on the GPU before recording
        if pad is not None:
            inputs["pad"] = pad

        def run(inputs: Inputs) -> tuple[Tensor, dict[Any, Tensor]]:
            padding = {"pad": inputs["pad"]} if "pad" in inputs else {}
            return runner.run_with_cache(inputs["tokens"], wanted, **padding)  # type: ignore[no-any-return]

        return replay(runner, ("run_with_cache", wanted), inputs, run)  # type: ignore[no-any-return]

    return forward
