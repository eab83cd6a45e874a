"""`actpatch info`: load a model, show its shape and its next-token guesses on a prompt."""

from __future__ import annotations

import argparse
from typing import Any

from actpatch.cli.common import add_common, load_for
from actpatch.cli.report import report


def add_parser(sub: Any) -> None:
    p = sub.add_parser("info", help="load a model, show its shape and its next-token guesses")
    add_common(p)
    p.add_argument(
        "--prompt", default=None, help="sample prompt to run (default: one the model can do)"
    )


def run(args: argparse.Namespace) -> int:
    import torch

    model = load_for(args)
    prompt = args.prompt if args.prompt is not None else model.sample_prompt
    ids = torch.tensor([model.to_tokens(prompt)], device=model.device)
    with torch.inference_mode():
        probs = model.hf_model(ids).logits[0, -1].softmax(-1)
    values, top = probs.topk(10)
    guesses = [
        {"token": model.tokenizer.decode([int(i)]), "prob": round(float(v), 6)}
        for v, i in zip(values, top, strict=True)
    ]
    described = model.describe()
    payload = {
        **described,
        "prompt": prompt,
        "prompt_tokens": model.to_str_tokens(ids[0]),
        "top_next_tokens": guesses,
    }
    return report(
        args,
        payload,
        file="info.json",
        text=lambda: print_info(described, payload),
        indent=2,
        list_saved=False,
    )


def print_info(d: dict[str, Any], payload: dict[str, Any]) -> None:
    """The model's shape and notes, then the prompt's tokens and the top 10 next tokens."""
    print(f"model      {d['name']}  ({d['source']}, {d['architecture']})")
    print(
        f"shape      {d['n_layers']} layers x {d['n_heads']} heads, d_model {d['d_model']}, "
        f"d_head {d['d_head']}, context {d['n_ctx']}, vocabulary {d['d_vocab']}"
    )
    print(f"parameters {d['n_params']:,}")
    if len(d["devices"]) > 1:
        print(f"devices    {', '.join(d['devices'])} (a device map; the embedding's first)")
    for note in d["notes"]:
        print(f"note       {note}")
    print(f"\nprompt     {payload['prompt']!r}")
    print(f"tokens     {payload['prompt_tokens']}")
    print("next token (top 10):")
    for g in payload["top_next_tokens"]:
        print(f"  {g['token']!r:<16} {g['prob'] * 100:6.2f}%")
