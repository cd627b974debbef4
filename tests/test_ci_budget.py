"""bench/ci_budget.py: the variance split of a clips x training seeds x sampling seeds score array."""

import numpy as np
import pytest

from bench.ci_budget import components, half_width

TRUE = {"clip": 0.04, "train": 0.01, "run": 0.002, "clip_train": 0.02, "res": 0.1}


def simulate(rng, C, T, S, v=TRUE):
    sd = {k: x**0.5 for k, x in v.items()}
    return (
        rng.normal(0, sd["clip"], (C, 1, 1))
        + rng.normal(0, sd["train"], (1, T, 1))
        + rng.normal(0, sd["run"], (1, T, S))
        + rng.normal(0, sd["clip_train"], (C, T, 1))
        + rng.normal(0, sd["res"], (C, T, S))
    )


def test_the_anova_recovers_each_part():
    """Averaged over many simulated tables, each estimated part is its true value (method of moments is
    unbiased; the parts are large enough here that clipping at 0 hardly ever acts)."""
    truth = {"clip": 0.04, "train": 0.03, "run": 0.01, "clip_train": 0.05, "res": 0.1}
    rng = np.random.default_rng(0)
    est = [components(simulate(rng, 60, 8, 4, truth)) for _ in range(500)]
    for k, x in truth.items():
        assert np.mean([e[k] for e in est]) == pytest.approx(x, rel=0.05), k


def test_the_half_width_is_that_of_the_mean_over_the_design():
    rng = np.random.default_rng(1)
    means = [simulate(rng, 30, 3, 5).mean() for _ in range(3000)]
    assert 100 * 1.96 * np.std(means) == pytest.approx(half_width(TRUE, 30, 3, 5), rel=0.06)
    # training seeds are their own level: more sampling seeds cannot remove the training seeds' share
    assert half_width(TRUE, 10**6, 3, 10**6) == pytest.approx(
        100 * 1.96 * (TRUE["train"] / 3) ** 0.5, rel=1e-4
    )


def test_without_between_seed_variance_the_parts_are_zero_not_negative():
    y = np.random.default_rng(2).normal(0, 0.3, (50, 3, 5))  # residual only
    est = components(y)
    assert min(est.values()) >= 0 and est["res"] == pytest.approx(0.09, rel=0.15)
