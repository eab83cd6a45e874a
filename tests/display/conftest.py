"""Every kind of result, computed once on the demo model (offline, a few seconds): the results
the notebook display and the tables are tested on."""

from __future__ import annotations

from typing import Any

import pytest

import actpatch
from actpatch.datasets import ioi
from actpatch.demo import SPEC_EXAMPLE
from actpatch.patching import edge_attribution, evaluate_many, path_patch, verify_edges
from actpatch.patching.experiment import dataset_experiments
from actpatch.views import attention_pattern, direct_logit_attribution, logit_lens
from tests.conftest import IOI_CLEAN, IOI_CORRUPT


@pytest.fixture(scope="session")
def demo_exp() -> actpatch.Experiment:
    model = actpatch.load_model("demo")
    return actpatch.Experiment(model, IOI_CLEAN, IOI_CORRUPT, " Mary", " John")


@pytest.fixture(scope="session")
def results(demo_exp: actpatch.Experiment) -> dict[str, Any]:
    """One result of each kind, by name; `paris` is aligned (5 vs 6 tokens: NaN cells) and
    `dataset` is role-indexed over six pairs (with a confidence interval)."""
    exp, model = demo_exp, demo_exp.model
    edges = edge_attribution(exp, "eap", verify=3)
    return {
        "sweep": actpatch.sweep(exp, "z"),
        "resid": actpatch.sweep(exp, "resid_pre"),
        "z_by_pos": actpatch.sweep(exp, "z_by_pos"),
        "paris": actpatch.sweep(actpatch.Experiment(model, *SPEC_EXAMPLE), "resid_pre"),
        "dataset": actpatch.sweep_many(dataset_experiments(model, ioi(6, 1)), "resid_pre"),
        "ablation": actpatch.ablate(exp, "z", "mean"),
        "patch": actpatch.patch(exp, layer=3, head=4),
        "attribution": actpatch.attribute(exp, "resid_pre", method="atp", compare=True),
        "path": path_patch(exp),
        "path_senders": path_patch(exp, senders=["a3.h4", "m0"]),
        "edges": edges,
        "circuit": evaluate_many([exp], ranked=edges.names, sizes=[5, 20, 100]),
        "verify": verify_edges(exp, edges.names[:3]),
        "attention": attention_pattern(exp, 3, [3, 4]),
        "dla": direct_logit_attribution(exp),
        "lens": logit_lens(exp),
    }
