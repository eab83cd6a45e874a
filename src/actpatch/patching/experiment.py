"""An experiment: a model, clean and corrupted prompts, and the answers that tell them apart.

`Experiment` tokenizes and checks the input (each error names the field at fault and says how
to fix it), aligns the two prompts' positions, and caches each run's activations so that any
number of sweeps and single patches on the same prompts share two forward passes.

Several prompt pairs may be given (a dataset); the metric is averaged over pairs, as
TransformerLens averages over its batch. Clean prompts share one token length, corrupted ones
another: each position is one column of the result. Pairs may name their positions by role
(`positions`: {"IO": [2], "S2": [10], ...} per pair), which holds across templates of different
lengths (`group_by_length` makes one experiment per length; `sweep_many` joins them).

Mixed lengths in one batch: `padded(experiments)` joins length groups whose clean and corrupted
prompts have the same length pair by pair into one experiment whose prompts are *left-padded*
to the longest (`Experiment.pad`: each pair's padding count; the fast path hides the padding,
`actpatch.arch.forward`). Its role positions and first differing position are in padded
coordinates; every real token computes what it computes in its own group.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from actpatch.datasets import PromptDataset
from actpatch.errors import InputError
from actpatch.models import LoadedModel
from actpatch.patching import runners
from actpatch.patching.alignment import Alignment, RoleAlignment, align

RolePositions = Mapping[str, int | Sequence[int]]


@dataclass
class Run:
    """One unpatched run of a batch of prompts: tokens, final residuals and cached activations."""

    tokens: Tensor  # (pairs, pos)
    final: Tensor  # (pairs, d_model) final residual before ln_f; logits on the bridge path
    cache: dict[tuple[str, int], Tensor]


def _as_list(value: str | Sequence[str], field: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    what = field.replace("_", " ")
    if not isinstance(value, Iterable):
        raise InputError(
            f"The {what} is a {type(value).__name__}: give a string, or a list of strings "
            "(one per prompt pair).",
            field=field,
        )
    values = list(value)
    if not values:
        raise InputError(f"No {field} given: give at least one.", field=field)
    for i, item in enumerate(values):
        if not isinstance(item, str):
            raise InputError(
                f"Item {i} of the {what}s is a {type(item).__name__}, not a string: give "
                "text (an answer such as ' Mary', with its leading space).",
                field=field,
            )
    return values


def check_experiment(exp: Any) -> Experiment:
    """`exp` if it is one Experiment; a teaching error for a list of them (the `*_many`
    functions take those) or anything else."""
    if isinstance(exp, Experiment):
        return exp
    if isinstance(exp, list | tuple) and exp and all(isinstance(e, Experiment) for e in exp):
        raise InputError(
            f"One Experiment is patched at a time, and a list of {len(exp)} was given: for "
            "several (a dataset's length groups), call the function's *_many form (sweep_many, "
            "ablate_many, path_patch_many, edge_attribution_many, evaluate_many), or pass one "
            "of them.",
            field="experiment",
        )
    raise InputError(
        f"Expected an Experiment, got a {type(exp).__name__}: build one with "
        "actpatch.Experiment(model, clean, corrupt, target, wrong).",
        field="experiment",
    )


def answer_id(model: LoadedModel, answer: str, field: str = "target_token") -> int:
    """The single token id of `answer`; a teaching error if it is not exactly one token."""
    if answer == "":
        raise InputError(f"The {field.replace('_', ' ')} is empty: give one token.", field=field)
    ids = model.to_tokens(answer, prepend_bos=False)
    if len(ids) == 1:
        return ids[0]
    pieces = model.to_str_tokens(ids)
    hint = ""
    if not answer.startswith(" ") and len(model.to_tokens(" " + answer, prepend_bos=False)) == 1:
        hint = (
            f" Did you mean {' ' + answer!r}, with a leading space? A word after a space "
            "is tokenized together with it."
        )
    elif answer.startswith(" ") and len(model.to_tokens(answer.strip(), prepend_bos=False)) == 1:
        hint = f" Without the leading space, {answer.strip()!r} is one token."
    raise InputError(
        f"The {field.replace('_', ' ')} {answer!r} is {len(ids)} tokens for {model.name}: "
        f"{pieces}. Answers must be a single token.{hint}",
        field=field,
    )


class Experiment:
    """Clean and corrupted prompts with their answers, tokenized, aligned and ready to patch."""

    def __init__(
        self,
        model: LoadedModel,
        clean: str | Sequence[str],
        corrupt: str | Sequence[str],
        target: str | Sequence[str],
        wrong: str | Sequence[str] | None = None,
        *,
        backend: str = "auto",
        positions: Sequence[RolePositions] | None = None,
        corrupt_positions: Sequence[RolePositions] | None = None,
        pair_index: Sequence[int] | None = None,
        pad: bool = False,
        token_ids: tuple[list[list[int]], list[list[int]]] | None = None,
    ) -> None:
        if not isinstance(model, LoadedModel):
            hint = repr(model) if isinstance(model, str) else "'demo'"
            raise InputError(
                f"Experiment's model is a {type(model).__name__}, not a loaded model: load it "
                f"first, model = actpatch.load_model({hint}), and pass that.",
                field="model",
            )
        self.model = model
        self.backend = runners.choose_backend(model, backend)
        # Why the fast path does not run this model, when "auto" fell back to the bridge.
        self.fallback_reason = (
            runners.fast_path_problem(model)
            if backend == "auto" and self.backend == "bridge"
            else None
        )
        self.clean_prompts = _as_list(clean, "clean_prompt")
        self.corrupt_prompts = _as_list(corrupt, "corrupt_prompt")
        if len(self.clean_prompts) != len(self.corrupt_prompts):
            raise InputError(
                f"{len(self.clean_prompts)} clean prompts but {len(self.corrupt_prompts)} "
                "corrupted ones: give one corrupted prompt per clean prompt.",
                field="corrupt_prompt",
            )
        n_pairs = len(self.clean_prompts)
        targets = _as_list(target, "target_token")
        self.target_strs = targets * n_pairs if len(targets) == 1 else targets
        self.wrong_strs: list[str] | None = None
        if wrong is not None and not (isinstance(wrong, str) and wrong == ""):
            wrongs = _as_list(wrong, "wrong_token")
            self.wrong_strs = wrongs * n_pairs if len(wrongs) == 1 else wrongs
        for name, values in (("target_token", self.target_strs), ("wrong_token", self.wrong_strs)):
            if values is not None and len(values) != n_pairs:
                raise InputError(
                    f"{len(values)} values of {name} for {n_pairs} prompt pairs: give one per "
                    "pair, or one for all.",
                    field=name,
                )

        if token_ids is not None:  # already tokenized (and checked) by the length groups
            clean_ids, corrupt_ids = token_ids
        else:
            clean_ids = [self._tokenize(p, "clean_prompt") for p in self.clean_prompts]
            corrupt_ids = [self._tokenize(p, "corrupt_prompt") for p in self.corrupt_prompts]
        # Left-padding per pair (None: all prompts share one length, nothing is padded).
        self.pad: Tensor | None = None
        if pad:
            clean_ids, corrupt_ids, counts = self._left_pad(clean_ids, corrupt_ids)
            positions = _shifted(positions, counts)
            corrupt_positions = _shifted(corrupt_positions, counts)
            self.pad = torch.tensor(counts, device=model.device)
        self._check_lengths(clean_ids, "clean_prompt")
        self._check_lengths(corrupt_ids, "corrupt_prompt")
        alignments = [align(c, k) for c, k in zip(clean_ids, corrupt_ids, strict=True)]
        if any(a.pairs != alignments[0].pairs for a in alignments):
            raise InputError(
                "The prompt pairs align differently (their common prefixes or suffixes differ "
                "in length). Patch pairs of different lengths one pair at a time.",
                field="corrupt_prompt",
            )
        self.alignment: Alignment = alignments[0]
        # The first position where any pair's runs can differ; before it they are identical.
        self.first_diff = min(a.first_diff for a in alignments)
        device = model.device
        self.clean_tokens = torch.tensor(clean_ids, device=device)
        self.corrupt_tokens = torch.tensor(corrupt_ids, device=device)
        known: dict[str, int] = {}  # a dataset repeats its answers: tokenize each once

        def ids(answers: list[str], field: str) -> Tensor:
            for a in answers:
                if a not in known:
                    known[a] = self.answer_id(a, field)
            return torch.tensor([known[a] for a in answers], device=device)

        self.target_ids = ids(self.target_strs, "target_token")
        self.wrong_ids = (
            ids(self.wrong_strs, "wrong_token") if self.wrong_strs is not None else None
        )
        # Where each pair sits in the dataset it came from (a length group's pairs are a subset).
        self.pair_index = list(pair_index) if pair_index is not None else list(range(n_pairs))
        if len(self.pair_index) != n_pairs:
            raise InputError(
                f"{len(self.pair_index)} pair indices for {n_pairs} pairs.", field="dataset"
            )
        self.roles: RoleAlignment | None = None
        if positions is not None:
            self.roles = self._roles(
                positions, corrupt_positions or positions, clean_ids, corrupt_ids
            )
        self._runs: dict[str, Run] = {}
        self._logits: dict[str, Tensor] = {}
        self._lock = threading.Lock()

    # -- input checks ---------------------------------------------------------------------

    def _left_pad(
        self, clean: list[list[int]], corrupt: list[list[int]]
    ) -> tuple[list[list[int]], list[list[int]], list[int]]:
        """Every prompt left-padded to the longest; each pair's padding count.

        The padding token is the first token of the first prompt (BOS); any token would do,
        since the padded positions are hidden.
        """
        if any(len(c) != len(k) for c, k in zip(clean, corrupt, strict=True)):
            raise InputError(
                "Padding needs each pair's clean and corrupted prompts to have the same token "
                "length; group the pairs by length instead.",
                field="corrupt_prompt",
            )
        longest, token = max(len(c) for c in clean), clean[0][0]
        counts = [longest - len(c) for c in clean]
        return (
            [[token] * n + c for n, c in zip(counts, clean, strict=True)],
            [[token] * n + k for n, k in zip(counts, corrupt, strict=True)],
            counts,
        )

    def _tokenize(self, prompt: str, field: str) -> list[int]:
        if not prompt.strip():
            raise InputError(f"The {field.replace('_', ' ')} is empty: type a prompt.", field=field)
        ids = self.model.to_tokens(prompt)
        if len(ids) > self.model.n_ctx:
            raise InputError(
                f"The {field.replace('_', ' ')} is {len(ids)} tokens (with BOS) but "
                f"{self.model.name} reads at most {self.model.n_ctx}: shorten it.",
                field=field,
            )
        return ids

    @staticmethod
    def _check_lengths(ids: list[list[int]], field: str) -> None:
        lengths = sorted({len(x) for x in ids})
        if len(lengths) > 1:
            raise InputError(
                f"The {field.replace('_', ' ')}s have different token lengths {lengths}: each "
                "position is one column of the result, so all must share one length. Group "
                "the pairs by length (e.g. one template per dataset) and patch each group.",
                field=field,
            )

    def answer_id(self, answer: str, field: str = "target_token") -> int:
        """The single token id of `answer`; a teaching error if it is not exactly one token."""
        return answer_id(self.model, answer, field)

    def _roles(
        self,
        clean: Sequence[RolePositions],
        corrupt: Sequence[RolePositions],
        clean_ids: list[list[int]],
        corrupt_ids: list[list[int]],
    ) -> RoleAlignment:
        """Check each pair's named positions and gather them (same roles in every pair)."""
        n = self.n_pairs
        if len(clean) != n or len(corrupt) != n:
            raise InputError(
                f"Role positions are given for {len(clean)} pairs (corrupted: {len(corrupt)}) but "
                f"there are {n} pairs: give one positions object per pair.",
                field="positions",
            )
        names = tuple(clean[0])
        if not names:
            raise InputError("The positions name no roles: name at least one.", field="positions")

        def gather(table: Sequence[RolePositions], ids: list[list[int]], field: str) -> Any:
            pairs = []
            for p, (roles, tokens) in enumerate(zip(table, ids, strict=True)):
                if set(roles) != set(names):
                    raise InputError(
                        f"Pair {self.pair_index[p]} names roles {sorted(roles)} but pair "
                        f"{self.pair_index[0]} names {sorted(names)}: every pair must name the "
                        "same roles.",
                        field=field,
                    )
                spans = []
                for role in names:
                    where = roles[role]
                    where = (where,) if isinstance(where, int) else tuple(where)
                    bad = [q for q in where if not 0 <= q < len(tokens)]
                    if not where or bad:
                        raise InputError(
                            f"Pair {self.pair_index[p]}: role {role!r} is at {list(where)}, "
                            f"outside the prompt's {len(tokens)} tokens (positions count from "
                            "0, the BOS token).",
                            field=field,
                        )
                    spans.append(where)
                pairs.append(tuple(spans))
            return tuple(pairs)

        roles = RoleAlignment(
            names,
            gather(clean, clean_ids, "positions"),
            gather(corrupt, corrupt_ids, "corrupt_positions"),
        )
        for p in range(n):
            for r, role in enumerate(names):
                if len(roles.clean[p][r]) != len(roles.corrupt[p][r]):
                    raise InputError(
                        f"Pair {self.pair_index[p]}: role {role!r} is "
                        f"{len(roles.clean[p][r])} token(s) in the clean prompt but "
                        f"{len(roles.corrupt[p][r])} in the corrupted one; a role is patched "
                        "token for token, so give it the same number of tokens in both.",
                        field="corrupt_positions",
                    )
        return roles

    # -- the runs ---------------------------------------------------------------------------

    def __repr__(self) -> str:
        """The experiment by model, pairs and token lengths, with its first pair in full."""
        wrong = f", wrong={self.wrong_strs[0]!r}" if self.wrong_strs is not None else ""
        return (
            f"Experiment({self.model.name!r}, {self.backend}, {self.n_pairs} pair(s) of "
            f"{self.clean_tokens.shape[1]}/{self.corrupt_tokens.shape[1]} tokens"
            f"{', left-padded' if self.pad is not None else ''}; clean={self.clean_prompts[0]!r}, "
            f"corrupt={self.corrupt_prompts[0]!r}, target={self.target_strs[0]!r}{wrong})"
        )

    @property
    def n_pairs(self) -> int:
        return len(self.clean_prompts)

    @property
    def runner(self) -> Any:
        """What runs the model: the fast path, or TransformerLens's bridge (`self.backend`)."""
        return runners.runner(self.model, self.backend)

    def run(self, which: str, names: Iterable[str] = ()) -> Run:
        """The unpatched clean or corrupted run, caching at least `names`, and what a patched
        run starts from: the residual stream and the past keys and values."""
        if self.clean_tokens.shape == self.corrupt_tokens.shape:
            # Both runs in one batched forward: the weights are read once.
            with torch.inference_mode():
                self.run_both_with(names, self._forward())
            return self._runs[which]
        wanted = {"resid_pre", *self.runner.past_names, *names}
        with self._lock:
            known = self._runs.get(which)
            have = {name for name, _ in known.cache} if known is not None else set()
            if known is not None and wanted <= have:
                return known
            tokens = self.clean_tokens if which == "clean" else self.corrupt_tokens
            with torch.inference_mode():
                final, cache = self._forward()(tokens, wanted | have, **self.padding)
            self._runs[which] = Run(tokens, final, cache)
            return self._runs[which]

    def _forward(self) -> Callable[..., tuple[Tensor, dict[Any, Tensor]]]:
        """The runner's `run_with_cache`; replayed from recorded CUDA graphs on a fast-path
        model with `cuda_graphs` on (`actpatch.patching.graphs`)."""
        if self.backend == "fast" and self.model.cuda_graphs:
            from actpatch.patching.graphs import cached_forward

            return cached_forward(self.runner)
        return self.runner.run_with_cache  # type: ignore[no-any-return]

    @property
    def padding(self) -> dict[str, Tensor]:
        """Keyword arguments that hand the runner this experiment's left-padding (`pad`); none
        when nothing is padded (the bridge runner, which never pads, takes none)."""
        return {} if self.pad is None else {"pad": self.pad}

    def run_both_with(
        self,
        names: Iterable[str],
        forward: Callable[..., tuple[Tensor, dict[Any, Tensor]]],
    ) -> Tensor | None:
        """Compute and cache both runs with the caller's own forward, when they are not cached
        yet: `forward(tokens, wanted, **padding)` runs the clean rows then the corrupted rows
        and returns (final residuals, cache of the hook points in `wanted`), the same numbers as
        the runner's `run_with_cache` (which `run` passes; a gradient pass passes a forward with
        autograd recording, so that it costs no second forward). Returns forward's final
        residuals, or None (nothing run) when both runs already cache `names` or the prompts
        differ in length (the runs are separate then)."""
        if self.clean_tokens.shape != self.corrupt_tokens.shape:
            return None
        wanted = {"resid_pre", *self.runner.past_names, *names}
        with self._lock:
            have = [{name for name, _ in run.cache} for run in self._runs.values()]
            if len(have) == 2 and all(wanted <= h for h in have):
                return None
            for h in have:
                wanted |= h
            both = torch.cat([self.clean_tokens, self.corrupt_tokens])
            final, cache = forward(both, wanted, **self.padding)
            self._keep_both(both, final.detach(), {k: v.detach() for k, v in cache.items()})
        return final

    def _keep_both(self, both: Tensor, final: Tensor, cache: dict[Any, Tensor]) -> None:
        """Cache a batched run of the clean rows then the corrupted rows as the two runs."""
        n = self.n_pairs
        for i, key in enumerate(("clean", "corrupt")):
            part = slice(i * n, (i + 1) * n)
            self._runs[key] = Run(both[part], final[part], {k: v[part] for k, v in cache.items()})

    def logits(self, which: str) -> Tensor:
        """The unpatched run's full final-position logits. (pairs, d_vocab), computed once;
        with prompts of one length both runs' logits come from one unembedding."""
        with self._lock:
            known = self._logits.get(which)
        if known is None:
            both = self.clean_tokens.shape == self.corrupt_tokens.shape
            keys = ("clean", "corrupt") if both else (which,)
            with torch.inference_mode():
                finals = [self.run(key).final for key in keys]
                logits = self.runner.unembed(torch.cat(finals)).split(self.n_pairs)
            with self._lock:
                for key, value in zip(keys, logits, strict=True):
                    self._logits.setdefault(key, value)
                known = self._logits[which]
        return known

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached runs and logits: what keeping this experiment costs.

        Tensors that share memory (the clean and corrupted halves of one batched run) count
        once. Read without the lock, so it never waits for a run being computed: a snapshot.
        """
        runs, logits = list(self._runs.values()), list(self._logits.values())
        tensors = [t for run in runs for t in (run.tokens, run.final, *run.cache.values())]
        storages = (t.untyped_storage() for t in [*tensors, *logits])
        return sum({s.data_ptr(): s.nbytes() for s in storages}.values())

    def str_tokens(self, which: str) -> list[str]:
        """The token strings of the first pair's clean or corrupted prompt."""
        tokens = self.clean_tokens if which == "clean" else self.corrupt_tokens
        return self.model.to_str_tokens(tokens[0])


def _shifted(
    table: Sequence[RolePositions] | None, counts: list[int]
) -> list[dict[str, list[int]]] | None:
    """Role positions moved right by each pair's padding."""
    if table is None:
        return None
    return [
        {
            role: [q + n for q in ((where,) if isinstance(where, int) else where)]
            for role, where in roles.items()
        }
        for roles, n in zip(table, counts, strict=True)
    ]


def can_pad(experiments: Sequence[Experiment]) -> str | None:
    """None if `padded(experiments)` can join them, else why not."""
    if any(e.backend != "fast" for e in experiments):
        return "the bridge backend (TransformerLens) runs each length group on its own"
    if any(not e.alignment.identity for e in experiments):
        return "some pairs' clean and corrupted prompts differ in length"
    if any(e.model is not experiments[0].model for e in experiments):
        return "the experiments use different models"
    if len({e.roles.names if e.roles is not None else () for e in experiments}) > 1:
        return "the length groups name different roles"
    if len({e.wrong_ids is None for e in experiments}) > 1:
        return "some groups have a wrong answer and others not"
    indices = sorted(i for e in experiments for i in e.pair_index)
    if indices != list(range(len(indices))):
        return "the experiments are not one dataset's length groups (their pair indices clash)"
    return None


def padded(experiments: Sequence[Experiment]) -> Experiment:
    """One experiment over every pair of `experiments` (length groups), left-padded to the
    longest prompt, its pairs in the dataset's order (each group's `pair_index`; `can_pad`
    says when this works)."""
    pairs = [(index, exp, p) for exp in experiments for p, index in enumerate(exp.pair_index)]
    pairs.sort(key=lambda pair: pair[0])
    wrong = None
    if experiments[0].wrong_strs is not None:
        wrong = [exp.wrong_strs[p] for _, exp, p in pairs if exp.wrong_strs is not None]
    positions = corrupt_positions = None
    if experiments[0].roles is not None:

        def table(which: str) -> list[dict[str, list[int]]]:
            out = []
            for _, exp, p in pairs:
                assert exp.roles is not None
                spans = getattr(exp.roles, which)[p]
                out.append({r: list(s) for r, s in zip(exp.roles.names, spans, strict=True)})
            return out

        positions, corrupt_positions = table("clean"), table("corrupt")
    clean_ids = [exp.clean_tokens[p].tolist() for _, exp, p in pairs]
    corrupt_ids = [exp.corrupt_tokens[p].tolist() for _, exp, p in pairs]
    return Experiment(
        experiments[0].model,
        [exp.clean_prompts[p] for _, exp, p in pairs],
        [exp.corrupt_prompts[p] for _, exp, p in pairs],
        [exp.target_strs[p] for _, exp, p in pairs],
        wrong,
        backend=experiments[0].backend,
        positions=positions,
        corrupt_positions=corrupt_positions,
        pair_index=[index for index, _, _ in pairs],
        pad=True,
        token_ids=(clean_ids, corrupt_ids),
    )


def group_by_length(
    model: LoadedModel,
    clean: str | list[str],
    corrupt: str | list[str],
    target: str | list[str],
    wrong: str | list[str] | None = None,
    *,
    positions: list[dict[str, list[int]]] | None = None,
    corrupt_positions: list[dict[str, list[int]]] | None = None,
) -> list[Experiment]:
    """Experiments over prompt pairs, one per (clean length, corrupted length) group.

    As for `Experiment`, a prompt may be one string, and an answer one string for every pair."""
    clean_list = _as_list(clean, "clean_prompt")
    n_pairs = len(clean_list)

    def per_pair(value: str | list[str], field: str) -> list[str]:
        return [value] * n_pairs if isinstance(value, str) else _as_list(value, field)

    pairs = PromptDataset(
        clean_list,
        _as_list(corrupt, "corrupt_prompt"),
        per_pair(target, "target_token"),
        None if wrong is None else per_pair(wrong, "wrong_token"),
        name="pairs",
        positions=positions,
        corrupt_positions=corrupt_positions,
    )
    return dataset_experiments(model, pairs, check=False)


def dataset_experiments(
    model: LoadedModel, dataset: PromptDataset, *, backend: str = "auto", check: bool = True
) -> list[Experiment]:
    """A dataset's experiments, one per length group, each knowing its pairs' dataset indices.

    With `check`, first raise an InputError naming the pair (a JSONL file's line) whose answer
    is not one token or whose role lies outside its prompt.
    """
    if check:
        dataset.check(model.to_tokens, lambda text: model.to_tokens(text, prepend_bos=False))
    out = []
    for indices in dataset.length_groups(model.to_tokens):
        group = dataset.select(indices)
        out.append(
            Experiment(
                model,
                group.clean,
                group.corrupt,
                group.target,
                group.wrong,
                backend=backend,
                positions=group.positions,
                corrupt_positions=group.corrupt_positions,
                pair_index=indices,
            )
        )
    return out


__all__ = [
    "Experiment",
    "Run",
    "answer_id",
    "can_pad",
    "dataset_experiments",
    "group_by_length",
    "padded",
]
