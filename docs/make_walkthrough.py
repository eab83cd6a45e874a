"""Write docs/ioi_walkthrough.ipynb: the second specification's IOI workflow on the demo model.

The specification follows Heimersheim & Nanda (2024) and Neel Nanda's Main Demo notebook:
clean and corrupted IOI prompts, the logit difference, residual-stream patching over layers and
positions shown as a heatmap. The walkthrough adds what one does next: a head sweep, the top
head's attention pattern, direct logit attribution and the logit lens. Every result displays
itself (an interactive plotly figure, a PNG fallback) and turns into a pandas table.

The notebook is written without outputs (run it in Jupyter, or `jupyter nbconvert --execute`);
tests/test_walkthrough.py checks that this script still writes the committed file and runs it
in a real kernel. Usage: `python docs/make_walkthrough.py [path]`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
NOTEBOOK = HERE / "ioi_walkthrough.ipynb"

CELLS: list[tuple[str, str]] = [
    (
        "markdown",
        """
# Indirect object identification, patched and looked inside

The workflow of Heimersheim & Nanda, *How to use and interpret activation patching* (2024), as
Neel Nanda's Main Demo runs it on GPT-2 small: indirect object identification (IOI) prompts,
the logit difference between the right and the wrong name, and activation patching of the
residual stream across layers and positions. Then what a researcher does next: patch each head,
look at where the top head attends, how much each head writes directly into the answer (direct
logit attribution) and at which layer the answer appears (the logit lens).

It runs offline on actpatch's bundled **demo model** (`actpatch.load_model("demo")`: GPT-2's
architecture and tokenizer, 4 layers x 8 heads, trained to do IOI). Its circuit is its own:
do not read its heatmaps as claims about GPT-2 small. For GPT-2 small, load `"gpt2"` instead;
every cell below runs unchanged.

Each result shows itself when it is the last line of a cell: an interactive figure (hover for
the numbers; plotly.js comes from the installed `plotly` package, so nothing is fetched) with a
PNG beside it for viewers that run no scripts. `.to_pandas()` gives the numbers as a tidy table.
""",
    ),
    (
        "code",
        """
import actpatch
from actpatch.datasets import ioi
from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens

model = actpatch.load_model("demo")
model.describe()
""",
    ),
    (
        "markdown",
        """
## The task: clean and corrupted prompts

In the clean prompt the subject is repeated and the answer is the *other* name, the indirect
object. The corrupted prompt repeats the indirect object instead, so the answer flips. The
metric is the logit difference, logit(right name) - logit(wrong name), averaged over pairs.
The prompts come from a template the model never saw in training (`split="heldout"`), all of
one token length, so that positions line up across pairs.
""",
    ),
    (
        "code",
        """
data = ioi(20, seed=0, split="heldout", same_length=True)
exp = actpatch.Experiment(model, data.clean, data.corrupt, data.target, data.wrong)
print("clean:    ", data.clean[0], "->", repr(data.target[0]))
print("corrupted:", data.corrupt[0], "->", repr(data.wrong[0]))
""",
    ),
    (
        "markdown",
        """
## Residual stream patching over layers and positions

Denoising: run the corrupted prompts, and at one layer and one position put back the clean
run's residual stream (`resid_pre`, before the block). The heatmap shows how much of the logit
difference each patch restores: 1 is the whole clean behaviour, 0 none of it. This is the
specification's figure.
""",
    ),
    (
        "code",
        """
resid = actpatch.sweep(exp, "resid_pre")
resid
""",
    ),
    (
        "markdown",
        """
The same numbers as a table: one row per cell with its labels, exactly the columns of the CSV
export.
""",
    ),
    (
        "code",
        """
resid.to_pandas().sort_values("normalized", ascending=False).head(8)
""",
    ),
    (
        "markdown",
        """
## Which heads carry it

Patch each head's output (`z`) alone, at every position.
""",
    ),
    (
        "code",
        """
heads = actpatch.sweep(exp, "z")
heads
""",
    ),
    (
        "code",
        """
(layer, head), recovered = heads.top(1)[0]
print(f"top head: L{layer}H{head}, restores {recovered:.0%} of the logit difference")
""",
    ),
    (
        "markdown",
        """
## Where the top head attends

Its attention pattern on the first pair, clean beside corrupted: row *q* is how much query
position *q* reads each earlier position. A name mover attends from the final position to the
name it copies.
""",
    ),
    (
        "code",
        """
pattern = attention_pattern(exp, layer, head)
pattern
""",
    ),
    (
        "markdown",
        """
## What each head writes into the answer: direct logit attribution

Each head's, MLP's and the embeddings' direct contribution to the logit difference, through
the final norm with its scale frozen at the run's own value (TransformerLens's convention).
Patching says a head matters; DLA says whether it matters by writing the answer itself or by
feeding heads downstream. The table under the heatmaps shows how much the frozen norm leaves
unexplained.
""",
    ),
    (
        "code",
        """
dla = direct_logit_attribution(exp)
dla
""",
    ),
    (
        "code",
        """
shares = dla.to_pandas()
shares[shares.part == "head"].sort_values("difference", ascending=False).head(5)
""",
    ),
    (
        "markdown",
        """
## When the answer appears: the logit lens

The residual stream before each block, and after the last, read through the final norm and the
unembedding at the final position: the logit difference, the answer's rank and the top tokens.
The last point is the model's own output.
""",
    ),
    (
        "code",
        """
lens = logit_lens(exp)
lens
""",
    ),
    (
        "code",
        """
lens.to_pandas()[["point", "clean_metric", "corrupt_metric", "clean_rank", "corrupt_rank"]]
""",
    ),
]


def notebook() -> dict[str, Any]:
    """The walkthrough as nbformat 4 JSON, without outputs."""
    cells = []
    for i, (kind, source) in enumerate(CELLS):
        cell: dict[str, Any] = {
            "cell_type": kind,
            "id": f"cell-{i}",
            "metadata": {},
            "source": source.strip("\n"),
        }
        if kind == "code":
            cell.update(execution_count=None, outputs=[])
        cells.append(cell)
    return {
        "cells": cells,
        "metadata": {
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def text() -> str:
    return json.dumps(notebook(), indent=1, ensure_ascii=False) + "\n"


def main() -> None:
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else NOTEBOOK
    path.write_text(text(), encoding="utf-8")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
