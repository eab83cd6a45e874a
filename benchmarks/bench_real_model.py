"""SmolLM2-135M-Instruct (`--model smollm2`, a real trained Llama-family model) against
TransformerLens, in one process, on every cell.

tests/test_real_model.py holds the same model to TransformerLens on a subset of cells (the
suite's time budget); this script runs TransformerLens's whole loops: the head sweep
(`get_act_patch_attn_head_out_all_pos`), the resid_pre sweep (`get_act_patch_resid_pre`) and
the mlp_out sweep (`get_act_patch_mlp_out`), through its `TransformerBridge`, on one short IOI
pair, and prints each one's time against ours and the largest difference in the normalized
logit difference. Then the model's behaviour: its clean IOI and factual accuracy on generated
datasets, and the resid_pre sweep's S2 -> END handoff.

    python benchmarks/bench_real_model.py [--threads N] [--pairs 64]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

import actpatch
from actpatch.datasets import factual, ioi
from actpatch.patching.experiment import dataset_experiments

CLEAN = "When Mary and John met, John gave a book to"
CORRUPT = "When Mary and John met, Mary gave a book to"


def transformer_lens_sweeps(model: actpatch.LoadedModel, exp: actpatch.Experiment) -> None:
    """Each component's sweep, ours and TransformerLens's, timed and compared."""
    import transformer_lens.patching as tlp

    bridge = model.bridge()
    target, wrong = exp.target_ids, exp.wrong_ids

    def raw(logits: torch.Tensor) -> torch.Tensor:
        last = logits[:, -1]
        return (last.gather(1, target[:, None]) - last.gather(1, wrong[:, None])).mean()

    def normalized(logits: torch.Tensor) -> torch.Tensor:
        return (raw(logits) - corrupt) / (clean - corrupt)

    with torch.no_grad():
        clean = float(raw(bridge(exp.clean_tokens)))
        corrupt = float(raw(bridge(exp.corrupt_tokens)))
        _, clean_cache = bridge.run_with_cache(exp.clean_tokens)
    print(f"pair: {CLEAN!r} / {CORRUPT!r}; logit diff clean {clean:.3f}, corrupted {corrupt:.3f}")
    functions = {
        "z": tlp.get_act_patch_attn_head_out_all_pos,
        "resid_pre": tlp.get_act_patch_resid_pre,
        "mlp_out": tlp.get_act_patch_mlp_out,
    }
    for component, function in functions.items():
        t0 = time.perf_counter()
        ours = actpatch.sweep(exp, component, "logit_diff")
        t1 = time.perf_counter()
        with torch.no_grad():
            theirs = function(
                bridge,
                exp.corrupt_tokens,
                clean_cache,
                lambda x: (raw(x) - corrupt) / (clean - corrupt),
            )
        t2 = time.perf_counter()
        diff = float((ours.normalized - theirs).abs().max())
        print(
            f"{component:10s} {tuple(theirs.shape)} cells: ours {t1 - t0:6.2f} s, "
            f"TransformerLens {t2 - t1:7.2f} s ({(t2 - t1) / (t1 - t0):5.1f}x); "
            f"max |normalized diff| {diff:.2e} (raw {diff * abs(clean - corrupt):.2e})"
        )


def behaviour(model: actpatch.LoadedModel, pairs: int) -> None:
    """Clean-run accuracy on IOI and factual pairs, and the resid_pre handoff by role."""
    for data in (ioi(pairs, tokenizer=model.tokenizer), factual(pairs, tokenizer=model.tokenizer)):
        experiments = dataset_experiments(model, data)
        diffs, top1 = [], []
        for exp in experiments:
            with torch.no_grad():
                logits = model.hf_model(exp.clean_tokens).logits[:, -1]
            t, w = exp.target_ids, exp.wrong_ids
            diffs.append(logits.gather(1, t[:, None])[:, 0] - logits.gather(1, w[:, None])[:, 0])
            top1.append(logits.argmax(-1) == t)
        d, ok = torch.cat(diffs), torch.cat(top1).float()
        print(
            f"{data.name}: clean logit diff mean {d.mean():.2f}, min {d.min():.2f}, "
            f"> 0 on {float((d > 0).float().mean()):.1%}, target top-1 on {float(ok.mean()):.1%}"
            f"  ({data.note})"
        )
    data = ioi(pairs, tokenizer=model.tokenizer)
    result = actpatch.sweep_many(dataset_experiments(model, data), "resid_pre", "logit_diff")
    labels = result.position_labels
    s2, end = labels.index("S2"), labels.index("END")
    print("resid_pre by role (denoising, normalized): layer, S2, END")
    for layer, row in enumerate(result.normalized.tolist()):
        print(f"  {layer:2d} {row[s2]:6.2f} {row[end]:6.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--skip-tl", action="store_true")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = actpatch.load_model("smollm2")
    print(f"loaded {model.name} in {time.perf_counter() - t0:.1f} s: {model.notes[0]}")
    print(f"torch threads: {torch.get_num_threads()}")
    if not args.skip_tl:
        exp = actpatch.Experiment(model, CLEAN, CORRUPT, " Mary", " John")
        transformer_lens_sweeps(model, exp)
    behaviour(model, args.pairs)


if __name__ == "__main__":
    main()
