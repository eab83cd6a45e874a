"""Running a method per length group: one progress bar over the dataset, pair-weighted pooling.

The pooled numbers of each `*_many` are tested with its method (test_engine, test_ablation,
test_paths, test_edges, test_circuit); here, what groups.py adds itself, against counts and
averages worked out by hand.
"""

from __future__ import annotations

import pytest
import torch

import actpatch
from actpatch.patching import groups
from actpatch.patching.paths import path_patch, path_patch_many
from tests.conftest import IOI_CLEAN, IOI_CORRUPT
from tests.patching.test_engine import _pick_answers

SHORT = ("Mary met John, and John thanked", "Mary met John, and Mary thanked")


@pytest.fixture(scope="module")
def two_groups(tiny_model):
    """Two length groups: two pairs of the IOI prompt, one pair of a shorter template."""
    answers = _pick_answers(tiny_model, IOI_CLEAN, IOI_CORRUPT)
    return [
        actpatch.Experiment(tiny_model, [IOI_CLEAN] * 2, [IOI_CORRUPT] * 2, *answers),
        actpatch.Experiment(tiny_model, *SHORT, *answers),
    ]


def test_pair_weights_and_pool_by_hand(two_groups):
    assert groups.pair_weights(two_groups) == [2 / 3, 1 / 3]
    # three pairs whose values are 3, 3 and 6: their mean is 4
    assert groups.pool([3.0, 6.0], [2 / 3, 1 / 3]) == pytest.approx(4.0)
    cells = groups.pool([torch.tensor([3.0, 0.0]), torch.tensor([6.0, 3.0])], [2 / 3, 1 / 3])
    assert torch.allclose(cells, torch.tensor([4.0, 1.0]))


def test_progress_is_one_bar_over_every_group(tiny_model, two_groups):
    # path patching every head (3 layers x 4 heads) reports (done, 12) per group; over two
    # groups that is one bar to 24, never going back
    n_heads = tiny_model.n_layers * tiny_model.n_heads
    seen: list[tuple[int, int]] = []
    result = path_patch_many(two_groups, progress=lambda d, t: seen.append((d, t)))
    assert result.n_pairs == 3 and result.clean == pytest.approx(
        (2 * path_patch(two_groups[0]).clean + path_patch(two_groups[1]).clean) / 3
    )
    assert seen[0] == (0, 2 * n_heads) and seen[-1] == (2 * n_heads, 2 * n_heads)
    assert all(t == 2 * n_heads for _, t in seen)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert (n_heads, 2 * n_heads) in seen  # the first group done, the second not begun


def test_one_group_is_the_method_itself(two_groups):
    seen_many: list[tuple[int, int]] = []
    seen_one: list[tuple[int, int]] = []
    many = path_patch_many(two_groups[:1], progress=lambda d, t: seen_many.append((d, t)))
    one = path_patch(two_groups[0], progress=lambda d, t: seen_one.append((d, t)))
    assert seen_many == seen_one
    assert torch.equal(many.raw, one.raw) and many.warnings == one.warnings


def _many_functions():
    from actpatch.patching.circuit import evaluate_many
    from actpatch.patching.edges import edge_attribution_many

    return {
        "sweep_many": lambda exps: actpatch.sweep_many(exps, "z"),
        "ablate_many": lambda exps: actpatch.ablate_many(exps, "z", "mean"),
        "path_patch_many": lambda exps: path_patch_many(exps),
        "edge_attribution_many": lambda exps: edge_attribution_many(exps, "eap"),
        "evaluate_many": lambda exps: evaluate_many(exps, nodes=["m0"]),
    }


@pytest.mark.parametrize("name", list(_many_functions()))
def test_many_functions_teach_what_a_list_of_experiments_is(name, tiny_model, two_groups, tmp_path):
    from tests.conftest import make_random_gpt2

    run = _many_functions()[name]
    single = name.removesuffix("_many")
    with pytest.raises(actpatch.InputError, match=rf"one Experiment: call {single}\(exp"):
        run(two_groups[0])  # the method's own experiment, not in a list
    with pytest.raises(actpatch.InputError, match="no experiments"):
        run([])
    with pytest.raises(actpatch.InputError, match=r"Item 1 .* is a str, not an Experiment"):
        run([two_groups[0], "When Mary and John went"])
    # a model of another shape (2 layers, not 3): its groups cannot be pooled with the first's
    other = actpatch.load_model(str(make_random_gpt2(tmp_path / "other", n_layer=2)))
    on_other = actpatch.Experiment(other, *SHORT, " Mary", " John")
    with pytest.raises(actpatch.InputError, match=r"Experiment 1 runs on .*2 layers"):
        run([two_groups[0], on_other])
