"""A model over several devices: accelerate's device maps (several GPUs, or GPU and CPU).

`place(hf_model, device_map)` spreads a loaded Hugging Face model's modules over devices:
- `"auto"` fills the devices in order (accelerate's `infer_auto_device_map`: the first GPU first,
  then the next, then the CPU), `"balanced"` spreads the blocks evenly over the GPUs;
- a dict, or the path of a JSON file holding one, names each module's device, as accelerate
  does: `{"model.embed_tokens": 0, "model.layers.0": 0, ..., "model.layers.15": "cpu",
  "model.norm": "cpu", "lm_head": "cpu"}` (a prefix places everything under it; `""` is the
  whole model).
A map that names a device this machine does not have, or that leaves a weight unplaced, is
refused with the names. No block is split: a transformer block sits on one device.

The fast forward (`actpatch.arch.forward`) runs each block on the device its weights are on and
moves the residual stream (and the block's cached activations stay where the block ran) only at
block boundaries; the embedding's device is the model's `device`, where tokens, answers and the
logits live. The bridge path runs through accelerate's own hooks, which move inputs the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from actpatch.errors import InputError

DeviceMap = dict[str, Any]
NAMED_MAPS = ("auto", "balanced")


def _device(value: Any) -> torch.device:
    """A map's device value (an int is a GPU index) as a torch device, refused if absent."""
    try:
        device = torch.device(f"cuda:{value}" if isinstance(value, int) else str(value))
    except (RuntimeError, TypeError):
        raise InputError(
            f"The device map names {value!r}, which is not a device: use 'cpu', 'cuda:0' (or the "
            "GPU index 0), 'cuda:1', ...",
            field="device_map",
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count()
        index = device.index or 0
        if index >= count:
            have = f"GPUs 0 to {count - 1}" if count else "no GPU"
            raise InputError(
                f"The device map names {value!r}, but this machine has {have}: place those "
                "modules on a device it has (or 'cpu').",
                field="device_map",
            )
    elif device.type != "cpu" and not (device.type == "mps" and torch.backends.mps.is_available()):
        raise InputError(
            f"The device map names {value!r}, which this machine cannot compute on (only GPUs "
            "and 'cpu' hold blocks; offloading to disk is not supported).",
            field="device_map",
        )
    return device


def read_map(device_map: str | DeviceMap) -> str | DeviceMap:
    """'auto', 'balanced', or the dict a JSON file (or the caller) gives, its devices checked."""
    if isinstance(device_map, str):
        if device_map in NAMED_MAPS:
            return device_map
        path = Path(device_map).expanduser()
        if not path.is_file():
            raise InputError(
                f"Device map {device_map!r} is neither 'auto', 'balanced' nor a JSON file: give "
                "one of those (a file maps module names to devices, e.g. "
                '{"model.layers.0": "cuda:0", "lm_head": "cpu"}).',
                field="device_map",
            )
        try:
            device_map = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"Cannot read the device map {str(path)!r}: {exc}.", field="device_map"
            ) from None
        if not isinstance(device_map, dict) or not device_map:
            raise InputError(
                f"The device map {str(path)!r} must be a JSON object of module name -> device.",
                field="device_map",
            )
    return {str(k): str(_device(v)) for k, v in device_map.items()}


def _unplaced(model: Any, device_map: DeviceMap) -> list[str]:
    """The weights no key of the map covers (a key covers itself and what is under it)."""

    def covered(name: str) -> bool:
        return any(k == "" or name == k or name.startswith(k + ".") for k in device_map)

    names = [n for n, _ in model.named_parameters()] + [n for n, _ in model.named_buffers()]
    return [n for n in names if not covered(n)]


def resolve(model: Any, device_map: str | DeviceMap) -> DeviceMap:
    """The explicit map for `model`: 'auto'/'balanced' worked out for this machine's devices."""
    read = read_map(device_map)
    if isinstance(read, str):
        from accelerate.utils import get_balanced_memory, infer_auto_device_map

        no_split = list(getattr(model, "_no_split_modules", None) or [])
        memory = None
        if read == "balanced" and torch.cuda.device_count() > 1:
            memory = get_balanced_memory(model, no_split_module_classes=no_split)
        placed = infer_auto_device_map(model, max_memory=memory, no_split_module_classes=no_split)
        return {k: str(_device(v)) for k, v in placed.items()}
    unplaced = _unplaced(model, read)
    if unplaced:
        shown = ", ".join(unplaced[:5]) + (
            f" and {len(unplaced) - 5} more" if len(unplaced) > 5 else ""
        )
        raise InputError(
            f"The device map leaves {len(unplaced)} weight(s) unplaced: {shown}. Give every "
            "module a device (a prefix such as 'model.layers.3' places all of it).",
            field="device_map",
        )
    return read


# The attribute a placed Hugging Face model carries: the map, which tells the fast path that its
# weights sit on several devices on purpose, one whole block per device.
PLACED = "actpatch_device_map"


def _split_blocks(model: Any, device_map: DeviceMap) -> list[str]:
    """The map's keys that name a part of a block (a block must sit on one device)."""
    no_split = set(getattr(model, "_no_split_modules", None) or [])
    blocks = [n for n, m in model.named_modules() if n and type(m).__name__ in no_split]
    return [k for k in device_map if any(k.startswith(b + ".") for b in blocks)]


def place(model: Any, device_map: str | DeviceMap) -> DeviceMap:
    """Spread `model` over the map's devices (in place); the explicit map used.

    Each module moves to its device and *computes there* (accelerate's `dispatch_model` would
    instead treat CPU entries as offloaded weights, copied to the GPU at every forward): the
    Hugging Face forward (and so the bridge path) gets accelerate's hooks that move each block's
    inputs to the block's device, and the fast path moves the residual stream itself.
    """
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module
    from accelerate.hooks import attach_align_device_hook_on_blocks as attach

    explicit = resolve(model, device_map)
    split = _split_blocks(model, explicit)
    if split:
        raise InputError(
            f"The device map splits a block ({', '.join(split[:3])}): place each whole block "
            "on one device (e.g. 'model.layers.3', not 'model.layers.3.mlp').",
            field="device_map",
        )
    for name, device in sorted(explicit.items(), key=lambda kv: len(kv[0])):
        (model.get_submodule(name) if name else model).to(device)  # deeper keys win
    if len(explicit) > 1:  # the same path for one device named block by block as for several
        where = {name: torch.device(device) for name, device in explicit.items()}
        attach(model, execution_device=where, offload={name: False for name in explicit})
        add_hook_to_module(model, AlignDevicesHook(io_same_device=True), append=True)
    setattr(model, PLACED, explicit)
    return explicit


def devices_of(model: Any) -> list[str]:
    """The devices a model's weights are on, the embedding's first."""
    seen: dict[str, None] = {}
    embedding = model.get_input_embeddings()
    if embedding is not None:
        seen[str(embedding.weight.device)] = None
    for p in model.parameters():
        seen[str(p.device)] = None
    return list(seen)
