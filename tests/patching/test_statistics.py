"""Per-pair values and bootstrap intervals against TransformerLens's own `reduce="none"` and
`PatchingResult.bootstrap_ci`, and against a bootstrap written here as a plain loop; agreement
(correlations, sign, top cells) worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformer_lens import patching as tlp
from transformer_lens.utilities.statistics import bootstrap_ci, derive_generator

import actpatch
from actpatch.patching.statistics import Bootstrap, agreement, bootstrap_interval, spans_zero
from tests.conftest import IOI_CLEAN


def _pairs(model):
    """Four same-length IOI-like pairs whose answers the tiny model tells apart (any tokens)."""
    places = ["store", "park", "school", "beach"]
    clean = [IOI_CLEAN.replace("store", p) for p in places]
    corrupt = [c.replace(", John gave", ", Mary gave") for c in clean]
    return clean, corrupt


def test_per_pair_and_interval_match_transformer_lens(tiny_model, bridge):
    clean, corrupt = _pairs(tiny_model)
    exp = actpatch.Experiment(tiny_model, clean, corrupt, " Mary", " John")
    ours = actpatch.sweep(exp, "z", "logit_diff", bootstrap=Bootstrap(n_boot=500, seed=3))
    target, wrong = exp.target_ids, exp.wrong_ids

    def logit_diff(logits: torch.Tensor) -> torch.Tensor:  # [batch]: one value per pair
        last = logits[:, -1]
        rows = torch.arange(last.shape[0])
        return last[rows, target] - last[rows, wrong]

    with torch.no_grad():
        _, clean_cache = bridge.run_with_cache(exp.clean_tokens)
        theirs = tlp.get_act_patch_attn_head_out_all_pos(
            bridge, exp.corrupt_tokens, clean_cache, logit_diff, reduce="none"
        )
    # TransformerLens: (layer, head, batch); ours: (pairs, layer, head).
    assert ours.per_pair is not None and ours.ci is not None
    assert (ours.per_pair - theirs.values.permute(2, 0, 1)).abs().max() < 1e-4
    assert (ours.raw - theirs.mean()).abs().max() < 1e-4
    low, high = theirs.bootstrap_ci(n_resamples=500, seed=3)
    assert (ours.ci.raw_low - low).abs().max() < 1e-4
    assert (ours.ci.raw_high - high).abs().max() < 1e-4
    assert ours.ci.low.shape == ours.normalized.shape


def test_normalized_interval_matches_a_plain_bootstrap_loop():
    """Resample pairs with their baselines, normalize each resample by its own means."""
    gen = torch.Generator().manual_seed(0)
    n, cells = 9, 5
    per_pair = torch.randn(n, cells, generator=gen) + torch.arange(cells)
    clean = 3 + torch.randn(n, generator=gen)
    corrupt = -1 + 0.5 * torch.randn(n, generator=gen)
    ours = bootstrap_interval(per_pair, clean, corrupt, Bootstrap(level=0.9, n_boot=300, seed=7))
    assert ours is not None

    # The same resamples as TransformerLens draws them: chunks of 256 from its generator.
    draws_gen = derive_generator(7, "bootstrap", "mean")
    draws = torch.cat(
        [
            torch.randint(0, n, (256, n), generator=draws_gen),
            torch.randint(0, n, (44, n), generator=draws_gen),
        ]
    ).numpy()
    x, c, k = per_pair.double().numpy(), clean.double().numpy(), corrupt.double().numpy()
    stats = np.array([(x[d].mean(0) - k[d].mean()) / (c[d].mean() - k[d].mean()) for d in draws])
    expected_low = np.quantile(stats, 0.05, axis=0)
    expected_high = np.quantile(stats, 0.95, axis=0)
    assert np.abs(ours.low.numpy() - expected_low).max() < 1e-5
    assert np.abs(ours.high.numpy() - expected_high).max() < 1e-5
    # The raw interval is TransformerLens's bootstrap_ci of the values.
    raw_low, raw_high = bootstrap_ci(
        per_pair.T,
        n_resamples=300,
        confidence=0.9,
        generator=derive_generator(7, "bootstrap", "mean"),
    )
    assert (ours.raw_low - raw_low).abs().max() < 1e-5
    assert (ours.raw_high - raw_high).abs().max() < 1e-5


def test_constant_baselines_make_the_normalized_interval_an_affine_image():
    gen = torch.Generator().manual_seed(1)
    per_pair = torch.randn(12, 3, 4, generator=gen)
    clean, corrupt = torch.full((12,), 2.0), torch.full((12,), -2.0)
    ci = bootstrap_interval(per_pair, clean, corrupt)
    assert ci is not None
    assert torch.allclose(ci.low, (ci.raw_low + 2) / 4, atol=1e-6)
    assert torch.allclose(ci.high, (ci.raw_high + 2) / 4, atol=1e-6)
    assert (ci.low <= (per_pair.mean(0) + 2) / 4 + 1e-6).all()
    assert ci.level == 0.95 and ci.n_boot == 1000 and ci.seed == 0


def test_one_pair_has_no_interval_and_nan_cells_stay_nan():
    assert bootstrap_interval(torch.ones(1, 3), torch.ones(1), torch.zeros(1)) is None
    per_pair = torch.randn(5, 4)
    per_pair[:, 2] = float("nan")  # a position that was never patched
    ci = bootstrap_interval(per_pair, torch.ones(5), torch.zeros(5))
    assert ci is not None
    assert ci.low[2].isnan() and not ci.low[[0, 1, 3]].isnan().any()


def test_undefined_normalization_gives_no_normalized_interval():
    ci = bootstrap_interval(torch.randn(4, 2), torch.ones(4), torch.ones(4))
    assert ci is not None and ci.low.isnan().all() and not ci.raw_low.isnan().any()


def test_spans_zero_marks_cells_whose_interval_contains_the_unpatched_value():
    per_pair = torch.stack([torch.tensor([5.0, 0.0]) + 0.1 * torch.randn(2) for _ in range(20)])
    per_pair[:, 1] = torch.linspace(-1, 1, 20)
    ci = bootstrap_interval(per_pair, torch.ones(20), torch.zeros(20))
    assert ci is not None
    assert spans_zero(ci).tolist() == [False, True]


def test_bad_options_teach():
    with pytest.raises(actpatch.InputError, match="between 0 and 1"):
        Bootstrap(level=95)
    with pytest.raises(actpatch.InputError, match="at least 1"):
        Bootstrap(n_boot=0)


def test_agreement_by_hand():
    estimate = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    exact = torch.tensor([[2.0, -1.0], [-0.5, 0.001]])
    a = agreement(estimate, exact, top_k=2)
    assert a["cells"] == 4
    assert a["pearson"] == pytest.approx(
        float(np.corrcoef(estimate.flatten(), exact.flatten())[0, 1])
    )
    # sign: cells with |exact| >= 1% of 2: three of them; (1, 0) disagrees
    assert a["sign_cells"] == 3
    assert a["sign_agreement"] == pytest.approx(2 / 3)
    # top 2 by |exact|: (0, 0), (0, 1); by |estimate|: (0, 1), (0, 0)
    assert a["top_k_overlap"] == 1.0
    assert a["misses"][0]["cell"] in ([0, 0], [0, 1], [1, 0])
