"""Path patching against a plain TransformerLens implementation written here.

The reference is the definition run step by step through TransformerLens's TransformerBridge,
one sender at a time: freeze every head's `hook_z` (and, with frozen MLPs, every `hook_mlp_out`)
at the base run's value, give the sender the source run's value, and read the logits; for
receivers that are heads' q/k/v, record them in that frozen run and patch them into a fresh base
run. Slow and obviously correct; ours batches every sender and must give the same numbers.
"""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.patching.graph import Node, parse_receivers, parse_senders
from actpatch.patching.metrics import from_logits
from actpatch.patching.paths import path_patch
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import _pick_answers

TOL = 1e-4


@pytest.fixture(scope="module")
def exp(tiny_model):
    return actpatch.Experiment(
        tiny_model, IOI_CLEAN, IOI_CORRUPT, *_pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    )


def _tl_path_patch(
    bridge, exp, sender: Node, receivers: list[Node], freeze_mlps: bool, direction: str
) -> float:
    """The normalized metric after path-patching one sender, by TransformerLens hooks."""
    n_layers = exp.model.n_layers
    if direction == "denoising":
        base, source = exp.corrupt_tokens, exp.clean_tokens
    else:
        base, source = exp.clean_tokens, exp.corrupt_tokens

    def metric(logits: torch.Tensor) -> float:
        return float(from_logits("logit_diff", logits[:, -1], exp.target_ids, exp.wrong_ids).mean())

    with torch.no_grad():
        clean = metric(bridge(exp.clean_tokens))
        corrupt = metric(bridge(exp.corrupt_tokens))
        _, base_cache = bridge.run_with_cache(base)
        _, source_cache = bridge.run_with_cache(source)

        def freeze(name: str, layer: int, kind: str):
            def hook(act, hook):
                out = base_cache[name].clone()
                if sender.kind == kind and sender.layer == layer:
                    if kind == "head":
                        out[:, :, sender.head] = source_cache[name][:, :, sender.head]
                    else:
                        out = source_cache[name].clone()
                return out

            return hook

        frozen = [
            (f"blocks.{i}.attn.hook_z", freeze(f"blocks.{i}.attn.hook_z", i, "head"))
            for i in range(n_layers)
        ]
        for i in range(n_layers):
            name = f"blocks.{i}.hook_mlp_out"
            if freeze_mlps or (sender.kind == "mlp" and sender.layer == i):
                if freeze_mlps:
                    frozen.append((name, freeze(name, i, "mlp")))
                else:  # only the sender MLP is patched; the others are recomputed
                    frozen.append((name, lambda act, hook, n=name: source_cache[n].clone()))
        if receivers[0].kind == "logits":
            return (metric(bridge.run_with_hooks(base, fwd_hooks=frozen)) - corrupt) / (
                clean - corrupt
            )
        recorded: dict[Node, torch.Tensor] = {}

        def record(r: Node):
            def hook(act, hook):
                recorded[r] = act[:, :, r.head].clone()
                return act

            return hook

        capture = [(f"blocks.{r.layer}.attn.hook_{r.qkv}", record(r)) for r in receivers]
        bridge.run_with_hooks(base, fwd_hooks=frozen + capture)

        def patch(r: Node):
            def hook(act, hook):
                act = act.clone()
                act[:, :, r.head] = recorded[r]
                return act

            return hook

        patches = [(f"blocks.{r.layer}.attn.hook_{r.qkv}", patch(r)) for r in receivers]
        return (metric(bridge.run_with_hooks(base, fwd_hooks=patches)) - corrupt) / (
            clean - corrupt
        )


def _reference(bridge, exp, senders, receivers, freeze_mlps=False, direction="denoising"):
    model = exp.model
    s_nodes = parse_senders(senders, model.n_layers, model.n_heads)
    r_nodes = parse_receivers(receivers, model.n_layers, model.n_heads)
    return torch.tensor(
        [_tl_path_patch(bridge, exp, s, r_nodes, freeze_mlps, direction) for s in s_nodes]
    )


@pytest.mark.parametrize("freeze_mlps", [False, True])
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_senders_to_logits_match_transformer_lens(bridge, exp, freeze_mlps, direction):
    ours = path_patch(exp, "all", "logits", freeze_mlps=freeze_mlps, direction=direction)
    reference = _reference(bridge, exp, "all", "logits", freeze_mlps, direction)
    assert ours.normalized.shape == (exp.model.n_layers, exp.model.n_heads)
    assert (ours.normalized.flatten() - reference).abs().max() < TOL


@pytest.mark.parametrize("qkv", ["q", "k", "v"])
def test_senders_to_a_heads_input_match_transformer_lens(bridge, exp, qkv):
    receivers = f"2.1.{qkv}"
    ours = path_patch(exp, "all", receivers)
    reference = _reference(bridge, exp, "all", receivers)
    assert (ours.normalized.flatten() - reference).abs().max() < TOL
    # senders in or after the receiver's layer cannot reach it: exactly the base run
    assert torch.equal(ours.raw[2:], torch.full_like(ours.raw[2:], ours.corrupt))
    assert (ours.normalized[:2] != 0).any()


def test_receivers_across_layers_and_mlp_senders_match(bridge, exp):
    senders, receivers = "0.0,0.3,m0,1.2,m1", "1.1.v,2.3.q,2.0.k"
    for freeze_mlps in (False, True):
        ours = path_patch(exp, senders, receivers, freeze_mlps=freeze_mlps, direction="noising")
        reference = _reference(bridge, exp, senders, receivers, freeze_mlps, "noising")
        assert ours.senders == ["a0.h0", "a0.h3", "m0", "a1.h2", "m1"]
        assert ours.raw.shape == (5,)
        assert (ours.normalized - reference).abs().max() < TOL


def test_mlp_senders_to_logits_match(bridge, exp):
    ours = path_patch(exp, "m0,m1,m2,1.1", "logits")
    reference = _reference(bridge, exp, "m0,m1,m2,1.1", "logits")
    assert (ours.normalized - reference).abs().max() < TOL


def test_several_pairs_average_like_transformer_lens(tiny_model, bridge):
    clean = [IOI_CLEAN, IOI_CLEAN.replace("store", "park")]
    corrupt = [IOI_CORRUPT, IOI_CORRUPT.replace("store", "park")]
    exp2 = actpatch.Experiment(
        tiny_model, clean, corrupt, *_pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    )
    ours = path_patch(exp2, "all", "2.2.q")
    reference = _reference(bridge, exp2, "all", "2.2.q")
    assert ours.n_pairs == 2
    assert (ours.normalized.flatten() - reference).abs().max() < TOL


def test_the_last_layer_to_logits_equals_activation_patching(exp):
    """A head of the last layer has no later head to go through: with MLPs recomputed, its path
    to the logits is its whole effect, so path patching equals activation patching there (and
    differs in earlier layers, whose heads also act through later heads)."""
    paths = path_patch(exp, "all", "logits")
    sweep = actpatch.sweep(exp, "z")
    assert (paths.normalized[-1] - sweep.normalized[-1]).abs().max() < TOL
    assert (paths.normalized[0] - sweep.normalized[0]).abs().max() > 10 * TOL


def test_json_has_the_contract_fields(exp):
    d = path_patch(exp, "all", "logits").to_dict()
    for key in ("raw", "normalized", "clean", "corrupt", "model", "backend", "seconds", "warnings"):
        assert key in d
    assert len(d["raw"]) == exp.model.n_layers and len(d["raw"][0]) == exp.model.n_heads


def test_bad_senders_and_receivers_teach(exp):
    with pytest.raises(actpatch.InputError, match="not a node name") as err:
        path_patch(exp, "nine", "logits")
    assert err.value.field == "senders"
    with pytest.raises(actpatch.InputError, match="out of range"):
        path_patch(exp, "7.0", "logits")
    with pytest.raises(actpatch.InputError, match="head's input"):
        path_patch(exp, "all", "2.1")
    with pytest.raises(actpatch.InputError, match="on its own"):
        path_patch(exp, "all", "logits,2.1.q")


def test_progress_and_cancel(exp):
    seen: list[tuple[int, int]] = []
    path_patch(exp, "all", "logits", progress=lambda d, t: seen.append((d, t)))
    assert seen[0] == (0, 12) and seen[-1] == (12, 12)
    with pytest.raises(actpatch.CancelledError):
        path_patch(exp, "all", "logits", should_stop=lambda: True)


def test_several_length_groups_average_over_pairs(tiny_model, bridge):
    """A dataset of two templates (two token lengths): each group's path patching is the
    TransformerLens reference's, and the whole is their average over pairs."""
    from actpatch.patching.paths import path_patch_many

    answers = _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    short = ("Mary met John, and John thanked", "Mary met John, and Mary thanked")
    groups = [
        actpatch.Experiment(tiny_model, [IOI_CLEAN] * 2, [IOI_CORRUPT] * 2, *answers),
        actpatch.Experiment(tiny_model, *short, *answers),
    ]
    ours = path_patch_many(groups, "0.1,1.2,2.3", "logits")
    clean = corrupt = 0.0
    raws = torch.zeros(3)
    for exp, weight in zip(groups, (2 / 3, 1 / 3), strict=True):
        result = path_patch(exp, "0.1,1.2,2.3", "logits")
        reference = _reference(bridge, exp, "0.1,1.2,2.3", "logits")
        assert (result.normalized - reference).abs().max() < TOL
        raws += weight * result.raw
        clean, corrupt = clean + weight * result.clean, corrupt + weight * result.corrupt
    assert ours.n_pairs == 3
    assert (ours.raw - raws).abs().max() < 1e-5
    assert (ours.normalized - (raws - corrupt) / (clean - corrupt)).abs().max() < 1e-5
