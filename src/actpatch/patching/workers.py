"""Workers: a dataset's length groups computed on Ray actors that each hold the model once.

A method over a dataset runs once per length group (`actpatch.patching.groups`). With workers,
those runs happen in other processes, on this machine or on the nodes of a Ray cluster:

- a *worker* is a Ray actor that loads the model once, from what it was loaded from here
  (`ModelSpec`: a hub name, a local folder or GGUF file, `demo` or a packaged model's name,
  with the device and the dtype); weights never travel with a task. A model on a GPU gets one
  GPU per worker (Ray says which: each worker sees its own as `cuda`);
- a *task* is one length group (or one left-padded batch of groups, `engine.sweep_many`): its
  pairs travel as data (`GroupRecipe`: prompts, token ids, answers, role positions and the
  dataset's pair indices) and the worker rebuilds the experiment beside its model;
- what comes back is the method's own result for that group, every pair's values included.
  The pooling and the statistics (means, the bootstrap interval, the warnings over the whole
  dataset) are computed here, over every pair, by the same code as in one process, so the
  result is the one-process result exactly.

Tasks wait here, not on the workers: each worker gets the next group when it is free.
Progress counts the cells done in every group at once (each worker says how far it is);
cancelling stops the running groups and starts no other. A worker that dies (its process
killed, e.g. for memory) is replaced and its group runs again once; dying a second time, the
run fails naming the pairs lost, rather than answering over a smaller dataset.

The workers stay up after a run, for the next run on the same model (a server sweeps many
datasets); `release_workers()` ends them. Ray is an optional dependency:
`pip install 'actpatch[ray]'`.
"""

from __future__ import annotations

import inspect
import itertools
import logging
import os
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from actpatch.errors import ActpatchError, CancelledError, InputError, ModelUnavailableError
from actpatch.models import LoadedModel
from actpatch.patching import guardrails
from actpatch.patching.experiment import Experiment
from actpatch.patching.remote import GroupRecipe, ModelSpec, Worker, fingerprint

RAY_EXTRA = "pip install 'actpatch[ray]'"
# How long the driver waits between looks at its workers (progress, cancel), in seconds.
POLL_S = 0.1
# How often a group whose worker died runs again, on a fresh worker.
RETRIES = 1
# How long an unreachable cluster address may take to refuse a connection, in seconds.
CONNECT_TIMEOUT_S = 5.0
# How long cancelled groups may take to notice, in seconds, before their workers are replaced.
STOP_WAIT_S = 30.0
# Where Ray listens when an address names no port: Ray Client (ray://), else the cluster's GCS.
DEFAULT_PORTS = {"ray": 10001, "": 6379}
RAY_PORTS = (
    "ray://HOST:10001 for Ray Client, HOST:6379 for a cluster this machine belongs to, or auto"
)
# Ray's own setting for how long it tries an address that answers (its GCS connect window).
GCS_WAIT_ENV = "RAY_gcs_server_port_wait_time_s"
# HTTP/2's client connection preface, then an empty SETTINGS frame; a server answers SETTINGS.
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
HTTP2_SETTINGS = 4


def import_ray() -> Any:
    """The `ray` module; a teaching error naming the extra to install when it is missing."""
    try:
        import ray
    except ImportError:
        raise InputError(
            f"Running over Ray workers needs Ray, which is not installed here: {RAY_EXTRA} "
            "(or leave the workers out to run in this process).",
            field="workers",
        ) from None
    return ray


# -- connecting ----------------------------------------------------------------------------------

_connected: list[str] = []  # the address this process connected to ("" for a local instance)
_connect_lock = threading.Lock()


def check_reachable(address: str) -> None:
    """Refuse, within seconds, a cluster address where nothing answers, or where what answers
    is not a gRPC server as a Ray head node's ports are (Ray's own connection waits 20 to 40 s
    before it gives up on either)."""
    scheme, _, rest = address.rpartition("://")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", "")
    try:
        number = int(port) if port else DEFAULT_PORTS.get(scheme, DEFAULT_PORTS[""])
        with socket.create_connection((host.strip("[]"), number), timeout=CONNECT_TIMEOUT_S) as s:
            # a cluster behind TLS (Ray's RAY_USE_TLS) answers TLS, not bare HTTP/2
            grpc = os.environ.get("RAY_USE_TLS", "0") not in ("0", "") or speaks_http2(s)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"Cannot reach the Ray cluster at {address!r} ({exc}). Check that it is running "
            f"(`ray start --head` on its head node) and the address: {RAY_PORTS}.",
            field="ray_address",
        ) from None
    if not grpc:
        raise InputError(
            f"Something answers at {address!r}, but not as a Ray cluster does (Ray's ports "
            f"speak gRPC; this one does not). Check the port: {RAY_PORTS}; the dashboard's "
            "port (8265) takes jobs, not workers.",
            field="ray_address",
        )


def speaks_http2(connection: socket.socket) -> bool:
    """Whether the server on `connection` answers HTTP/2's connection preface with its
    SETTINGS frame, as every gRPC server (a Ray head node's GCS and Ray Client ports) does."""
    connection.sendall(HTTP2_PREFACE)
    header = b""
    try:
        while len(header) < 9:  # a frame header: length (3 bytes), type (1), flags, stream
            chunk = connection.recv(9 - len(header))
            if not chunk:
                return False
            header += chunk
    except OSError:  # no answer in time
        return False
    return header[3] == HTTP2_SETTINGS


def connect(address: str | None, workers: int | None) -> Any:
    """Ray, connected: to the instance this process already has (its own `ray.init` is used
    as it is), else to `address` (a cluster), else to a new local instance with a CPU for each
    worker at least (new even when `ray start` left a cluster on this machine or RAY_ADDRESS
    names one: those are `address="auto"`'s)."""
    ray = import_ray()
    if address is not None and address != "auto":
        check_reachable(address)
    with _connect_lock:  # a server's jobs may ask at once
        return _connect(ray, address, workers)


def _connect(ray: Any, address: str | None, workers: int | None) -> Any:
    if ray.is_initialized():
        if address is not None and _connected and _connected[0] != address:
            now = f"the Ray cluster at {_connected[0]!r}" if _connected[0] else "a local Ray"
            raise InputError(
                f"This process is connected to {now} already, and one process uses one "
                f"cluster: to use {address!r}, run from another process.",
                field="ray_address",
            )
        return ray
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if address is None:
            cpus = max(workers or 1, os.cpu_count() or 1)
            # "local": Ray's default would join a cluster found on this machine, and refuse
            # num_cpus there
            ray.init(address="local", num_cpus=cpus, include_dashboard=False, **quiet)
        else:
            ray.init(address=address, **quiet)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address!r}" if address else "a local Ray instance"
        hint = ""
        if address not in (None, "auto"):  # the port answered (check_reachable), Ray did not
            hint = (
                ". A gRPC server answers there, but Ray could not join it as a cluster within "
                f"its connect window ({GCS_WAIT_ENV} seconds, 20 by default): check the "
                f"address ({RAY_PORTS})"
            )
        raise ActpatchError(
            f"Cannot connect to {where}: {str(exc).splitlines()[0]}{hint}",
            field="ray_address" if address else "workers",
        ) from None
    _connected[:] = [address or ""]
    return ray


def _session(ray: Any) -> str:
    """Which Ray session this process is in (a pool's actors belong to one)."""
    try:
        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return _connected[0] if _connected else ""


# -- the pool ------------------------------------------------------------------------------------


def _ranges(indices: Sequence[int]) -> str:
    """Pair indices as runs: [0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    runs: list[list[int]] = []
    for i in sorted(indices):
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


class WorkerPool:
    """Up to `size` workers holding one model, and the loop that runs groups on them."""

    def __init__(
        self,
        ray: Any,
        spec: ModelSpec,
        size: int,
        threads: int,
        gpus: int,
        expected: tuple[str, int, str],
        key: tuple[Any, ...],
    ) -> None:
        self.ray, self.key = ray, key  # key: what a run must match to use these workers
        self.spec, self.size, self.threads, self.gpus = spec, size, threads, gpus
        self.expected = expected  # the driver's fingerprint of the model
        self.actors: list[Any] = []
        self.lock = threading.Lock()  # one run at a time: a worker computes one group
        self.tasks_run = 0  # groups computed on workers (for tests and the curious)
        self._serial = itertools.count()
        self._remote = ray.remote(Worker)

    def next_task(self) -> int:
        """A number for the next task (a worker's progress and stop signals name it)."""
        return next(self._serial)

    def new_actor(self) -> Any:
        """A new worker (it starts loading the model at once)."""
        return self._remote.options(
            num_cpus=self.threads, num_gpus=self.gpus, max_concurrency=2
        ).remote(self.spec, self.threads)

    def grow(self, tasks: int) -> None:
        """Enough workers for `tasks` groups (at most `size`), each checked to hold the model."""
        ray = self.ray
        new = [self.new_actor() for _ in range(min(self.size, tasks) - len(self.actors))]
        for actor in new:
            try:
                found = tuple(ray.get(actor.fingerprint.remote()))
            except (ray.exceptions.RayTaskError, ray.exceptions.RayActorError) as exc:
                for other in new:
                    ray.kill(other)
                cause = getattr(exc, "cause", None) or str(exc).strip().splitlines()[0]
                raise ModelUnavailableError(
                    f"The Ray workers could not load model {self.spec.load_as!r}: {cause}. "
                    "Each worker loads the model itself: on a cluster, every node needs it (in "
                    "its Hugging Face cache, or the same local path), and the memory for it.",
                    field="model",
                ) from None
            if found != self.expected:
                for other in new:
                    ray.kill(other)
                raise InputError(
                    f"The workers' copy of {self.spec.name!r}, loaded from "
                    f"{self.spec.load_as!r}, differs from this process's (dtype, parameters, "
                    f"a sample of the weights: {found} there, {self.expected} here): were its "
                    "weights changed after loading? Run in this process to use changed weights.",
                    field="workers",
                )
        self.actors += new

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)
        self.actors = []

    def run(
        self,
        method: Callable[..., Any],
        experiments: Sequence[Experiment],
        each: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        *,
        progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """`method(experiment, **options, **each[i])` on every experiment, on the workers; the
        results in the experiments' order."""
        with self.lock:
            self.grow(len(experiments))
            return _Run(self, method, experiments, each, options, progress, should_stop).go(
                on_result
            )


class _Run:
    """One run of a method over a dataset's groups on a pool: the scheduling loop."""

    def __init__(
        self,
        pool: WorkerPool,
        method: Callable[..., Any],
        experiments: Sequence[Experiment],
        each: Sequence[Mapping[str, Any]],
        options: Mapping[str, Any],
        progress: Callable[[int, int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        self.pool, self.ray = pool, pool.ray
        self.method, self.experiments = method, experiments
        self.recipes = [GroupRecipe.of(e) for e in experiments]
        self.calls = [{**options, **extra} for extra in each]
        self.progress = progress if "progress" in inspect.signature(method).parameters else None
        self.should_stop = should_stop
        self.results: dict[int, Any] = {}
        self.running: dict[Any, tuple[int, int, int]] = {}  # ref -> (group, worker, task)
        self.state: dict[int, tuple[int, int]] = {}  # group -> (done, total) as last told
        self.shown = -1

    def go(self, on_result: Callable[[int, Any], None] | None) -> list[Any]:
        """Every group's result, in order; whatever still runs when this ends otherwise (an
        error, Ctrl-C) is told to stop."""
        try:
            return self._loop(on_result)
        finally:
            for _group, worker, task in self.running.values():
                self.pool.actors[worker].stop.remote(task)

    def _loop(self, on_result: Callable[[int, Any], None] | None) -> list[Any]:
        ray, pool, n = self.ray, self.pool, len(self.experiments)
        waiting = deque(range(n))
        idle = deque(range(len(pool.actors)))
        deaths = [0] * n
        last_look = 0.0
        while waiting or self.running:
            if self.should_stop is not None and self.should_stop():
                self._stop_running()
                raise CancelledError(
                    f"Cancelled: {len(self.results)} of {n} length groups had finished."
                )
            while waiting and idle:
                group, worker, task = waiting.popleft(), idle.popleft(), pool.next_task()
                ref = pool.actors[worker].run.remote(
                    task, self.method, self.recipes[group], self.calls[group]
                )
                self.running[ref] = (group, worker, task)
            ready, _ = ray.wait(list(self.running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                group, worker, _task = self.running.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayActorError as exc:
                    pool.actors[worker] = pool.new_actor()  # a fresh worker in its place
                    idle.append(worker)
                    deaths[group] += 1
                    self.state.pop(group, None)
                    if deaths[group] > RETRIES:
                        self._stop_running()
                        raise self._lost(group, exc) from None
                    waiting.appendleft(group)
                    continue
                except ray.exceptions.RayTaskError as exc:
                    idle.append(worker)
                    self._stop_running()
                    if isinstance(exc.cause, ActpatchError):
                        raise exc.cause from None
                    raise
                idle.append(worker)
                self.results[group], told, facts = result
                guardrails.remember(self.experiments[group], facts)
                if told[1] > 0:
                    self.state[group] = told
                pool.tasks_run += 1
                if on_result is not None:
                    on_result(group, self.results[group])
            if self.progress is not None:
                if self.running and time.monotonic() - last_look > POLL_S:
                    last_look = time.monotonic()
                    self._look()
                self._report()
        return [self.results[i] for i in range(n)]

    def _look(self) -> None:
        """Ask each busy worker how far its group is."""
        ray = self.ray
        asked = {
            self.pool.actors[worker].status.remote(): (group, task)
            for group, worker, task in self.running.values()
        }
        answered, _ = ray.wait(list(asked), num_returns=len(asked), timeout=POLL_S * 5)
        for ref in answered:
            group, task = asked[ref]
            try:
                told, done, total = ray.get(ref)
            except ray.exceptions.RayActorError:
                continue  # died: its run says so
            if told == task and total > 0:
                self.state[group] = (done, total)

    def _report(self) -> None:
        """progress(done, total) over every group, as one process reports it (each group's
        cells counted as many as the first group's)."""
        assert self.progress is not None
        totals = [total for _, total in self.state.values()]
        if not totals:
            return
        unit, n = totals[0], len(self.experiments)
        done = sum(
            unit if i in self.results else min(self.state.get(i, (0, 0))[0], unit) for i in range(n)
        )
        if done > self.shown:
            self.shown = done
            self.progress(done, n * unit)

    def _stop_running(self) -> None:
        """Tell the running groups to stop and wait for them; a worker that does not stop in
        time is replaced (so the pool is fit for the next run)."""
        ray, pool = self.ray, self.pool
        for _group, worker, task in self.running.values():
            pool.actors[worker].stop.remote(task)
        refs = list(self.running)
        if refs:
            ray.wait(refs, num_returns=len(refs), timeout=STOP_WAIT_S)
        for ref in refs:
            _group, worker, _task = self.running.pop(ref)
            ready, _ = ray.wait([ref], timeout=0)
            if not ready:
                ray.kill(pool.actors[worker])
                pool.actors[worker] = pool.new_actor()

    def _lost(self, group: int, exc: Exception) -> ActpatchError:
        pairs = self.experiments[group].pair_index
        why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ActpatchError(
            f"A Ray worker died twice while computing length group {group + 1} of "
            f"{len(self.experiments)}, so its pairs were lost: the dataset's pairs "
            f"{_ranges(pairs)}. The run stopped rather than answer over fewer pairs. ({why}) "
            "A worker dies when its process is killed, often for lack of memory: give the "
            "workers more memory, or use fewer of them.",
            field="workers",
        )


# -- the pool of this process --------------------------------------------------------------------

_pool: list[WorkerPool] = []
_pool_lock = threading.Lock()


def pool_for(model: LoadedModel, workers: int | None, address: str | None) -> WorkerPool:
    """The workers for `model`: `workers` of them (default: one per GPU of the cluster for a
    model on a GPU, else one per CPU), on the cluster at `address` or a local Ray instance.
    Kept for the next run on the same model; a run on another model replaces them."""
    spec = ModelSpec.of(model)  # refused before Ray starts, when it cannot be loaded again
    ray = connect(address, workers)
    resources = ray.cluster_resources()
    cpus, gpus = int(resources.get("CPU", 0)), int(resources.get("GPU", 0))
    per_gpu = spec.device == "cuda"
    have, unit = (gpus, "GPU") if per_gpu else (cpus, "CPU")
    size = workers or have
    if size < 1 or size > have:
        where = f"at {address!r}" if address else "of this process"
        raise InputError(
            f"The Ray cluster {where} has {have} {unit}s, and each worker needs one: ask for "
            f"at most {have} workers" + (", or add nodes to the cluster." if address else "."),
            field="workers",
        )
    threads = 1 if per_gpu else max(1, min(cpus // size, _largest_node_cpus(ray, cpus)))
    expected = fingerprint(model)
    key = (spec, size, threads, expected, _session(ray))
    with _pool_lock:
        if _pool and _pool[0].key != key:
            _pool.pop().close()
        if not _pool:
            _pool.append(WorkerPool(ray, spec, size, threads, int(per_gpu), expected, key))
        return _pool[0]


def current_pool() -> WorkerPool | None:
    """The workers this process holds now, if any."""
    with _pool_lock:
        return _pool[0] if _pool else None


def _largest_node_cpus(ray: Any, cpus: int) -> int:
    """The most CPUs one node of the cluster has (a worker runs on one node)."""
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return max(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
    except Exception:  # Ray Client or an older Ray without node listing: the cluster's total
        return cpus


def release_workers() -> None:
    """End the workers this process started (each holds a copy of the model)."""
    with _pool_lock:
        if _pool:
            _pool.pop().close()


__all__ = [
    "RAY_EXTRA",
    "WorkerPool",
    "check_reachable",
    "connect",
    "current_pool",
    "import_ray",
    "pool_for",
    "release_workers",
]
