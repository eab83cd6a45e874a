"""Length groups on Ray workers: the one-process numbers exactly, progress, cancel, lost workers.

The Ray tests run on a local Ray instance with two CPU workers (`ray_session`, started once).
The reference for every number is the same method run in this process: both pool the groups'
results with the same code (`actpatch.patching.groups`), so they must agree to the last bit:
the same per-pair values, the same bootstrap interval, the same warnings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import threading
import time
from typing import Any

import pytest
import torch

import actpatch
from actpatch.datasets import load_dataset
from actpatch.errors import ActpatchError, CancelledError, InputError
from actpatch.patching import groups, workers
from actpatch.patching.ablation import ablate_many
from actpatch.patching.circuit import evaluate_many
from actpatch.patching.edges import edge_attribution_many
from actpatch.patching.engine import sweep_many
from actpatch.patching.experiment import Experiment, dataset_experiments, group_by_length, padded
from actpatch.patching.paths import path_patch_many
from actpatch.patching.remote import GroupRecipe, ModelSpec
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.conftest import MIXED_IDENTICAL, MIXED_UNSPACED, mixed_groups

SHORT = ("Mary met John, and John thanked", "Mary met John, and Mary thanked")


def fresh_ioi(model: Any) -> list[Experiment]:
    """Twelve IOI pairs in several length groups, with role positions, nothing run yet."""
    return dataset_experiments(model, load_dataset("ioi:12"))


@pytest.fixture(scope="module")
def ioi_groups(tiny_model):
    return fresh_ioi(tiny_model)


def no_runs_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """This process runs no forward pass (the workers run them, and tell the warnings' facts)."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a forward pass in the driver")

    for name in ("run", "logits", "run_both_with"):
        monkeypatch.setattr(Experiment, name, refuse)


@pytest.fixture(scope="module")
def three_pairs(tiny_model):
    """Pairs 0 and 1 (the IOI prompt) in one length group, pair 2 (shorter) in another."""
    return group_by_length(
        tiny_model,
        [IOI_CLEAN, IOI_CLEAN, SHORT[0]],
        [IOI_CORRUPT, IOI_CORRUPT, SHORT[1]],
        [" Mary"] * 3,
        [" John"] * 3,
    )


def as_json(result: Any) -> str:
    """Everything a result says, but its time, as text (NaN included, compared as written)."""
    data = result.to_dict()
    data.pop("seconds", None)
    return json.dumps(data, sort_keys=True)


# -- without Ray ----------------------------------------------------------------------------------


def test_a_group_rebuilt_from_its_recipe_is_the_same_experiment(tiny_model, ioi_groups):
    for exp in [ioi_groups[0], padded(ioi_groups)]:
        again = GroupRecipe.of(exp).build(tiny_model)
        assert torch.equal(again.clean_tokens, exp.clean_tokens)
        assert torch.equal(again.corrupt_tokens, exp.corrupt_tokens)
        assert torch.equal(again.target_ids, exp.target_ids)
        assert exp.wrong_ids is not None and again.wrong_ids is not None
        assert torch.equal(again.wrong_ids, exp.wrong_ids)
        assert (again.pad is None) == (exp.pad is None)
        if exp.pad is not None:
            assert again.pad is not None and torch.equal(again.pad, exp.pad)
        assert again.roles == exp.roles and again.first_diff == exp.first_diff
        assert again.pair_index == exp.pair_index and again.backend == exp.backend


def test_a_model_built_in_memory_cannot_go_to_workers(tiny_model):
    built = dataclasses.replace(tiny_model, name="tiny", source="random weights")
    with pytest.raises(InputError, match="cannot be loaded again by name"):
        ModelSpec.of(built)


def test_workers_load_the_model_with_its_cuda_graphs_setting(tiny_model):
    spec = ModelSpec.of(dataclasses.replace(tiny_model, cuda_graphs=True))
    assert spec.cuda_graphs
    with pytest.raises(InputError, match="need a CUDA GPU"):  # as this process would
        spec.load()


def test_workers_without_ray_name_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails
    with pytest.raises(InputError, match=r"pip install 'actpatch\[ray\]'"):
        groups.check_workers(2, None)


class RayBesideACluster:
    """Ray as it behaves on a machine where `ray start --head` runs (or RAY_ADDRESS is set):
    `ray.init()` without an address joins that cluster and refuses `num_cpus` there;
    `address="local"` starts a new instance of this process's own."""

    def __init__(self) -> None:
        self.started: list[tuple[Any, Any]] = []

    def is_initialized(self) -> bool:
        return bool(self.started)

    def init(self, address: Any = None, num_cpus: Any = None, **options: Any) -> None:
        if address in (None, "auto") and num_cpus is not None:
            raise ValueError(
                "When connecting to an existing cluster, num_cpus and num_gpus must not be "
                "provided."
            )
        self.started.append((address, num_cpus))


def test_workers_start_their_own_ray_beside_a_running_cluster(monkeypatch):
    ray = RayBesideACluster()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setattr("actpatch.patching.workers._connected", [])  # connect() remembers
    assert workers.connect(None, 2) is ray
    [(address, cpus)] = ray.started
    assert address == "local" and cpus >= 2


def test_bad_worker_counts_and_unreachable_addresses_fail_at_once(three_pairs):
    with pytest.raises(InputError, match="0 workers"):
        sweep_many(three_pairs, "z", workers=0)
    # nothing listens on port 1 of this machine: refused before Ray is asked to connect
    with pytest.raises(InputError, match=r"ray://127\.0\.0\.1:1") as caught:
        sweep_many(three_pairs, "z", ray_address="ray://127.0.0.1:1")
    assert caught.value.field == "ray_address"


def test_an_address_that_answers_but_not_as_ray_does_is_refused_at_once(three_pairs):
    # A listener that accepts and hangs up (a wrong port: SSH, a web server) passes a bare
    # connection test; Ray's own connect would then wait 20 to 40 s before it gave up.
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                listener.accept()[0].close()

    threading.Thread(target=serve, daemon=True).start()
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    started = time.monotonic()
    try:
        with pytest.raises(InputError, match="not as a Ray cluster does") as caught:
            sweep_many(three_pairs, "z", ray_address=address)
    finally:
        listener.close()
    assert caught.value.field == "ray_address" and address in caught.value.message
    assert time.monotonic() - started < 2 * workers.CONNECT_TIMEOUT_S


def test_a_cluster_behind_tls_is_not_asked_for_bare_http2(monkeypatch):
    # Ray's TLS setting makes every port answer TLS: the preface check would refuse it
    listener = socket.create_server(("127.0.0.1", 0))
    monkeypatch.setenv("RAY_USE_TLS", "1")
    try:
        workers.check_reachable(f"127.0.0.1:{listener.getsockname()[1]}")
    finally:
        listener.close()


# -- on a local Ray instance ----------------------------------------------------------------------

ray_tests = pytest.mark.xdist_group("ray")


@ray_tests
@pytest.mark.parametrize("component", ["z", "resid_pre"])
def test_sweep_over_workers_is_the_one_process_sweep(
    ray_session, tiny_model, ioi_groups, component, monkeypatch
):
    told_here: list[tuple[int, int]] = []
    here = sweep_many(ioi_groups, component, progress=lambda d, t: told_here.append((d, t)))
    assert here.batching == "padded" and here.warnings  # batches of groups; something to warn
    fresh = fresh_ioi(tiny_model)
    seen: list[tuple[int, int]] = []
    with monkeypatch.context() as patched:
        no_runs_here(patched)
        there = sweep_many(fresh, component, workers=2, progress=lambda d, t: seen.append((d, t)))
    pool = workers.current_pool()
    assert pool is not None and len(pool.actors) == 2
    assert as_json(there) == as_json(here)  # per-pair values, interval, warnings: all of it
    assert here.ci is not None and there.ci is not None
    assert torch.equal(there.ci.low, here.ci.low) and torch.equal(there.ci.high, here.ci.high)
    assert there.warnings == here.warnings and there.n_pairs == 12
    # one bar over every group, never going back, ending full, as in one process
    assert seen[-1] == told_here[-1] and seen[-1][0] == seen[-1][1]
    assert all(t == seen[-1][1] for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


@ray_tests
def test_other_methods_over_workers_are_their_one_process_results(
    ray_session, tiny_model, ioi_groups, monkeypatch
):
    pool_before = workers.current_pool()
    ran = pool_before.tasks_run if pool_before is not None else 0
    ranked = edge_attribution_many(ioi_groups, "eap").names[:20]
    for method, options in [
        (ablate_many, {"component": "z", "method": "mean"}),
        (edge_attribution_many, {"method": "eap", "verify": 2}),
        (evaluate_many, {"ranked": ranked, "sizes": [0, 5, 20]}),
        (path_patch_many, {"senders": ["a0.h1", "m1"], "receivers": "logits"}),
    ]:
        here = method(ioi_groups, **options)
        assert here.warnings, method.__name__  # the warnings are compared too
        fresh = fresh_ioi(tiny_model)
        with monkeypatch.context() as patched:
            no_runs_here(patched)
            there = method(fresh, workers=2, **options)
        assert as_json(there) == as_json(here), method.__name__
    pool = workers.current_pool()
    assert pool is not None and pool.tasks_run > ran  # they did run on the workers


@ray_tests
def test_warnings_naming_pairs_over_workers_are_the_one_process_warnings(
    ray_session, tiny_model, monkeypatch
):
    """The workers tell each group's pairs by its own rows; the driver names them by their places
    in the dataset, as one process does (MIXED: pairs 1, 3, 6 identical, 2 and 4 unspaced)."""
    for method, options in [
        (sweep_many, {"component": "z", "batching": "grouped"}),
        (ablate_many, {"component": "z", "method": "mean"}),
    ]:
        here = method(mixed_groups(tiny_model), **options)
        fresh = mixed_groups(tiny_model)
        with monkeypatch.context() as patched:
            no_runs_here(patched)
            there = method(fresh, workers=2, **options)
        assert as_json(there) == as_json(here), method.__name__
        pairs = {w.code: w.pairs for w in there.warnings}
        assert pairs["identical_prompts"] == MIXED_IDENTICAL, method.__name__
        assert pairs["leading_space"] == MIXED_UNSPACED, method.__name__


@ray_tests
def test_cancel_stops_the_groups_not_yet_begun(ray_session, ioi_groups):
    batches = len(ioi_groups)  # "grouped": one task per length group
    assert batches >= 4
    sweep_many(ioi_groups, "z", batching="grouped", workers=2)  # workers up and warm
    pool = workers.current_pool()
    assert pool is not None
    ran = pool.tasks_run
    told: list[int] = []

    with pytest.raises(CancelledError, match="length groups had finished"):
        sweep_many(
            ioi_groups,
            "z",
            batching="grouped",
            workers=2,
            progress=lambda done, total: told.append(done),
            should_stop=lambda: any(told),  # once a cell is done anywhere
        )
    assert pool.tasks_run - ran < batches
    # the workers are fit for the next run
    here = sweep_many(ioi_groups, "z", batching="grouped")
    assert as_json(sweep_many(ioi_groups, "z", batching="grouped", workers=2)) == as_json(here)


@ray_tests
def test_a_killed_worker_is_replaced_and_its_group_run_again(ray_session, three_pairs):
    here = sweep_many(three_pairs, "z")
    pool = workers.pool_for(three_pairs[0].model, 2, None)
    pool.grow(2)
    killed = pool.actors[0]
    ray_session.kill(killed)  # the first group goes to this worker, and dies with it
    there = sweep_many(three_pairs, "z", workers=2)
    assert as_json(there) == as_json(here)
    assert pool.actors[0] is not killed


@ray_tests
def test_a_ray_clusters_own_address_passes_the_check(ray_session):
    # the check that refuses a wrong port must let Ray's own port through
    workers.check_reachable(ray_session.get_runtime_context().gcs_address)


def dies_on_pair_2(exp: Any, **options: Any) -> list[int]:
    """A method whose worker process dies on the group holding pair 2 (run on a worker)."""
    if 2 in exp.pair_index:
        os._exit(1)
    return list(exp.pair_index)


@ray_tests
def test_a_worker_dying_twice_fails_naming_the_pairs_lost(ray_session, three_pairs):
    with pytest.raises(ActpatchError) as caught:
        groups.run_each(dies_on_pair_2, three_pairs, workers=2)
    message = str(caught.value)
    assert "died twice" in message and "group 2 of 2" in message
    assert "the dataset's pairs 2." in message and caught.value.field == "workers"


@ray_tests
def test_weights_changed_after_loading_are_refused_not_reloaded(ray_session, tiny_model_dir):
    model = actpatch.load_model(str(tiny_model_dir))
    with torch.no_grad():
        next(model.hf_model.parameters()).view(-1)[0] += 1.0  # the workers load the file's
    changed = fresh_ioi(model)
    with pytest.raises(InputError, match="differs from this process's") as caught:
        sweep_many(changed, "z", workers=2)
    assert caught.value.field == "workers"
