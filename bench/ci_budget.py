"""How many training seeds, sampling seeds and clips give a table row a +-3-point interval? Prints JSON.

    python bench/ci_budget.py --table runs/experiments/table2_room_tiny [--target 3] [--rows full_reward ...]

Reads a finished ``reasonact experiments`` run (its ``results.json`` and the completions of every evaluation
under the run's root) and, for each row's accuracy and each row's paired difference with the row it is
compared with, splits the variance of a 0/1 score y[clip, training seed, sampling seed] into its parts with a
balanced random-effects ANOVA (method of moments, negative estimates set to 0):

    y = mu + clip + train + run(train, sampling seed) + clip x train + residual

The variance of the row's mean for C clips, T training seeds and S sampling seeds is then

    v_clip / C + v_train / T + v_run / (T S) + v_clip_train / (C T) + v_res / (C T S)

and the interval's half-width about 1.96 times its square root. Per row, ``cheapest`` is the cheapest point
of a grid of (T, S, C) that reaches ``--target`` points; ``pooled`` averages the parts over the rows (the
accuracies, and the paired differences) and gives the whole grid and its cheapest point. Cost, in measured
seconds: per training seed the row's whole chain of stages (``seconds.train`` of ``results.json`` / T) plus
its evaluation time, which grows with S x C. The parts come from the run's own seeds: with 3 training seeds,
v_train rests on 2 degrees of freedom, so the projected T is a rough guide, not a guarantee.
``check`` compares the formula's half-width at the run's own sizes with the two-way bootstrap interval the
table reports (which resamples the T x S runs as if independent, so the two need not agree exactly).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from reasonact.eval.tables import clip_scores


def cube(row: dict, root: Path) -> np.ndarray:
    """The row's scores as clips x training seeds x sampling seeds, read by the table's own ``clip_scores``
    (its runs are in training-seed order; each evaluation is ``<root>/_evals/<key>``)."""
    runs = [{"train_seed": t, "eval": {"metrics": {"eval_dir": str(root / "_evals" / keys[-1])}}}
            for t, keys in zip(row["train_seeds"], row["keys"])]  # fmt: skip
    df = clip_scores(runs)
    want = pd.Series(row["accuracy"]["per_seed"], dtype=float)
    if df.empty or df.isna().any().any() or set(df.columns) != set(want.index):
        raise SystemExit(
            f"{row['name']}: the completions under {root / '_evals'} do not cover its runs {list(want.index)}"
        )
    got = df.mean()  # the results.json per-run means must be these completions' means
    if not np.allclose(got[want.index], want, atol=1e-9):
        raise SystemExit(
            f"{row['name']}: per-run means {got.round(4).to_dict()}, results.json says {want.round(4).to_dict()}"
        )
    seeds = sorted({int(c.split("/")[1]) for c in df.columns})
    return np.array([[df[f"{t}/{s}"].to_numpy() for s in seeds] for t in row["train_seeds"]]).transpose(
        2, 0, 1
    )


def components(y: np.ndarray) -> dict[str, float]:
    """Variance parts of a balanced clips x T x S array (sampling seeds nested in training seeds)."""
    C, T, S = y.shape
    m = y.mean()
    mc, mt, mts, mct = y.mean((1, 2)), y.mean((0, 2)), y.mean(0), y.mean(2)
    ms = {
        "clip": T * S * ((mc - m) ** 2).sum() / (C - 1),
        "train": C * S * ((mt - m) ** 2).sum() / (T - 1),
        "run": C * ((mts - mt[:, None]) ** 2).sum() / (T * (S - 1)),
        "clip_train": S * ((mct - mc[:, None] - mt[None, :] + m) ** 2).sum() / ((C - 1) * (T - 1)),
    }
    res = y - mct[:, :, None] - mts[None] + mt[None, :, None]
    ms["res"] = (res**2).sum() / ((C - 1) * T * (S - 1))
    v = {
        "res": ms["res"],
        "run": (ms["run"] - ms["res"]) / C,
        "clip_train": (ms["clip_train"] - ms["res"]) / S,
        "clip": (ms["clip"] - ms["clip_train"]) / (T * S),
        "train": (ms["train"] - ms["run"] - ms["clip_train"] + ms["res"]) / (C * S),
    }
    return {k: max(float(x), 0.0) for k, x in v.items()}


def half_width(v: dict, C: int, T: int, S: int) -> float:
    """1.96 x the standard error of the mean over C clips, T training seeds, S sampling seeds (in points)."""
    var = (
        v["clip"] / C
        + v["train"] / T
        + v["run"] / (T * S)
        + v["clip_train"] / (C * T)
        + v["res"] / (C * T * S)
    )
    return 100 * 1.96 * var**0.5


def projection(v: dict, sizes, target: float, train_s: float, eval_s_per_clip_seed: float) -> dict:
    grid = []
    for T, S, C in itertools.product(*sizes):
        cost = T * (train_s + eval_s_per_clip_seed * C * S)
        grid.append(
            {"T": T, "S": S, "C": C, "half_width": round(half_width(v, C, T, S), 2), "seconds": round(cost)}
        )
    ok = [g for g in grid if g["half_width"] <= target]
    return {"grid": grid, "cheapest": min(ok, key=lambda g: g["seconds"]) if ok else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--table", required=True, help="the --out folder of a `reasonact experiments` run")
    ap.add_argument("--rows", nargs="*", help="rows to analyse (default: all)")
    ap.add_argument("--target", type=float, default=3.0, help="interval half-width to reach, in points")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[3, 5, 8, 12, 20])
    ap.add_argument("--sampling-seeds", type=int, nargs="+", default=[1, 3, 5])
    ap.add_argument("--clips", type=int, nargs="+", default=[84, 168, 336])
    a = ap.parse_args(argv)
    path = Path(a.table) / "results.json"
    if not path.is_file():
        sys.exit(f"{path}: not found (give the --out folder of a finished `reasonact experiments` run)")
    table = json.loads(path.read_text())
    root = Path(table["meta"]["root"])
    rows = {r["name"]: r for r in table["rows"]}
    unknown = set(a.rows or ()) - set(rows)
    if unknown:
        sys.exit(f"{path}: no row {sorted(unknown)}; the table has {sorted(rows)}")
    sizes = (a.train_seeds, a.sampling_seeds, a.clips)
    out = {"table": table["name"], "target": a.target, "rows": {}, "pooled": {}}
    pool = {"accuracy": [], "difference": []}  # (components, train s per seed, eval s per clip and seed)
    for name in a.rows or rows:
        row = rows[name]
        y = cube(row, root)
        C, T, S = y.shape
        train_s = row["seconds"]["train"] / T  # the whole chain of one training seed (FRE, V-SFT, ...)
        eval_s = row["seconds"]["eval"] / (T * C * S)
        entry = {"clips": C, "train_seeds": T, "sampling_seeds": S, "train_s_per_seed": round(train_s, 1)}
        targets = [("accuracy", "accuracy", y, row["accuracy"]["ci95"])]
        if row.get("vs"):
            other = row["vs"]["row"]
            targets.append(
                ("difference", f"delta_vs_{other}", y - cube(rows[other], root), row["vs"]["delta"]["ci95"])
            )
        for kind, what, arr, ci in targets:
            v = components(arr)
            pool[kind].append((v, train_s, eval_s))
            entry[what] = {
                "components": {k: round(x, 6) for k, x in v.items()},
                "check": {
                    "formula": round(half_width(v, C, T, S), 2),
                    "bootstrap": round(50 * (ci[1] - ci[0]), 2) if ci else None,
                },
                "cheapest": projection(v, sizes, a.target, train_s, eval_s)["cheapest"],
            }
        out["rows"][name] = entry
    for kind, items in pool.items():  # every row's estimate rests on few seeds: their mean is steadier
        if items:
            v = {k: float(np.mean([it[0][k] for it in items])) for k in items[0][0]}
            train_s, eval_s = (float(np.mean([it[i] for it in items])) for i in (1, 2))
            out["pooled"][kind] = {"rows": len(items), "components": {k: round(x, 6) for k, x in v.items()}}
            out["pooled"][kind] |= projection(v, sizes, a.target, train_s, eval_s)
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
