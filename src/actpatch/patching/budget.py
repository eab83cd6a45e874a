"""How much memory one batched run may hold, and so how many cells it batches.

A sweep, an ablation or an attribution's exact check runs its cells in batches: more cells than
fit `max_memory` bytes of activations run in several batches, slower rather than out of memory.
`parse_memory` reads a budget ("4GB", "512MiB", bytes), `default_budget` gives the device's
default when none is given, and `chunk_size` turns a budget into cells per batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from actpatch.errors import InputError

if TYPE_CHECKING:
    from actpatch.patching.cells import Setup

# How many bytes of activations one batched run may hold by default (`sweep(max_memory=)`): on
# a CPU 1 GiB; on a GPU a fraction of the memory free when the run starts (at least 1 GiB), so
# that a large GPU batches more cells and a full one fewer.
DEFAULT_MAX_MEMORY = 1 << 30
GPU_FREE_FRACTION = 0.5


def default_budget(device: torch.device | str | None = None) -> int:
    """The activation budget of one batched run on `device` when none is given: 1 GiB on a CPU,
    `GPU_FREE_FRACTION` of the GPU's free memory (at least 1 GiB) on a GPU."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type != "cuda" or not torch.cuda.is_available():
        return DEFAULT_MAX_MEMORY
    free, _total = torch.cuda.mem_get_info(device)
    return max(DEFAULT_MAX_MEMORY, int(free * GPU_FREE_FRACTION))


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 1024, "m": 1e6, "mb": 1e6}
_UNITS |= {"mib": 1024**2, "g": 1e9, "gb": 1e9, "gib": 1024**3, "t": 1e12, "tb": 1e12}


def parse_memory(value: int | float | str | None, device: torch.device | str | None = None) -> int:
    """A memory budget in bytes, from a number of bytes or a string such as "4GB" or "512MiB"
    (None: the default for `device`, `default_budget`)."""
    if value is None:
        return default_budget(device)
    if isinstance(value, (int, float)):
        number, unit = float(value), ""
    else:
        text = value.strip().lower().replace(" ", "")
        digits = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(digits) :]
        try:
            number = float(digits)
        except ValueError:
            number, unit = -1.0, unit or "?"
    if unit not in _UNITS or number <= 0:
        raise InputError(
            f"Cannot read the memory budget {value!r}: give bytes or a size such as 4GB, "
            "512MB or 2GiB.",
            field="max_memory",
        )
    return int(number * _UNITS[unit])


def chunk_size(setup: Setup, max_memory: int = DEFAULT_MAX_MEMORY) -> int:
    """How many cells one batched run can hold within `max_memory` bytes of activations.

    Per cell and pair, each position being computed holds about: the residual stream and its
    copies (8 x d_model), the MLP's hidden layer (3 x d_mlp), queries, keys, values and head
    outputs (4 x heads x d_head) and the attention scores (3 x heads x keys), doubled for the
    patch's copies. The bridge path runs every position and keeps every position's logits.
    """
    exp, model = setup.exp, setup.exp.model
    config = model.config
    d_model, n_heads = model.d_model, model.n_heads
    d_mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    n_keys = setup.n_tokens
    per_position = 8 * d_model + 3 * int(d_mlp or 4 * d_model)
    per_position += 4 * n_heads * model.d_head + 3 * n_heads * n_keys
    positions = n_keys - setup.start
    if exp.backend == "bridge":
        positions = n_keys
        per_position = 2 * per_position + model.d_vocab
    item = torch.finfo(model.dtype).bits // 8
    per_cell = 2 * item * exp.n_pairs * positions * per_position
    return max(1, max_memory // per_cell)
