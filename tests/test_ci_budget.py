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


def test_cube_reads_a_rows_completions_and_checks_them_against_results_json(tmp_path):
    """clips x training seeds x sampling seeds from ``<root>/_evals/<key>``; a per-run mean that disagrees with
    ``results.json`` is an error naming the row."""
    import json

    from bench.ci_budget import cube

    acc = {(t, s, c): float((t + s + c) % 2) for t in (1, 2) for s in (1, 11) for c in range(3)}
    for t in (1, 2):
        folder = tmp_path / "_evals" / f"eval-{t}" / "synthact_test"
        folder.mkdir(parents=True)
        lines = [{"clip": f"c{c}", "seed": s, "condition": cond, "label": "x", "accuracy": acc[t, s, c]}
                 for s in (1, 11) for c in range(3) for cond in ("ordered", "shuffled")]  # fmt: skip
        (folder / "completions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    per_seed = {f"{t}/{s}": np.mean([acc[t, s, c] for c in range(3)]) for t in (1, 2) for s in (1, 11)}
    row = {"name": "r", "train_seeds": [1, 2], "keys": [["fre-a", "eval-1"], ["fre-b", "eval-2"]],
           "accuracy": {"per_seed": per_seed}}  # fmt: skip
    y = cube(row, tmp_path)
    assert y.shape == (3, 2, 2) and y[2, 1, 0] == acc[2, 1, 2] and y[0, 0, 1] == acc[1, 11, 0]
    row["accuracy"]["per_seed"]["2/11"] += 0.1
    with pytest.raises(SystemExit, match="r: per-run means"):
        cube(row, tmp_path)
