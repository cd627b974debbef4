"""Evaluation metrics: scoring completions and aggregating them into the numbers the tables report.

A *row* is one completion of one clip under one seed and one condition (``ordered`` frames, or
``shuffled`` for the order-only pairs). ``score_rows`` adds to each row, from one Scorer pass:

- ``accuracy`` (0/1, ``rewards.basic.is_correct``), ``format`` / ``format_pa`` (0/1, the strict
  ``<think>..</think><answer>..</answer>`` format, with ``<observation>`` first for ``format_pa``);
- ``subaction`` (R_sub), ``temporal_consistency`` (C_tc) and its parts ``c_seq``, ``c_cross``,
  ``c_bind``: the reward components of the whole reasoning, each in [0, 1];
- ``predicted``: the class the answer names (``(no answer)`` without an answer block, ``(other)``
  when it names no class of the evaluated set); the confusion matrix counts these;
- ``sub_tp`` / ``sub_fp`` / ``sub_fn``, only for clips whose phases are annotated (SynthAct; real
  datasets have no phase ground truth, the fields are None there): the sub-actions detected in the
  reasoning over the whole vocabulary of the dataset's classes (same detector and thresholds as the
  reward, every class's sub-actions as candidates) against the clip's ground-truth sub-actions.

``summarize`` aggregates rows per condition with pandas: every scalar metric is first averaged over
the clips of one seed, then ``mean_std`` over seeds, the one mean ± std of the package (std with
ddof=1, the spread of independent runs; 0 with one seed), and ``fmt_pm`` is its one formatter.
Sub-action precision and recall are micro-averaged within a seed (sum tp / sum (tp + fp),
sum tp / sum (tp + fn)); None when a denominator is 0. Per-class accuracy is the same per seed over
that class's clips; the confusion matrix (``sklearn.metrics.confusion_matrix``) sums counts over
seeds. ``combine_splits`` averages folds (HMDB51 / UCF-101: three official splits) per seed, then
mean and std over seeds.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from reasonact.data.benchmarks import load_classes
from reasonact.data.synthact import CLASSES
from reasonact.library import DATASET_ALIASES, normalize_label
from reasonact.rewards.basic import answer_action, clean_answer
from reasonact.rewards.scorer import REASONING
from reasonact.rewards.subaction import detect

COMPONENTS = (
    "accuracy",
    "format",
    "format_pa",
    "subaction",
    "temporal_consistency",
    "c_seq",
    "c_cross",
    "c_bind",
)
SCALARS = (*COMPONENTS, "new_tokens", "latency_s")
METRICS = (*SCALARS, "subaction_precision", "subaction_recall")  # what summarize reports per seed
COUNTS = ("sub_tp", "sub_fp", "sub_fn")
NO_ANSWER, OTHER = "(no answer)", "(other)"
GT_COLUMNS = ("label", "dataset", "phases", "fps", "num_frames", "duration_s", "num_sampled_frames")


def mean_std(values) -> dict:
    """The one mean ± std over seeds: ``{"mean", "std", "n"}`` of the finite values (None and NaN left
    out), std with ddof=1 (0 for one value). A mapping or Series (seed -> value) also gives its values
    as ``per_seed`` (None where undefined)."""
    per_seed = None
    if isinstance(values, Mapping | pd.Series):
        per_seed = {k: None if pd.isna(v) else float(v) for k, v in values.items()}
        values = per_seed.values()
    v = pd.Series(list(values), dtype=float)
    v = v[np.isfinite(v)]
    stat = {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}
    stat = stat if len(v) else {"mean": None, "std": None, "n": 0}
    return stat if per_seed is None else {**stat, "per_seed": per_seed}


def bootstrap_ci(
    scores: pd.DataFrame, baseline: pd.DataFrame | None = None, n: int = 2000, seed: int = 0
) -> dict | None:
    """Mean and 95% confidence interval of ``scores`` (clips x runs: one column per training/evaluation
    seed, NaN where missing) by a two-way bootstrap: clips and runs are resampled with replacement,
    together, ``n`` times; the interval is the 2.5th-97.5th percentile of the resampled means. With
    ``baseline`` (aligned on clip and run) the interval is that of the *paired* difference: both sides
    use the same resampled clips and runs, so what the two share cancels. None without data."""
    x = scores.to_numpy(float)
    if baseline is not None:
        x = x - baseline.reindex(index=scores.index, columns=scores.columns).to_numpy(float)
    if x.size == 0 or np.isnan(x).all():
        return None
    rng = np.random.default_rng(seed)
    clips = rng.integers(0, x.shape[0], (n, x.shape[0]))
    runs = rng.integers(0, x.shape[1], (n, x.shape[1]))
    with warnings.catch_warnings():  # a resample of only missing values is NaN, and dropped
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.array([np.nanmean(x[np.ix_(c, r)]) for c, r in zip(clips, runs)])
    lo, hi = np.nanpercentile(means, [2.5, 97.5])
    return {
        "mean": float(np.nanmean(x)),
        "ci95": [float(lo), float(hi)],
        "clips": x.shape[0],
        "runs": x.shape[1],
    }


def fmt_pm(metric: dict | None, scale: float = 100.0, digits: int = 1, signed: bool = False) -> str:
    """The one "mean ± std" formatter: ``"67.2 ± 1.3"`` (percent by default; ``signed``: ``"+3.1 ± 2.0"``),
    ``"–"`` when missing."""
    if not metric or metric.get("mean") is None:
        return "–"
    sign = "+" if signed else ""
    return f"{metric['mean'] * scale:{sign}.{digits}f} ± {(metric.get('std') or 0.0) * scale:.{digits}f}"


# ---- scoring ---------------------------------------------------------------------------------------


def subaction_vocabulary(lib, dataset: str | None) -> list[str]:
    """Every sub-action name of the dataset's classes (SynthAct: its 12 classes' library entries)."""

    if dataset == "synthact":
        actions = []
        for c in CLASSES:
            try:
                actions.append(lib.resolve(c, "synthact"))
            except (KeyError, ValueError):
                continue
    else:
        ds = DATASET_ALIASES.get(dataset, dataset)
        actions = [a for a in lib if a.dataset == ds]
    return sorted({s.name for a in actions for s in a.sub_actions})


def dataset_classes(records: list[dict]) -> list[str]:
    """The class names an answer may name: each dataset's official list (SynthAct: its 12 classes),
    plus any label of the records; the confusion matrix has one row per class."""
    names = {r["label"] for r in records}
    for ds in {r.get("dataset") for r in records}:
        if ds == "synthact":
            names |= set(CLASSES)
        elif ds in ("hmdb51", "ucf101", "kinetics400"):
            names |= set(load_classes(ds))
    return sorted(names)


def _wide_detections(scorer, analysis, vocabulary: list[str]) -> set[str]:
    """Sub-actions named in the reasoning, every name of ``vocabulary`` a candidate."""

    det = scorer.detector
    names = [n for n in vocabulary if n in det.rows]
    seg_ids = [
        i for i in scorer._embedded(analysis.parsed) if analysis.parsed.segments[i].region in REASONING
    ]
    if not names or not seg_ids:
        return set()
    emb = det.embed([analysis.parsed.segments[i].embed_text for i in seg_ids])  # cached by the analysis
    return {d.name for d in detect(analysis.parsed.segments, emb, seg_ids, names, det)}


_CLASS_MAPS: dict = {}


def _class_maps(classes, dataset, lib) -> tuple[dict, dict]:
    """(normalised name -> class, library key -> class), cached per library, dataset and class list."""

    key = (id(lib), dataset, tuple(classes))
    if key not in _CLASS_MAPS:
        if len(_CLASS_MAPS) > 16:
            _CLASS_MAPS.clear()
        names, keys = {}, {}
        for c in classes:
            names.setdefault(normalize_label(c), c)
            try:
                keys.setdefault(lib.resolve(c, dataset).key, c)
            except (KeyError, ValueError, TypeError):
                pass
        _CLASS_MAPS[key] = (lib, names, keys)  # the library is kept alive so its id stays unique
    return _CLASS_MAPS[key][1:]


def predicted_label(answer: str | None, label: str, correct: bool, classes, dataset, lib) -> str:
    """The class of ``classes`` the answer names (``label`` when it is correct): its normalised text,
    else the library entry it resolves to (aliases, "jumping" -> jump)."""

    if correct:
        return label
    if answer is None or not str(answer).strip():
        return NO_ANSWER
    names, keys = _class_maps(classes, dataset, lib)
    hit = names.get(normalize_label(clean_answer(answer)))
    return hit or keys.get(answer_action(answer, dataset, lib)) or OTHER


def score_rows(rows: list[dict], records: list[dict], scorer, classes) -> list[dict]:
    """Score ``rows[i]["completion"]`` against ``records[i]`` (its manifest record plus the decoded
    video's ``fps`` / ``num_frames`` / ``duration_s`` where the manifest lacks them); returns the rows
    with the fields of the module docstring added."""
    if not rows:
        return rows
    cols = {k: [r.get(k) for r in records] for k in GT_COLUMNS}
    analyses = scorer.analyze([r["completion"] for r in rows], **cols)
    vocab: dict[str, list[str]] = {}
    for row, rec, a in zip(rows, records, analyses):
        c = a.components
        for k in COMPONENTS:
            row[k] = round(float(c.get(k, 0.0)), 6)
        row["answer"] = a.parsed.answer
        ds, correct = rec.get("dataset"), bool(c.get("accuracy"))
        row["predicted"] = predicted_label(
            a.parsed.answer, rec["label"], correct, classes, ds, scorer.library
        )
        row["sub_tp"] = row["sub_fp"] = row["sub_fn"] = None
        if a.gt.windows_source == "annotation" and a.gt.sub_actions:
            if ds not in vocab:
                vocab[ds] = subaction_vocabulary(scorer.library, ds)
            truth = {n for n in a.gt.sub_actions if n in scorer.detector.rows}
            found = _wide_detections(scorer, a, vocab[ds] + sorted(truth - set(vocab[ds])))
            row["detected"] = sorted(found)
            row["sub_tp"], row["sub_fp"] = len(found & truth), len(found - truth)
            row["sub_fn"] = len(truth - found)
    return rows


# ---- aggregation and tables ----------------------------------------------------------------------


def confusion(rows: list[dict], classes: list[str] | None = None) -> dict:
    """Counts (summed over seeds): rows = true label, columns = predicted (classes, then the extras);
    rows whose true label is not a class are not counted."""
    from sklearn.metrics import confusion_matrix

    labels = sorted(classes or {r["label"] for r in rows})
    cols = labels + sorted({r["predicted"] for r in rows} - set(labels))
    known = [r for r in rows if r["label"] in labels]
    m = np.zeros((len(cols), len(cols)), int)
    if known:
        with warnings.catch_warnings():  # "a single label was found": ``labels`` sets the shape
            warnings.simplefilter("ignore", UserWarning)
            m = confusion_matrix([r["label"] for r in known], [r["predicted"] for r in known], labels=cols)
    return {"labels": labels, "predicted": cols, "matrix": m[: len(labels)].tolist()}


def summarize(rows: list[dict], seeds=None, classes=None) -> dict:
    """Metrics of one condition's rows (see the module docstring)."""
    df = pd.DataFrame(rows).reindex(columns=["seed", "clip", "label", *SCALARS, *COUNTS])
    seeds = sorted(seeds if seeds is not None else set(df["seed"]))
    kept = df[df["seed"].isin(seeds)].astype(dict.fromkeys((*SCALARS, *COUNTS), float))
    by_seed = kept.groupby("seed")
    out = {"seeds": seeds, "clips": df["clip"].nunique(), "completions": len(df)}
    out |= {k: mean_std(v) for k, v in by_seed[list(SCALARS)].mean().items()}
    tp, fp, fn = (by_seed[k].sum() for k in COUNTS)  # rows without ground truth count 0; 0 / 0 -> None
    out["subaction_precision"], out["subaction_recall"] = mean_std(tp / (tp + fp)), mean_std(tp / (tp + fn))
    clips = df.groupby("label")["clip"].nunique()
    acc = kept.groupby(["label", "seed"])["accuracy"].mean().unstack().reindex(clips.index)
    out["per_class"] = {
        label: {**mean_std(acc.loc[label].to_numpy()), "clips": n} for label, n in clips.items()
    }
    out["confusion"] = confusion(rows, classes)
    return out


def combine_splits(summaries: dict[str, dict], condition: str = "ordered") -> dict:
    """Average over splits (folds) per seed (a seed some fold lacks is left out), then mean and std over
    seeds; confusions are summed."""
    parts = [s["conditions"][condition] for s in summaries.values() if condition in s.get("conditions", {})]
    if not parts:
        return {}
    out = {"splits": list(summaries), "seeds": sorted(set().union(*[p["seeds"] for p in parts]))}
    for k in METRICS:
        folds = pd.DataFrame([p[k]["per_seed"] for p in parts], dtype=float)  # one line per fold
        out[k] = mean_std(folds.mean(skipna=False).dropna())
    confs = [p["confusion"] for p in parts]
    m = pd.concat([pd.DataFrame(c["matrix"], c["labels"], c["predicted"]) for c in confs])
    m = m.fillna(0).groupby(level=0).sum()
    labels = sorted(set().union(*[c["labels"] for c in confs]))
    cols = labels + sorted(set(m.columns) - set(labels))
    m = m.reindex(index=labels, columns=cols, fill_value=0).astype(int)
    out["confusion"] = {"labels": labels, "predicted": cols, "matrix": m.to_numpy().tolist()}
    return out


def write_tables(summary: dict, out_dir: str | Path) -> dict[str, str]:
    """``results.csv`` (one row per condition and seed, plus mean and std rows), ``per_class.csv`` and
    ``confusion_<condition>.csv`` from a ``summarize``-style summary with ``conditions``."""
    out, conds = Path(out_dir), summary["conditions"]
    paths = {"csv": out / "results.csv", "per_class": out / "per_class.csv"}
    results, per_class = {}, {}
    for cond, s in conds.items():
        stats = {k: {**s[k]["per_seed"], "mean": s[k]["mean"], "std": s[k]["std"]} for k in METRICS}
        results[cond] = pd.DataFrame(stats, [*s["seeds"], "mean", "std"], dtype=float).assign(
            clips=s["clips"]
        )
        per_class[cond] = pd.DataFrame.from_dict(s["per_class"], orient="index")
        c = s["confusion"]
        paths[f"confusion_{cond}"] = out / f"confusion_{cond}.csv"
        index = pd.Index(c["labels"], name="true \\ predicted")
        pd.DataFrame(c["matrix"], index, c["predicted"]).to_csv(paths[f"confusion_{cond}"])
    results = pd.concat(results, names=["condition", "seed"])[["clips", *METRICS]]
    results.round(6).to_csv(paths["csv"])
    per_class = pd.concat(per_class, names=["condition", "label"])
    per_class = per_class.rename(columns={"mean": "accuracy_mean", "std": "accuracy_std"})
    per_class[["clips", "accuracy_mean", "accuracy_std"]].round(6).to_csv(paths["per_class"])
    return {k: str(v) for k, v in paths.items()}
