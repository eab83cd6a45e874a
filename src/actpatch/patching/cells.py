"""Cells and hooks: how the engine patches many cells of a sweep in one growing batch.

A *cell* is one index of a component's sweep: (layer, head), (layer, pos) or (layer, pos, head).
`run_cells` computes the final residual stream of the base run patched at each cell:
- the cells, sorted by layer, share one batch that grows as it goes: a cell joins at its own
  layer, starting from the base run's cached residual stream there, so each layer is one
  batched block call;
- positions before the first token where the prompts differ are never recomputed: their keys
  and values come from the base run's cache, shared by every row;
- `CellPatch` is the one hook that sets, per batch row, the entries its cell patches.

Positions by role: when the pairs name their positions by role (IO, S2, END...), a
position-resolved component can be swept with one column per role instead of per token. The
mask then has a pair axis (each pair's role sits at its own positions) and each pair's source
values are gathered from the source prompt's positions of the same role.

Alignment of sources: prompts of unequal length align their tokens
(`actpatch.patching.alignment`), and `prepare` turns that into `Setup.base_to_source`.
`aligned` gives either run's activation indexed by the base run's positions: the one way every
method (a sweep's cells, attribution's deltas, path patching's senders, edge attribution's
writers, a circuit's replaced writers) reads the source run against the base run.

The generic path (TransformerLens's bridge) runs one batched hook run per layer instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from actpatch.errors import CancelledError, InputError
from actpatch.patching.bridge import BridgeRunner
from actpatch.patching.components import Component, get_component
from actpatch.patching.experiment import Experiment, Run, check_experiment
from actpatch.patching.metrics import from_final
from actpatch.patching.options import POSITIONS, check_direction, check_metric

if TYPE_CHECKING:  # shapes for readers and type checkers; nothing is checked at run time
    from jaxtyping import Float


@dataclass
class Setup:
    """The runs and position bookkeeping shared by every cell of a sweep."""

    exp: Experiment
    component: Component
    metric: str
    direction: str
    base: Run
    source: Run
    start: int  # first position that can differ between the runs
    base_to_source: dict[int, int]  # aligned positions, base index -> source index
    # "role": the pos axis is the experiment's roles; `role_positions[p][r]` are role r's
    # positions in pair p's base prompt, `source_index[p, b]` the source position patched into
    # base position b.
    convention: str = "index"
    role_positions: tuple[tuple[tuple[int, ...], ...], ...] = ()
    source_index: Tensor | None = None

    @property
    def n_positions(self) -> int:
        """The pos axis's size: the base prompt's tokens, or the roles."""
        if self.convention == "role":
            return len(self.role_positions[0])
        return self.n_tokens

    @property
    def n_tokens(self) -> int:
        return int(self.base.tokens.shape[1])

    def aligned(self, pos: int) -> bool:
        return pos in self.base_to_source


CONVENTIONS = tuple(POSITIONS)


def check_component(exp: Experiment, comp: Component) -> None:
    """Refuse a component this experiment cannot patch (before any run is computed)."""
    if comp.hook == "pattern" and not exp.alignment.identity:
        raise InputError(
            "Attention patterns can only be patched between prompts of the same token length "
            f"(here {exp.alignment.clean_len} clean vs {exp.alignment.corrupt_len} corrupted "
            "tokens): a pattern's rows and columns are both positions. Patch z, q, k or v "
            "instead, or make the prompts the same length.",
            field="component",
        )
    if comp.hook not in exp.runner.hook_names:
        raise InputError(
            f"{exp.model.name} has no {comp.hook} to patch"
            + (
                ": its attention and MLP both read the block's input (a parallel residual "
                "stream), so no residual exists between them. Patch resid_pre, attn_out or "
                "mlp_out instead."
                if comp.hook == "resid_mid"
                else "."
            ),
            field="component",
        )


def prepare(
    exp: Experiment,
    component: str,
    metric: str | None,
    direction: str,
    positions: str = "index",
) -> Setup:
    """Check the sweep's options and gather the runs and positions every cell shares.

    `positions`: "index" (a position-resolved component's columns are token positions) or
    "role" (they are the roles the pairs name).
    """
    check_experiment(exp)
    comp = get_component(component)
    if positions not in ("index", "role"):
        raise InputError(
            f"Unknown position convention {positions!r}: use 'index' (token positions), 'role' "
            "(the roles the pairs name) or 'auto'.",
            field="positions",
        )
    metric = check_metric(metric, exp.wrong_ids is not None)
    direction = check_direction(direction)
    check_component(exp, comp)
    clean = exp.run("clean", [comp.hook])
    corrupt = exp.run("corrupt", [comp.hook])
    if direction == "denoising":
        base, source, mapping = corrupt, clean, exp.alignment.corrupt_to_clean()
    else:
        base, source, mapping = clean, corrupt, exp.alignment.clean_to_corrupt()
    n_pos = int(base.tokens.shape[1])
    start = min(exp.first_diff, n_pos - 1)
    if positions == "index" or not comp.by_pos:
        return Setup(exp, comp, metric, direction, base, source, start, mapping)
    if exp.roles is None:
        raise InputError(
            "These prompt pairs name no roles, so positions cannot be indexed by role. Give "
            'each pair its positions (e.g. "positions": {"IO": 2, "S2": 10, "END": 14} in a '
            "JSONL dataset; the ioi dataset names them) or index positions by token.",
            field="positions",
        )
    base_roles, source_roles = exp.roles.base_and_source(direction)
    index = torch.arange(n_pos).repeat(exp.n_pairs, 1)  # (pairs, base pos): source position
    for p in range(exp.n_pairs):
        claimed: dict[int, int] = {}
        for base_span, source_span in zip(base_roles[p], source_roles[p], strict=True):
            for b, src in zip(base_span, source_span, strict=True):
                if claimed.setdefault(b, src) != src:
                    raise InputError(
                        f"Pair {exp.pair_index[p]}: position {b} is in two roles that take it "
                        f"from different positions ({claimed[b]} and {src}) of the other "
                        "prompt. Give overlapping roles the same positions in both prompts.",
                        field="corrupt_positions",
                    )
                if b != src:
                    start = min(start, b)  # not identical in both runs: must be recomputed
                index[p, b] = src
    return Setup(
        exp,
        comp,
        metric,
        direction,
        base,
        source,
        start,
        mapping,
        convention="role",
        role_positions=base_roles,
        source_index=index.to(exp.model.device),
    )


def metric_values(setup: Setup, final: Float[Tensor, "rows d_model"]) -> Float[Tensor, " cells"]:
    """The metric of each final residual (cells * pairs, d_model), averaged over pairs. (cells,)"""
    return metric_values_per_pair(setup, final).mean(dim=1)


def metric_values_per_pair(
    setup: Setup, final: Float[Tensor, "rows d_model"]
) -> Float[Tensor, "cells pairs"]:
    """The metric of each final residual (cells * pairs, d_model), per pair. (cells, pairs)"""
    exp = setup.exp
    values = from_final(setup.metric, exp.runner.unembed, final, exp.target_ids, exp.wrong_ids)
    return values.reshape(-1, exp.n_pairs)


class CellPatch:
    """A hook that patches one hook point, a different cell per batch row.

    Cells are sorted by layer and join the batch at their own layer, so the batch at layer l
    holds every cell of layer <= l, and the cells patched there are the last rows. Rows are
    cell-major: row = cell * n_pairs + pair. `mask` says, per cell, which entries take the
    source's value: (cells, pos) or (cells, pos, head) for vector activations, (cells, head) for
    attention patterns; positions are the base run's. Indexed by role, each pair has its own
    positions: the mask is (cells, pairs, pos) or (cells, pairs, pos, head).
    """

    def __init__(
        self,
        setup: Setup,
        cells: list[tuple[int, ...]],
        hook: str | None = None,
        source: Callable[[int], Tensor] | None = None,
        mask: Tensor | None = None,
    ):
        self.setup, self.n_pairs = setup, setup.exp.n_pairs
        self.hook = hook or setup.component.hook
        if mask is None:
            mask = cell_mask(setup, cells).to(setup.exp.model.device)
        self.mask = mask
        self.pair_axis = setup.convention == "role" and setup.component.by_pos
        self.first_row = 0  # first cell patched at the current layer (set by the runner)
        self._make_source = source or (lambda layer: aligned_source(setup, layer))
        self._source: dict[int, Tensor] = {}

    def source(self, layer: int) -> Tensor:
        if layer not in self._source:
            self._source = {layer: self._make_source(layer)}
        return self._source[layer]

    def __call__(self, name: str, layer: int, act: Tensor, pos0: int) -> Tensor:
        if name != self.hook:
            return act
        first, n_cells = self.first_row, act.shape[0] // self.n_pairs
        if first >= n_cells:
            return act
        mask = self.mask[first:n_cells]
        source = self.source(layer)
        if name == "pattern":  # act: (batch, head, query, key); queries start at pos0
            n = act.shape[2]
            source = source[:, :, pos0 : pos0 + n]
            mask = mask[:, None, :, None, None]
        elif self.pair_axis:  # act: (batch, pos, ...); mask: (cells, pairs, pos, ...)
            n = act.shape[1]
            source = source[:, pos0 : pos0 + n]
            mask = mask[:, :, pos0 : pos0 + n]
            mask = mask.reshape(*mask.shape, *([1] * (act.dim() + 1 - mask.dim())))
        else:  # act: (batch, pos, ...); positions start at pos0
            n = act.shape[1]
            source = source[:, pos0 : pos0 + n]
            mask = mask[:, pos0 : pos0 + n]
            mask = mask.reshape(len(mask), 1, *mask.shape[1:], *([1] * (act.dim() - mask.dim())))
        rows = act[first * self.n_pairs :].reshape(len(mask), self.n_pairs, *act.shape[1:])
        patched = torch.where(mask, source.unsqueeze(0), rows).reshape(-1, *act.shape[1:])
        return torch.cat([act[: first * self.n_pairs], patched]) if first else patched


def aligned(setup: Setup, which: str, name: str, layer: int) -> Float[Tensor, "pairs pos *rest"]:
    """The base or source run's activation `name` at `layer`, indexed by the base run's
    positions; a base position with no counterpart in the source run keeps the base run's value
    (unpatched). (pairs, pos, ...)"""
    base = setup.base.cache[(name, layer)]
    if which == "base":
        return base
    src = setup.source.cache[(name, layer)]
    if setup.exp.alignment.identity:
        return src
    out = base.clone()
    for b, s in setup.base_to_source.items():
        out[:, b] = src[:, s]
    return out


def aligned_source(setup: Setup, layer: int) -> Tensor:
    """The source run's activation at the component's hook, indexed by the base run's positions
    (by role: each pair's own source positions)."""
    hook = setup.component.hook
    if setup.source_index is None:
        return aligned(setup, "source", hook, layer)
    src = setup.source.cache[(hook, layer)]
    index = setup.source_index.reshape(*setup.source_index.shape, *([1] * (src.dim() - 2)))
    return src.gather(1, index.expand(-1, -1, *src.shape[2:]))


def head_count(exp: Experiment, hook: str) -> int:
    """How many heads `hook` has: n_kv_heads for keys and values (grouped-query attention
    shares each among several query heads, as TransformerLens's bridge shapes them)."""
    runner = exp.runner
    return int(runner.n_kv_heads if hook in ("k", "v") else runner.n_heads)


def axis_sizes(setup: Setup) -> dict[str, int]:
    """The length of each axis a sweep of `setup.component` can have."""
    return {
        "layer": setup.exp.runner.n_layers,
        "head": head_count(setup.exp, setup.component.hook),
        "pos": setup.n_positions,
    }


def cell_mask(setup: Setup, cells: list[tuple[int, ...]]) -> Tensor:
    """Which entries each cell patches. cells are index tuples in the component's axes order.

    Built with one indexed write for all cells (a sweep has hundreds; one small operation per
    cell costs more than the patched run itself on a GPU)."""
    comp, n_pos = setup.component, setup.n_tokens
    n_heads = head_count(setup.exp, comp.hook)
    if setup.convention == "role" and comp.by_pos:
        return _role_mask(setup, cells)
    index = torch.tensor(cells, dtype=torch.long).reshape(len(cells), len(comp.axes))
    rows = torch.arange(len(cells))
    if comp.hook == "pattern":  # (layer, head)
        mask = torch.zeros(len(cells), n_heads, dtype=torch.bool)
        mask[rows, index[:, 1]] = True
        return mask
    if not comp.per_head:  # (layer, pos)
        mask = torch.zeros(len(cells), n_pos, dtype=torch.bool)
        mask[rows, index[:, 1]] = True
        return mask
    if comp.by_pos:  # (layer, pos, head)
        mask = torch.zeros(len(cells), n_pos, n_heads, dtype=torch.bool)
        mask[rows, index[:, 1], index[:, 2]] = True
        return mask
    # (layer, head): the head at every aligned position
    aligned = torch.tensor([setup.aligned(p) for p in range(n_pos)])
    heads = torch.zeros(len(cells), n_heads, dtype=torch.bool)
    heads[rows, index[:, 1]] = True
    return aligned[None, :, None] & heads[:, None, :]


def _role_mask(setup: Setup, cells: list[tuple[int, ...]]) -> Tensor:
    """Which entries each cell patches when positions are roles. (cells, pairs, pos[, head])"""
    roles, n_tokens = setup.role_positions, setup.n_tokens
    n_pairs, n_heads = len(roles), head_count(setup.exp, setup.component.hook)
    # where[r, p, pos]: role r covers position pos of pair p's base prompt.
    where = torch.zeros(len(roles[0]), n_pairs, n_tokens, dtype=torch.bool)
    for p, spans in enumerate(roles):
        for r, span in enumerate(spans):
            where[r, p, list(span)] = True
    role_of = torch.tensor([cell[1] for cell in cells], dtype=torch.long)
    mask = where[role_of]  # (cells, pairs, pos)
    if not setup.component.per_head:
        return mask
    heads = torch.zeros(len(cells), n_heads, dtype=torch.bool)
    heads[torch.arange(len(cells)), torch.tensor([cell[2] for cell in cells])] = True
    return mask[..., None] & heads[:, None, None, :]


def run_cells(
    setup: Setup,
    cells: list[tuple[int, ...]],
    start: int,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """Final residuals of the base run patched at each cell. (cells * pairs, d_model)

    Every cell's patch leaves positions before `start` unchanged. The cells, sorted by layer,
    share one batch that grows as it goes: a cell joins at its own layer, starting from the
    base run's cached residual stream there, so each layer is one batched block call.
    `progress(fraction)` reports the share of the work done. On a model with `cuda_graphs` on,
    the batch replays a captured CUDA graph of the same run (`actpatch.patching.graphs`).
    """
    if setup.exp.backend == "bridge":
        return _run_cells_bridge(setup, cells, start, progress, should_stop)
    if should_stop is not None and should_stop():
        raise CancelledError("The sweep was cancelled.")
    order = sorted(range(len(cells)), key=lambda i: cells[i][0])
    cells = [cells[i] for i in order]
    # One cell (the page's single patch, a click at a time) is not worth a recording.
    graphed = len(cells) > 1 and setup.exp.model.cuda_graphs
    # A recording reads every layer's source from its buffers; an eager run makes each layer's
    # when it gets there (an aligned or by-role source is a copy: one layer's at a time).
    inputs = cell_inputs(setup, cells, start, sources=graphed)
    if graphed:
        from actpatch.patching.graphs import replay

        # What the recorded run depends on besides its inputs' shapes: a recording replays the
        # run it recorded, with no callbacks (progress comes when the replay ends).
        comp = setup.component
        key = (comp.name, comp.hook, setup.convention, setup.exp.n_pairs, start, tuple(cells))
        final = replay(
            setup.exp.runner,
            key,
            inputs,
            lambda inputs: _patched_run(setup, cells, start, inputs),
        )
        if progress is not None:
            progress(1.0)
    else:
        final = _patched_run(setup, cells, start, inputs, progress, should_stop)
    final = final.reshape(len(cells), setup.exp.n_pairs, -1)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    return final[inverse.to(final.device)].reshape(-1, final.shape[-1])


def cell_inputs(
    setup: Setup, cells: list[tuple[int, ...]], start: int, sources: bool = True
) -> dict[str, Tensor]:
    """Everything a patched run of `cells` (sorted by layer) reads, by name: each joining
    layer's cached residual stream ("resid_pre.L"), each layer's past keys and values before
    `start` ("past_k.L", "past_v.L"), the source activation each layer patches in ("source.L";
    with `sources` False, left for the run to make per layer), which entries each cell takes
    ("mask") and the left-padding ("pad"). Views of the runs' caches, but for sources that are
    aligned or gathered by role."""
    runner, cache = setup.exp.runner, setup.base.cache
    first = cells[0][0]
    inputs: dict[str, Tensor] = {
        "mask": cell_mask(setup, cells).to(setup.exp.model.device),
        **setup.exp.padding,
    }
    for layer in sorted({cell[0] for cell in cells}):
        inputs[f"resid_pre.{layer}"] = cache[("resid_pre", layer)][:, start:]
    for layer, (keys, values) in enumerate(runner.past_kv(cache, start)):
        if layer >= first:
            inputs[f"past_k.{layer}"], inputs[f"past_v.{layer}"] = keys, values
            if sources:
                inputs[f"source.{layer}"] = aligned_source(setup, layer)
    return inputs


def _patched_run(
    setup: Setup,
    cells: list[tuple[int, ...]],
    start: int,
    inputs: dict[str, Tensor],
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """`run_cells`' batched run, reading only `inputs` (`cell_inputs`; a layer's source, when
    not among them, made when the run gets there): final residuals in the sorted cells' order.
    (cells * pairs, d_model)"""
    runner, n_pairs = setup.exp.runner, setup.exp.n_pairs

    def source(layer: int) -> Tensor:
        known = inputs.get(f"source.{layer}")
        return known if known is not None else aligned_source(setup, layer)

    patch = CellPatch(setup, cells, source=source, mask=inputs["mask"])
    padding = {"pad": inputs["pad"]} if "pad" in inputs else {}
    layers = [cell[0] for cell in cells]
    work = [sum(1 for c in layers if c <= layer) for layer in range(runner.n_layers)]
    total_work, done_work = sum(work[layers[0] :]), 0
    x: Tensor | None = None
    for layer in range(layers[0], runner.n_layers):
        if should_stop is not None and should_stop():
            raise CancelledError("The sweep was cancelled.")
        joining = layers.count(layer)
        if joining:
            fresh = inputs[f"resid_pre.{layer}"].repeat(joining, 1, 1)
            x = fresh if x is None else torch.cat([x, fresh])
        assert x is not None
        patch.first_row = x.shape[0] // n_pairs - joining
        last = layer == runner.n_layers - 1
        past = inputs[f"past_k.{layer}"], inputs[f"past_v.{layer}"]
        x = runner.block(layer, x, start, *past, hook=patch, last_only=last, **padding)
        done_work += work[layer]
        if progress is not None:
            progress(done_work / total_work)
    assert x is not None
    return x[:, -1]


def _run_cells_bridge(
    setup: Setup,
    cells: list[tuple[int, ...]],
    start: int,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """The generic path: one batched TransformerLens hook run for every cell, each layer's
    hook patching its own rows. Final-position logits of the base run patched at each cell.
    (cells * pairs, d_vocab)

    Positions before `start` are identical in every row, so (except for attention patterns,
    whose key axis a sliding-window cache would shorten) they run once, unpatched, and the
    batch continues from Hugging Face's key/value cache of them (`BridgeRunner.run_patched`).
    """
    runner = setup.exp.runner
    assert isinstance(runner, BridgeRunner)
    if should_stop is not None and should_stop():
        raise CancelledError("The sweep was cancelled.")
    n_pairs = setup.exp.n_pairs
    prefix = start if setup.component.hook != "pattern" else 0
    order = sorted(range(len(cells)), key=lambda i: cells[i][0])
    hooks = []
    for layer in sorted({cell[0] for cell in cells}):
        rows = [row for row, i in enumerate(order) if cells[i][0] == layer]
        group = [cells[order[row]] for row in rows]
        if setup.component.hook == "resid_mid":
            # The bridge's hook_resid_mid only feeds the MLP; patch the residual stream itself:
            # attention output = wanted resid_mid - resid_pre makes the stream equal it.
            def source(layer: int) -> Tensor:
                return aligned_source(setup, layer) - setup.base.cache[("resid_pre", layer)]

            patch = CellPatch(setup, group, hook="attn_out", source=source)
        else:
            patch = CellPatch(setup, group)
        # This layer's cells are consecutive rows (cells sorted by layer; cell-major rows).
        first, end = rows[0] * n_pairs, (rows[-1] + 1) * n_pairs

        def hook(
            act: Tensor,
            hook: object,
            patch: CellPatch = patch,
            layer: int = layer,
            first: int = first,
            end: int = end,
        ) -> Tensor:
            # The activation's positions start where the run does: at the prefix, or 0.
            pos0 = 0 if act.shape[1 if patch.hook != "pattern" else 2] == setup.n_tokens else prefix
            patched = patch(patch.hook, layer, act[first:end], pos0)
            return torch.cat([act[:first], patched, act[end:]])

        hooks.append((runner.hook_name(patch.hook, layer), hook))
    logits = runner.run_patched(setup.base.tokens, hooks, len(cells), prefix, setup.base.final)
    if progress is not None:
        progress(1.0)
    inverse = torch.empty(len(order), dtype=torch.long)
    inverse[torch.tensor(order)] = torch.arange(len(order))
    inverse = inverse.to(logits.device)
    return logits.reshape(len(cells), n_pairs, -1)[inverse].reshape(len(cells) * n_pairs, -1)


def all_cells(setup: Setup) -> list[tuple[int, ...]]:
    sizes = axis_sizes(setup)
    shape = [sizes[a] for a in setup.component.axes]
    return [
        tuple(int(i) for i in idx)
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape])
        .reshape(-1, len(shape))
        .tolist()
    ]
