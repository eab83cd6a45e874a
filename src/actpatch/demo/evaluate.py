"""Measure the demo model's quality: held-out IOI accuracy and logit difference, factual recall.

Run `python -m actpatch.demo.evaluate`. It loads the model through `load_demo()`, the path
every other part of actpatch uses, and reports, at the final position of each prompt:

- IOI accuracy: the share of prompts whose indirect object's logit is above the subject's
  (`logit(target) > logit(wrong)`), on held-out names, held-out templates, and both at once;
- IOI mean logit difference `logit(target) - logit(wrong)` on the same prompts;
- IOI top-1: the share of prompts whose most likely next token (of all 50257) is the IO;
- corrupted accuracy: on the corrupted prompts the answer flips to the subject, so the share
  whose subject's logit is above the IO's;
- factual recall top-1 accuracy over every fact the model was taught.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from actpatch.datasets import (
    FACTUAL_RELATIONS,
    IOI_HELDOUT_NAMES,
    IOI_HELDOUT_TEMPLATES,
    IOI_TRAIN_NAMES,
    IOI_TRAIN_TEMPLATES,
    PromptDataset,
    ioi,
)

# Same-length token id lists (BOS first) -> (batch, d_vocab) logits at the final position.
FinalLogitsFn = Callable[[list[list[int]]], torch.Tensor]

BATCH_SIZE = 256


def model_final_logits(model: PreTrainedModel) -> FinalLogitsFn:
    """A function giving `model`'s final-position logits for a batch of same-length prompts."""

    def final_logits(batch: list[list[int]]) -> torch.Tensor:
        with torch.no_grad():
            return model(input_ids=torch.tensor(batch)).logits[:, -1, :]

    return final_logits


def encode(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> list[list[int]]:
    """GPT-2 token ids of each text, with BOS (token 50256) first as the model was trained."""
    bos = int(tokenizer.bos_token_id)
    return [[bos, *ids] for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def answer_token(tokenizer: PreTrainedTokenizerBase, answer: str) -> int:
    """The one GPT-2 token id of `answer` (e.g. " Mary"); an error if it is not one token."""
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"Answer {answer!r} is {len(ids)} tokens; the metrics need one token.")
    return int(ids[0])


def batched_final_logits(final_logits: FinalLogitsFn, prompts: list[list[int]]) -> torch.Tensor:
    """(n_prompts, d_vocab) final-position logits, run in batches of equal-length prompts."""
    by_length: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        by_length.setdefault(len(ids), []).append(i)
    out: torch.Tensor | None = None
    for indices in by_length.values():
        for start in range(0, len(indices), BATCH_SIZE):
            chunk = indices[start : start + BATCH_SIZE]
            logits = final_logits([prompts[i] for i in chunk])
            if out is None:
                out = logits.new_empty(len(prompts), logits.shape[-1])
            out[chunk] = logits
    assert out is not None  # prompts is never empty here
    return out


def ioi_quality(
    final_logits: FinalLogitsFn, tokenizer: PreTrainedTokenizerBase, dataset: PromptDataset
) -> dict[str, float]:
    """IOI accuracy, mean logit difference, top-1 rate and corrupted accuracy on `dataset`."""
    if dataset.wrong is None:
        raise ValueError("IOI quality needs the wrong answer (the subject) of every pair.")
    target = torch.tensor([answer_token(tokenizer, t) for t in dataset.target])
    wrong = torch.tensor([answer_token(tokenizer, w) for w in dataset.wrong])
    rows = torch.arange(len(dataset))
    clean_logits = batched_final_logits(final_logits, encode(tokenizer, dataset.clean))
    corrupt_logits = batched_final_logits(final_logits, encode(tokenizer, dataset.corrupt))
    logit_diff = clean_logits[rows, target] - clean_logits[rows, wrong]  # (n,)
    corrupt_diff = corrupt_logits[rows, target] - corrupt_logits[rows, wrong]  # (n,)
    return {
        "n": float(len(dataset)),
        "accuracy": (logit_diff > 0).float().mean().item(),
        "logit_diff": logit_diff.mean().item(),
        "top1": (clean_logits.argmax(-1) == target).float().mean().item(),
        "corrupted_accuracy": (corrupt_diff < 0).float().mean().item(),
        "corrupted_logit_diff": corrupt_diff.mean().item(),
    }


def factual_quality(
    final_logits: FinalLogitsFn, tokenizer: PreTrainedTokenizerBase
) -> dict[str, float]:
    """Top-1 accuracy (over the full vocabulary) on every fact of every factual relation."""
    result: dict[str, float] = {}
    total_correct, total = 0, 0
    for relation, (template, facts) in FACTUAL_RELATIONS.items():
        prompts = [template.format(subject=subject) for subject, _ in facts]
        answers = torch.tensor([answer_token(tokenizer, " " + answer) for _, answer in facts])
        logits = batched_final_logits(final_logits, encode(tokenizer, prompts))
        correct = int((logits.argmax(-1) == answers).sum())
        result[f"{relation}_accuracy"] = correct / len(facts)
        total_correct, total = total_correct + correct, total + len(facts)
    result["accuracy"] = total_correct / total
    result["n"] = float(total)
    return result


def ioi_eval_sets(n: int, seed: int) -> dict[str, PromptDataset]:
    """The IOI evaluation sets: held-out names and/or held-out templates, plus training ones."""
    return {
        "heldout names + heldout templates": ioi(n, seed, split="heldout"),
        "heldout names, train templates": ioi(
            n, seed, templates=IOI_TRAIN_TEMPLATES, names=IOI_HELDOUT_NAMES
        ),
        "train names, heldout templates": ioi(
            n, seed, templates=IOI_HELDOUT_TEMPLATES, names=IOI_TRAIN_NAMES
        ),
        "train names + train templates": ioi(n, seed, split="train"),
    }


def evaluate(
    final_logits: FinalLogitsFn, tokenizer: PreTrainedTokenizerBase, n: int = 500, seed: int = 1
) -> dict[str, dict[str, float]]:
    """Every quality number of the demo model: IOI per evaluation set, and factual recall."""
    results = {
        name: ioi_quality(final_logits, tokenizer, dataset)
        for name, dataset in ioi_eval_sets(n, seed).items()
    }
    results["factual recall"] = factual_quality(final_logits, tokenizer)
    return results


def format_results(results: dict[str, dict[str, float]]) -> str:
    """The results as a plain-text table, one evaluation set a line."""
    lines = [f"{'IOI set':36} {'n':>5} {'acc':>6} {'logit diff':>10} {'top-1':>6} {'corr. acc':>9}"]
    for name, r in results.items():
        if name == "factual recall":
            continue
        lines.append(
            f"{name:36} {int(r['n']):5d} {r['accuracy']:6.1%} {r['logit_diff']:10.2f} "
            f"{r['top1']:6.1%} {r['corrupted_accuracy']:9.1%}"
        )
    fact = results["factual recall"]
    parts = ", ".join(
        f"{k.removesuffix('_accuracy')} {v:.1%}" for k, v in fact.items() if k.endswith("_accuracy")
    )
    lines.append(
        f"factual recall top-1: {fact['accuracy']:.1%} of {int(fact['n'])} facts ({parts})"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Load the demo model through `load_demo()` and print its quality numbers."""
    from actpatch.demo import WEIGHTS_PATH, load_demo

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="prompts per IOI set (default 500)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the IOI sets (default 1)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS_PATH, help="compact weights file")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    model, tokenizer = load_demo(args.weights)
    load_s = time.perf_counter() - start
    results = evaluate(model_final_logits(model), tokenizer, n=args.n, seed=args.seed)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(f"demo model {args.weights.name}: loaded in {load_s:.2f} s")
        print(format_results(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
