"""Replayed cell batches (`actpatch.patching.graphs`) give the eager engine's numbers.

On a CPU there are no CUDA graphs: a replay runs the recorded function again on its own
buffers. That is what these tests check: a replay reads only its buffers (a second experiment
of the same shapes gets its own answer, not the recorded one's), and gives exactly the eager
run's values. The eager engine is the reference (it is checked against TransformerLens in
test_engine*.py). The last test records a real CUDA graph where a GPU is present.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import actpatch
from actpatch.errors import InputError
from actpatch.patching import graphs, runners
from actpatch.patching.graphs import Replays, replays_of
from tests.conftest import IOI_CLEAN, IOI_CORRUPT

OTHER_CLEAN = "When Anna and Tom went to the park, Tom gave a ball to"
OTHER_CORRUPT = "When Anna and Tom went to the park, Anna gave a ball to"


def replaying(model):
    """The same weights as a model with cuda_graphs on (its own runner and recordings)."""
    return dataclasses.replace(model, cuda_graphs=True)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
@pytest.mark.parametrize("component", ["z", "resid_pre", "pattern", "z_by_pos"])
def test_replay_equals_the_eager_sweep(family_model, family, component):
    model = family_model(family)
    replayed = replaying(model)
    recordings = replays_of(runners.runner(replayed, "fast"))
    recorded = []
    for clean, corrupt, target, wrong in (
        (IOI_CLEAN, IOI_CORRUPT, " Mary", " John"),
        (OTHER_CLEAN, OTHER_CORRUPT, " Anna", " Tom"),
    ):
        eager = actpatch.sweep(actpatch.Experiment(model, clean, corrupt, target, wrong), component)
        again = actpatch.sweep(
            actpatch.Experiment(replayed, clean, corrupt, target, wrong), component
        )
        assert torch.equal(again.per_pair.isnan(), eager.per_pair.isnan())
        torch.testing.assert_close(again.per_pair, eager.per_pair, rtol=0, atol=0, equal_nan=True)
        torch.testing.assert_close(again.clean_per_pair, eager.clean_per_pair, rtol=0, atol=0)
        recorded.append(recordings.recorded)
    # The unpatched runs and the cell batch were recorded once, by the first prompt pair; the
    # second (the same shapes, other tokens) replayed them.
    assert recorded == [2, 2]


def test_replay_with_padding_and_several_batches(family_model):
    """Prompts of different lengths padded into one batch, in batches of a few cells."""
    model = family_model("llama")
    clean = [IOI_CLEAN, "When Mary and John went out, John gave a drink to"]
    corrupt = [IOI_CORRUPT, "When Mary and John went out, Mary gave a drink to"]

    def sweep(m):
        exp = actpatch.Experiment(m, clean, corrupt, " Mary", " John", pad=True)
        return actpatch.sweep(exp, "z", max_memory=200_000)

    eager, again = sweep(model), sweep(replaying(model))
    torch.testing.assert_close(again.per_pair, eager.per_pair, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("batching", ["grouped", "padded"])
def test_replay_of_a_dataset_by_role(family_model, batching):
    """A dataset of several lengths, each position-resolved column a role (each pair's own
    positions), in length groups or one padded batch."""
    from actpatch.datasets import load_dataset
    from actpatch.patching.experiment import dataset_experiments

    model = family_model("llama")
    data = load_dataset("ioi:8")

    def sweep(m, component):
        return actpatch.sweep_many(
            dataset_experiments(m, data), component, positions="role", batching=batching
        )

    for component in ("z_by_pos", "resid_pre", "z"):
        eager, again = sweep(model, component), sweep(replaying(model), component)
        torch.testing.assert_close(again.per_pair, eager.per_pair, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2"])
def test_replayed_gradient_passes_equal_the_eager_estimates(family_model, family):
    """AtP, AtP* (GradDrop's passes), EAP and EAP-IG (interpolated inputs) through recorded
    gradient passes. The eager reference computes a cold experiment's pass in its shared
    forward, the replay from the cached runs: the same numbers up to float rounding."""
    from actpatch.patching.attribution import attribute_components
    from actpatch.patching.edges import edge_attribution

    model = family_model(family)
    replayed = replaying(model)
    recordings = replays_of(runners.runner(replayed, "fast"))

    def estimates(m, clean, corrupt, target, wrong):
        def exp():
            return actpatch.Experiment(m, clean, corrupt, target, wrong)

        atp = attribute_components(exp(), ["z_by_pos", "mlp_out", "resid_pre"], "atp")
        star = attribute_components(exp(), ["z"], "atp*")
        eap = edge_attribution(exp(), "eap")
        eap_ig = edge_attribution(exp(), "eap-ig", steps=3)
        return [r.estimate for r in (*atp, *star)] + [torch.tensor(e.scores) for e in (eap, eap_ig)]

    counts = []
    for pair in (
        (IOI_CLEAN, IOI_CORRUPT, " Mary", " John"),
        (OTHER_CLEAN, OTHER_CORRUPT, " Anna", " Tom"),
    ):
        for got, want in zip(estimates(replayed, *pair), estimates(model, *pair), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
        counts.append(recordings.recorded)
    assert counts[0] > 0 and counts[1] == counts[0]  # the second pair replayed them all


def test_a_single_patch_is_not_recorded(family_model):
    """The page patches one cell per click: each would be a recording of its own."""
    model = family_model("gpt2")
    replayed = replaying(model)
    recordings = replays_of(runners.runner(replayed, "fast"))
    for layer, head in ((0, 1), (1, 2)):
        eager = actpatch.patch(
            actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John"), layer, head
        )
        again = actpatch.patch(
            actpatch.Experiment(replayed, IOI_CLEAN, IOI_CORRUPT, " Mary", " John"), layer, head
        )
        assert again.metric_patched == eager.metric_patched
        assert again.patched_prob == eager.patched_prob
    assert recordings.recorded == 1  # the unpatched runs only


def test_recordings_keep_the_most_recent():
    replays = Replays(kept=2)
    x = {"x": torch.arange(3.0)}
    for key in ("a", "b", "c"):
        assert torch.equal(replays.run(key, x, lambda inputs: inputs["x"] * 2), x["x"] * 2)
    assert len(replays) == 2 and replays.recorded == 3
    replays.run("c", x, lambda inputs: inputs["x"])  # kept: no new recording
    assert replays.recorded == 3
    replays.run("a", x, lambda inputs: inputs["x"])  # dropped: recorded again
    assert replays.recorded == 4


def test_a_replay_reads_its_buffers_not_the_caller_tensors():
    replays = Replays()
    first = {"x": torch.tensor([1.0, 2.0])}
    replays.run("k", first, lambda inputs: inputs["x"] + 1)
    second = {"x": torch.tensor([10.0, 20.0])}
    # The recorded function is the first call's; the second call's own function is not run.
    out = replays.run("k", second, lambda inputs: torch.zeros(2))
    assert out.tolist() == [11.0, 21.0]


def test_cuda_graphs_refused_off_a_gpu(tiny_model_dir):
    with pytest.raises(InputError, match="need a CUDA GPU") as info:
        actpatch.load_model(str(tiny_model_dir), cuda_graphs=True)
    assert info.value.field == "cuda_graphs"
    with pytest.raises(InputError, match="device map"):
        actpatch.load_model(str(tiny_model_dir), cuda_graphs=True, device_map={"": "cpu"})


@pytest.mark.skipif(not torch.cuda.is_available(), reason="records a real CUDA graph: needs a GPU")
def test_a_recorded_cuda_graph_equals_the_eager_sweep(tiny_model_dir):
    model = actpatch.load_model(str(tiny_model_dir), device="cuda")
    replayed = replaying(model)
    for clean, corrupt, target, wrong in (
        (IOI_CLEAN, IOI_CORRUPT, " Mary", " John"),
        (OTHER_CLEAN, OTHER_CORRUPT, " Anna", " Tom"),
    ):
        eager = actpatch.sweep(actpatch.Experiment(model, clean, corrupt, target, wrong), "z")
        again = actpatch.sweep(actpatch.Experiment(replayed, clean, corrupt, target, wrong), "z")
        torch.testing.assert_close(again.per_pair, eager.per_pair, rtol=1e-5, atol=1e-5)
    assert replays_of(runners.runner(replayed, "fast")).graph_count == 2


class WaitsOnTheDevice(TorchDispatchMode):
    """Records the operators that a CUDA graph cannot capture: those that make the CPU wait
    for the GPU (reading a value back, sizes that depend on values) and tensors made from
    Python data (a copy from host memory on a GPU). A move between devices cannot be told from
    a no-op on a CPU-only machine, so it is not checked here."""

    WAITING = frozenset(
        {
            "aten._local_scalar_dense",  # .item(), float(t)
            "aten.item",  # the same, in inference mode
            "aten.nonzero",
            "aten.masked_select",
            "aten.unique",
            "aten._unique2",
            "aten.equal",
            "aten.is_nonzero",
            "aten.lift_fresh",  # torch.tensor(data): a copy from host memory
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func.overloadpacket)
        if name in self.WAITING:
            self.seen.append(name)
        if name == "aten.index" and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in args[1]
        ):
            self.seen.append("aten.index with a boolean mask")
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("family", ["gpt2", "llama", "gemma2", "gpt_neox"])
def test_recorded_runs_never_wait_on_the_device(family_model, family, monkeypatch):
    """What a replay records must be capturable on a GPU: after the first run (the warm-up
    before a capture, which fills the rotary and mask tables), the recorded functions launch
    no operator that waits on the device or copies from the host. Checked on the CPU, for a
    sweep of every component kind, padded prompts included."""
    from actpatch.patching.attribution import attribute_components
    from actpatch.patching.edges import edge_attribution

    seen: list[str] = []
    guarded_calls: list[int] = []
    original = graphs.Replay.__init__
    monkeypatch.setattr(graphs, "KEPT", 64)  # every recording of both rounds kept

    def init(self, fn, inputs):
        calls = []

        def guarded(buffers):
            calls.append(1)
            if len(calls) == 1:
                return fn(buffers)
            with WaitsOnTheDevice() as mode:
                out = fn(buffers)
            seen.extend(mode.seen)
            guarded_calls.append(1)
            return out

        original(self, guarded, inputs)

    monkeypatch.setattr(graphs.Replay, "__init__", init)
    model = replaying(family_model(family))
    padded = (
        [IOI_CLEAN, "When Mary and John went out, John gave a drink to"],
        [IOI_CORRUPT, "When Mary and John went out, Mary gave a drink to"],
    )
    for _ in range(2):  # the second time replays
        for component in ("z", "resid_pre", "pattern", "z_by_pos", "mlp_out"):
            actpatch.sweep(
                actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John"), component
            )
        actpatch.sweep(actpatch.Experiment(model, *padded, " Mary", " John", pad=True), "z")
        # gradient passes: AtP* (GradDrop's passes), EAP and EAP-IG (interpolated inputs)
        exp = actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")
        attribute_components(exp, ["z_by_pos", "mlp_out"], "atp*")
        edge_attribution(exp, "eap")
        edge_attribution(exp, "eap-ig", steps=2)
    recordings = replays_of(runners.runner(model, "fast"))
    # 11 recordings of sweeps (5 component kinds' cell batches, 4 kinds of unpatched runs, the
    # padded pair's two) and the gradient passes', each replayed at least once in round two
    assert len(recordings) == recordings.recorded > 11
    assert len(guarded_calls) >= recordings.recorded
    assert seen == []


def test_a_failed_recording_runs_as_is(monkeypatch, caplog):
    """Out of memory drops the recordings; an operation graphs refuse is not tried again. Both
    answer what the run computes, and say so in the log."""
    replays = Replays()
    x = {"x": torch.arange(3.0)}
    replays.run("kept", x, lambda inputs: inputs["x"])
    original = graphs.Replay.__init__
    failures = iter([torch.cuda.OutOfMemoryError("no memory"), RuntimeError("not capturable")])

    def failing(self, fn, inputs):
        raise next(failures)

    monkeypatch.setattr(graphs.Replay, "__init__", failing)
    assert replays.run("big", x, lambda inputs: inputs["x"] * 2).tolist() == [0.0, 2.0, 4.0]
    assert len(replays) == 0  # the memory-holding recordings were let go
    assert replays.run("odd", x, lambda inputs: inputs["x"] * 3).tolist() == [0.0, 3.0, 6.0]
    monkeypatch.setattr(graphs.Replay, "__init__", original)
    assert replays.run("odd", x, lambda inputs: inputs["x"] * 3).tolist() == [0.0, 3.0, 6.0]
    assert replays.recorded == 1  # "odd" was not recorded again
    assert "out of GPU memory" in caplog.text and "not capturable" in caplog.text


def test_a_recording_is_checked_against_its_eager_run():
    """`differs`, with which a recording's first replay is held to its eager warm-up (a capture
    that missed work would replay stale numbers, and is then run as is)."""
    base = torch.tensor([1.0, float("nan"), -3.0])
    assert graphs.differs(base.clone(), base) is None
    assert graphs.differs(base + 1e-5, base) is None  # within 1e-3 of the scale
    assert "largest difference" in graphs.differs(base + 0.5, base)
    assert graphs.differs(torch.tensor([1.0, 2.0, -3.0]), base) == "NaN in other places"
    nested = ({"a": base}, [base, base])
    assert graphs.differs(({"a": base.clone()}, [base, base.clone()]), nested) is None
    assert "a: largest" in graphs.differs(({"a": base * 2}, [base, base]), nested)
    assert "shape" in graphs.differs(base[:2], base)
