"""The sweep engine: every cell of a patching sweep, computed exactly and without waste.

Activation patching runs the model on a *clean* prompt and a *corrupted* one, copies one
activation from one run (the source) into the other (the base), and measures the answer.
*Denoising* patches clean activations into the corrupted run (is this activation sufficient
to restore the behaviour?); *noising* patches corrupted activations into the clean run (is it
necessary?). A sweep does this for every cell: every (layer, head), or (layer, position), ...

Each cell equals what `transformer_lens.patching` computes with one full forward pass per
cell. We get the same numbers doing much less work:
- cells are batched: one batched run per layer computes every head (or position) at once;
- a patched run starts at the patched layer, from the base run's cached residual stream;
- positions before the first token where the prompts differ are identical in both runs, and a
  causal model's earlier positions cannot see later ones, so those positions are never
  recomputed: their keys and values come from the base run's cache, and a patch there is a
  no-op whose answer is the base run's;
- the last layer computes only the final position, and a logit difference reads only the two
  answers' columns of the unembedding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from actpatch.errors import CancelledError, InputError
from actpatch.models import LoadedModel
from actpatch.patching.bridge import BridgeRunner
from actpatch.patching.components import Component, get_component
from actpatch.patching.experiment import Experiment, Run
from actpatch.patching.metrics import check_metric, from_logits, is_normalizable, normalize
from actpatch.patching.results import PatchResult, SweepResult, TopToken

Progress = Callable[[int, int], None]
DIRECTIONS = ("denoising", "noising")
# How many activation floats one batched run may hold per layer (bounds memory on long prompts).
BATCH_BUDGET = 1 << 24


def check_direction(direction: str) -> str:
    """The direction, checked: denoising (clean into corrupted) or noising (the reverse)."""
    if direction not in DIRECTIONS:
        raise InputError(
            f"Unknown direction {direction!r}. Choose 'denoising' (clean activations into the "
            "corrupted run) or 'noising' (corrupted activations into the clean run).",
            field="direction",
        )
    return direction


@dataclass
class _Setup:
    """The runs and position bookkeeping shared by every cell of a sweep."""

    exp: Experiment
    component: Component
    metric: str
    direction: str
    base: Run
    source: Run
    start: int  # first position that can differ between the runs
    base_to_source: dict[int, int]  # aligned positions, base index -> source index

    @property
    def n_positions(self) -> int:
        return int(self.base.tokens.shape[1])

    def aligned(self, pos: int) -> bool:
        return pos in self.base_to_source


def _setup(exp: Experiment, component: str, metric: str | None, direction: str) -> _Setup:
    comp = get_component(component)
    metric = check_metric(metric, exp.wrong_ids is not None)
    direction = check_direction(direction)
    if comp.hook == "pattern" and not exp.alignment.identity:
        raise InputError(
            "Attention patterns can only be patched between prompts of the same token length "
            f"(here {exp.alignment.clean_len} clean vs {exp.alignment.corrupt_len} corrupted "
            "tokens): a pattern's rows and columns are both positions. Patch z, q, k or v "
            "instead, or make the prompts the same length.",
            field="component",
        )
    clean = exp.run("clean", [comp.hook])
    corrupt = exp.run("corrupt", [comp.hook])
    if direction == "denoising":
        base, source, mapping = corrupt, clean, exp.alignment.corrupt_to_clean()
    else:
        base, source, mapping = clean, corrupt, exp.alignment.clean_to_corrupt()
    n_pos = int(base.tokens.shape[1])
    start = min(exp.first_diff, n_pos - 1)
    return _Setup(exp, comp, metric, direction, base, source, start, mapping)


def _metric_values(setup: _Setup, final: Tensor) -> Tensor:
    """The metric of each final residual (cells * pairs, d_model), averaged over pairs. (cells,)"""
    metric = setup.metric
    exp, runner = setup.exp, setup.exp.runner
    n_pairs = exp.n_pairs
    reps = final.shape[0] // n_pairs
    target = exp.target_ids.repeat(reps)
    if metric == "logit_diff":
        assert exp.wrong_ids is not None
        wrong = exp.wrong_ids.repeat(reps)
        logits = runner.unembed(final, torch.stack([target, wrong], dim=1))
        values = logits[:, 0] - logits[:, 1]
    else:
        values = from_logits(metric, runner.unembed(final), target, None)
    return values.reshape(reps, n_pairs).mean(dim=1)


class _Patch:
    """A hook that patches one hook point, a different cell per batch row.

    Cells are sorted by layer and join the batch at their own layer, so the batch at layer l
    holds every cell of layer <= l, and the cells patched there are the last rows. Rows are
    cell-major: row = cell * n_pairs + pair. `mask` says, per cell, which entries take the
    source's value: (cells, pos) or (cells, pos, head) for vector activations, (cells, head) for
    attention patterns; positions are the base run's.
    """

    def __init__(
        self,
        setup: _Setup,
        cells: list[tuple[int, ...]],
        hook: str | None = None,
        source: Callable[[int], Tensor] | None = None,
    ):
        self.setup, self.n_pairs = setup, setup.exp.n_pairs
        self.hook = hook or setup.component.hook
        self.mask = _cell_mask(setup, cells).to(setup.exp.model.device)
        self.first_row = 0  # first cell patched at the current layer (set by the runner)
        self._make_source = source or (lambda layer: _aligned_source(setup, layer))
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
        else:  # act: (batch, pos, ...); positions start at pos0
            n = act.shape[1]
            source = source[:, pos0 : pos0 + n]
            mask = mask[:, pos0 : pos0 + n]
            mask = mask.reshape(len(mask), 1, *mask.shape[1:], *([1] * (act.dim() - mask.dim())))
        rows = act[first * self.n_pairs :].reshape(len(mask), self.n_pairs, *act.shape[1:])
        patched = torch.where(mask, source.unsqueeze(0), rows).reshape(-1, *act.shape[1:])
        return torch.cat([act[: first * self.n_pairs], patched]) if first else patched


def _aligned_source(setup: _Setup, layer: int) -> Tensor:
    """The source run's activation at the component's hook, indexed by the base run's positions."""
    src = setup.source.cache[(setup.component.hook, layer)]
    if setup.exp.alignment.identity:
        return src
    base = setup.base.cache[(setup.component.hook, layer)]
    out = torch.zeros_like(base)
    for b, s in setup.base_to_source.items():
        out[:, b] = src[:, s]
    return out


def _cell_mask(setup: _Setup, cells: list[tuple[int, ...]]) -> Tensor:
    """Which entries each cell patches. cells are index tuples in the component's axes order."""
    comp, n_pos = setup.component, setup.n_positions
    n_heads = setup.exp.model.n_heads
    aligned = torch.tensor([setup.aligned(p) for p in range(n_pos)])
    if comp.hook == "pattern":
        mask = torch.zeros(len(cells), n_heads, dtype=torch.bool)
        for i, (_, head) in enumerate(cells):
            mask[i, head] = True
        return mask
    if not comp.per_head:  # (layer, pos)
        mask = torch.zeros(len(cells), n_pos, dtype=torch.bool)
        for i, (_, pos) in enumerate(cells):
            mask[i, pos] = True
        return mask
    mask = torch.zeros(len(cells), n_pos, n_heads, dtype=torch.bool)
    for i, cell in enumerate(cells):
        if comp.by_pos:  # (layer, pos, head)
            _, pos, head = cell
            mask[i, pos, head] = True
        else:  # (layer, head): every aligned position
            _, head = cell
            mask[i, :, head] = aligned
    return mask


def _run_cells(
    setup: _Setup,
    cells: list[tuple[int, ...]],
    start: int,
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """Final residuals of the base run patched at each cell. (cells * pairs, d_model)

    Every cell's patch leaves positions before `start` unchanged. The cells, sorted by layer,
    share one batch that grows as it goes: a cell joins at its own layer, starting from the
    base run's cached residual stream there, so each layer is one batched block call.
    `progress(fraction)` reports the share of the work done.
    """
    if setup.exp.backend == "bridge":
        return _run_cells_bridge(setup, cells, progress, should_stop)
    gpt2, n_pairs = setup.exp.gpt2, setup.exp.n_pairs
    order = sorted(range(len(cells)), key=lambda i: cells[i][0])
    cells = [cells[i] for i in order]
    cache = setup.base.cache
    # Keys and values before `start` are the base run's, shared by every cell (never copied).
    past = [(cache[("k", i)][:, :start], cache[("v", i)][:, :start]) for i in range(gpt2.n_layers)]
    patch = _Patch(setup, cells)
    layers = [cell[0] for cell in cells]
    work = [sum(1 for c in layers if c <= layer) for layer in range(gpt2.n_layers)]
    total_work, done_work = sum(work[layers[0] :]), 0
    x: Tensor | None = None
    for layer in range(layers[0], gpt2.n_layers):
        if should_stop is not None and should_stop():
            raise CancelledError("The sweep was cancelled.")
        joining = layers.count(layer)
        if joining:
            fresh = cache[("resid_pre", layer)][:, start:].repeat(joining, 1, 1)
            x = fresh if x is None else torch.cat([x, fresh])
        assert x is not None
        patch.first_row = x.shape[0] // n_pairs - joining
        last = layer == gpt2.n_layers - 1
        x = gpt2.block(layer, x, start, *past[layer], hook=patch, last_only=last)
        done_work += work[layer]
        if progress is not None:
            progress(done_work / total_work)
    assert x is not None
    final = x[:, -1].reshape(len(cells), n_pairs, -1)
    inverse = torch.empty(len(order), dtype=torch.long, device=x.device)
    inverse[torch.tensor(order, device=x.device)] = torch.arange(len(order), device=x.device)
    return final[inverse].reshape(len(cells) * n_pairs, -1)


def _run_cells_bridge(
    setup: _Setup,
    cells: list[tuple[int, ...]],
    progress: Callable[[float], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Tensor:
    """The generic path: one batched TransformerLens hook run per layer. Final-position logits
    of the base run patched at each cell. (cells * pairs, d_vocab)"""
    runner = setup.exp.runner
    assert isinstance(runner, BridgeRunner)
    n_pairs = setup.exp.n_pairs
    out: list[Tensor | None] = [None] * len(cells)
    layers = sorted({cell[0] for cell in cells})
    for done, layer in enumerate(layers):
        if should_stop is not None and should_stop():
            raise CancelledError("The sweep was cancelled.")
        index = [i for i, cell in enumerate(cells) if cell[0] == layer]
        group = [cells[i] for i in index]
        if setup.component.hook == "resid_mid":
            # The bridge's hook_resid_mid only feeds the MLP; patch the residual stream itself:
            # attention output = wanted resid_mid - resid_pre makes the stream equal it.
            def source(layer: int) -> Tensor:
                return _aligned_source(setup, layer) - setup.base.cache[("resid_pre", layer)]

            patch = _Patch(setup, group, hook="attn_out", source=source)
        else:
            patch = _Patch(setup, group)
        name = runner.hook_name(patch.hook, layer)

        def hook(act: Tensor, hook: object, patch: _Patch = patch, layer: int = layer) -> Tensor:
            return patch(patch.hook, layer, act, 0)

        tokens = setup.base.tokens.repeat(len(group), 1)
        logits = runner.run_patched(tokens, name, hook).reshape(len(group), n_pairs, -1)
        for row, i in enumerate(index):
            out[i] = logits[row]
        if progress is not None:
            progress((done + 1) / len(layers))
    return torch.cat([t for t in out if t is not None])


def _chunk_size(setup: _Setup) -> int:
    exp = setup.exp
    n = setup.n_positions - setup.start
    per_cell = exp.n_pairs * n * max(4 * exp.model.d_model, exp.model.n_heads * setup.n_positions)
    return max(1, BATCH_BUDGET // max(1, per_cell))


def _all_cells(setup: _Setup) -> list[tuple[int, ...]]:
    sizes = {
        "layer": setup.exp.model.n_layers,
        "head": setup.exp.model.n_heads,
        "pos": setup.n_positions,
    }
    shape = [sizes[a] for a in setup.component.axes]
    return [
        tuple(int(i) for i in idx)
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in shape])
        .reshape(-1, len(shape))
        .tolist()
    ]


def sweep(
    exp: Experiment,
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SweepResult:
    """Patch every cell of `component` and return the metric after each patch.

    `component` is one of `actpatch.COMPONENTS` (e.g. "z" for heads over all positions,
    "resid_pre" by layer and position). `metric` defaults to logit_diff when the experiment
    has a wrong answer, else the target's probability. `progress(done, total)` is called as
    cells finish; `should_stop()` returning True cancels the sweep (CancelledError).
    """
    t0 = time.perf_counter()
    setup = _setup(exp, component, metric, direction)
    comp, model = setup.component, exp.model
    with torch.inference_mode():
        clean_value = float(_metric_values(setup, exp.run("clean").final)[0])
        corrupt_value = float(_metric_values(setup, exp.run("corrupt").final)[0])
        base_value = corrupt_value if setup.direction == "denoising" else clean_value

        cells = _all_cells(setup)
        shape = tuple(
            {"layer": model.n_layers, "head": model.n_heads, "pos": setup.n_positions}[a]
            for a in comp.axes
        )
        raw = torch.full(shape, float("nan"))
        # Every cell runs from the first position where the runs differ. (A cell patched at a
        # later position could start there, but on a CPU fewer, larger batched calls beat
        # skipping those few positions: the weights are read once per call.)
        todo: list[tuple[int, ...]] = []
        for cell in cells:
            if comp.by_pos:
                pos = cell[1]
                if not setup.aligned(pos):
                    continue  # no counterpart in the other prompt: not patched (NaN)
                if pos < setup.start:
                    raw[cell] = base_value  # identical in both runs: a no-op patch
                    continue
            todo.append(cell)

        total, done = len(todo), 0
        if progress is not None:
            progress(0, total)
        chunk = _chunk_size(setup)
        for i in range(0, total, chunk):
            part = todo[i : i + chunk]

            def report(fraction: float, before: int = done, size: int = len(part)) -> None:
                if progress is not None and fraction < 1:
                    progress(before + int(fraction * size), total)

            final = _run_cells(setup, part, setup.start, report, should_stop)
            values = _metric_values(setup, final)
            for cell, value in zip(part, values.tolist(), strict=True):
                raw[cell] = value
            done += len(part)
            if progress is not None:
                progress(done, total)

    normalized, note = _normalized(raw, clean_value, corrupt_value, setup.metric)
    n_pos = setup.n_positions
    patched = [p for p in range(n_pos) if setup.aligned(p)]
    return SweepResult(
        model=model.name,
        component=comp.name,
        metric=setup.metric,
        direction=setup.direction,
        axes=comp.axes,
        raw=raw,
        normalized=normalized,
        clean=clean_value,
        corrupt=corrupt_value,
        tokens=exp.model.to_str_tokens(setup.base.tokens[0]),
        clean_tokens=exp.str_tokens("clean"),
        corrupt_tokens=exp.str_tokens("corrupt"),
        patched_positions=patched,
        unpatched_positions=[p for p in range(n_pos) if not setup.aligned(p)],
        identical_positions=list(range(min(exp.first_diff, n_pos))),
        alignment=exp.alignment.to_dict(),
        n_pairs=exp.n_pairs,
        seconds=time.perf_counter() - t0,
        note=note,
    )


def _normalized(
    raw: Tensor, clean: float, corrupt: float, metric: str
) -> tuple[Tensor, str | None]:
    """(raw - corrupt) / (clean - corrupt), or all NaN with a note saying why it is undefined."""
    if is_normalizable(clean, corrupt):
        return (raw - corrupt) / (clean - corrupt), None
    return torch.full_like(raw, float("nan")), (
        f"The clean and corrupted runs give the same {metric} ({clean:.6g}), so the normalized "
        "metric (clean = 1, corrupted = 0) is undefined; only raw values are shown. Choose "
        "prompts or answers that the model tells apart."
    )


def _top_tokens(exp: Experiment, probs: Tensor, k: int) -> list[TopToken]:
    values, ids = probs.topk(k)
    return [
        TopToken(exp.model.tokenizer.decode([int(i)]), float(v))
        for v, i in zip(values.tolist(), ids.tolist(), strict=True)
    ]


def _rank(logits: Tensor, target: Tensor) -> Tensor:
    rows = torch.arange(logits.shape[0], device=logits.device)
    return 1 + (logits > logits[rows, target][:, None]).sum(-1)


def patch(
    exp: Experiment,
    layer: int,
    head: int | None = None,
    pos: int | None = None,
    *,
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    top_k: int = 10,
) -> PatchResult:
    """Patch one cell (by default one head's output over all positions) and report the result.

    Returns the target's probability and rank in the clean, corrupted and patched runs, the
    recovery (normalized probability, %), each run's top-k tokens, and the chosen metric.
    """
    setup = _setup(exp, component, metric, direction)
    comp, model = setup.component, exp.model
    _check_index(model.n_layers, "layer", layer)
    index: dict[str, int] = {"layer": layer}
    cell: list[int] = [layer]
    for axis in comp.axes[1:]:
        value = head if axis == "head" else pos
        if value is None:
            raise InputError(
                f"Component {comp.name!r} is indexed by {', '.join(comp.axes)}: give {axis}.",
                field=axis,
            )
        size = model.n_heads if axis == "head" else setup.n_positions
        _check_index(size, axis, value)
        index[axis] = value
        cell.append(value)

    with torch.inference_mode():
        runner = exp.runner
        clean_final, corrupt_final = exp.run("clean").final, exp.run("corrupt").final
        base_final = corrupt_final if setup.direction == "denoising" else clean_final
        note = None
        if comp.by_pos and not setup.aligned(cell[1]):
            patched_final = base_final
            note = (
                f"Position {cell[1]} has no counterpart in the other prompt: nothing was patched."
            )
        elif comp.by_pos and cell[1] < setup.start:
            patched_final = base_final
            note = f"Position {cell[1]} is identical in both prompts: the patch changes nothing."
        else:
            start = max(setup.start, cell[1]) if comp.by_pos else setup.start
            patched_final = _run_cells(setup, [tuple(cell)], start)

        target = exp.target_ids
        logits = {
            "clean": exp.logits("clean"),
            "corrupt": exp.logits("corrupt"),
            "patched": runner.unembed(patched_final),
        }
        probs = {k: v.softmax(-1) for k, v in logits.items()}
        rows = torch.arange(exp.n_pairs, device=target.device)
        prob = {k: float(v[rows, target].mean()) for k, v in probs.items()}
        rank = {k: float(_rank(v, target).float().mean()) for k, v in logits.items()}
        values = {
            k: float(from_logits(setup.metric, v, target, exp.wrong_ids).mean())
            for k, v in logits.items()
        }

    return PatchResult(
        model=model.name,
        component=comp.name,
        direction=setup.direction,
        index=index,
        clean_prob=prob["clean"],
        corrupt_prob=prob["corrupt"],
        patched_prob=prob["patched"],
        recovery_pct=100 * normalize(prob["patched"], prob["clean"], prob["corrupt"]),
        clean_rank=round(rank["clean"]),
        corrupt_rank=round(rank["corrupt"]),
        patched_rank=round(rank["patched"]),
        top_clean=_top_tokens(exp, probs["clean"].mean(0), top_k),
        top_corrupt=_top_tokens(exp, probs["corrupt"].mean(0), top_k),
        top_patched=_top_tokens(exp, probs["patched"].mean(0), top_k),
        metric=setup.metric,
        metric_clean=values["clean"],
        metric_corrupt=values["corrupt"],
        metric_patched=values["patched"],
        metric_normalized=normalize(values["patched"], values["clean"], values["corrupt"]),
        patched_positions=[p for p in range(setup.n_positions) if setup.aligned(p)],
        tokens=model.to_str_tokens(setup.base.tokens[0]),
        note=note,
    )


def _check_index(size: int, axis: str, value: int) -> None:
    if not 0 <= value < size:
        raise InputError(
            f"{axis} {value} is out of range: this model has {axis}s 0 to {size - 1}.", field=axis
        )


def group_by_length(
    model: LoadedModel,
    clean: list[str],
    corrupt: list[str],
    target: list[str],
    wrong: list[str] | None = None,
) -> list[Experiment]:
    """Experiments over prompt pairs, one per (clean length, corrupted length) group."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (c, k) in enumerate(zip(clean, corrupt, strict=True)):
        key = (len(model.to_tokens(c)), len(model.to_tokens(k)))
        groups.setdefault(key, []).append(i)
    return [
        Experiment(
            model,
            [clean[i] for i in idx],
            [corrupt[i] for i in idx],
            [target[i] for i in idx],
            [wrong[i] for i in idx] if wrong is not None else None,
        )
        for idx in groups.values()
    ]


def sweep_many(
    experiments: list[Experiment],
    component: str = "z",
    metric: str | None = None,
    direction: str = "denoising",
    *,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SweepResult:
    """One sweep over several experiments (e.g. a dataset's length groups), averaged per pair.

    Raw values, clean and corrupted baselines are averaged over all pairs (each group weighted
    by its number of pairs), as TransformerLens averages a metric over its batch; the normalized
    value is then computed from those averages. Position-resolved components need one group.
    """
    if len(experiments) == 1:
        return sweep(
            experiments[0],
            component,
            metric,
            direction,
            progress=progress,
            should_stop=should_stop,
        )
    comp = get_component(component)
    if comp.by_pos:
        lengths = sorted(
            {(e.clean_tokens.shape[1], e.corrupt_tokens.shape[1]) for e in experiments}
        )
        raise InputError(
            f"Component {comp.name!r} is resolved by position, but the prompt pairs have "
            f"{len(lengths)} different token lengths {lengths}: a position means different "
            "things in each. Use one template (same length) or a component over all positions "
            "(z, q, k, v, pattern).",
            field="component",
        )
    t0 = time.perf_counter()
    results = []
    for i, exp in enumerate(experiments):

        def report(done: int, total: int, offset: int = i) -> None:
            if progress is not None:
                progress(offset * total + done, len(experiments) * total)

        results.append(
            sweep(exp, component, metric, direction, progress=report, should_stop=should_stop)
        )
    weights = torch.tensor([float(e.n_pairs) for e in experiments])
    weights = weights / weights.sum()
    raw = sum(w * r.raw for w, r in zip(weights, results, strict=True))
    clean = float(sum(w * r.clean for w, r in zip(weights, results, strict=True)))
    corrupt = float(sum(w * r.corrupt for w, r in zip(weights, results, strict=True)))
    assert isinstance(raw, Tensor)
    first = results[0]
    normalized, note = _normalized(raw, clean, corrupt, first.metric)
    first.raw, first.normalized, first.clean, first.corrupt = raw, normalized, clean, corrupt
    first.note = note
    first.n_pairs = sum(e.n_pairs for e in experiments)
    first.seconds = time.perf_counter() - t0
    first.extra["length_groups"] = [
        {
            "clean_len": int(e.clean_tokens.shape[1]),
            "corrupt_len": int(e.corrupt_tokens.shape[1]),
            "n_pairs": e.n_pairs,
        }
        for e in experiments
    ]
    first.extra["note_tokens"] = "tokens are those of the first group's first pair"
    return first
