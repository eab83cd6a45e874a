"""Regenerate the demo model's heatmaps in docs/img/ (offline, a few seconds)."""

from pathlib import Path

import actpatch
from actpatch.datasets import ioi
from actpatch.plotting import heatmap

HERE = Path(__file__).parent


def main() -> None:
    model = actpatch.load_model("demo")
    data = ioi(50, seed=0, split="heldout", same_length=True)
    exp = actpatch.Experiment(model, data.clean, data.corrupt, data.target, data.wrong)
    for component, direction in (
        ("z", "denoising"),
        ("z", "noising"),
        ("resid_pre", "denoising"),
        ("attn_out", "denoising"),
    ):
        result = actpatch.sweep(exp, component, "logit_diff", direction)
        path = heatmap(result, HERE / "img" / f"demo-{component}-{direction}.png")
        print(f"{path}: {result.seconds:.2f} s; top {result.top(5)}")


if __name__ == "__main__":
    main()
