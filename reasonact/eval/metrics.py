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

``summarize`` aggregates rows per condition. Every scalar metric is first averaged over the clips of
one seed, then reported as mean and std over seeds (std with ddof=1, the spread of independent runs;
0 with one seed). Sub-action precision and recall are micro-averaged within a seed
(sum tp / sum (tp + fp), sum tp / sum (tp + fn)); None when a denominator is 0. Per-class accuracy
is the same per seed over that class's clips; the confusion matrix sums counts over seeds.
``combine_splits`` averages folds (HMDB51 / UCF-101: three official splits) per seed, then
mean and std over seeds.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from reasonact.data.benchmarks import load_classes
from reasonact.data.synthact import CLASSES
from reasonact.library import DATASET_ALIASES, normalize_label
from reasonact.rewards.basic import answer_action, clean_answer
from reasonact.rewards.scorer import REASONING
from reasonact.rewards.subaction import detect

SCALARS = ("accuracy", "format", "format_pa", "subaction", "temporal_consistency", "c_seq", "c_cross", "c_bind",
           "new_tokens", "latency_s")  # fmt: skip
NO_ANSWER, OTHER = "(no answer)", "(other)"
GT_COLUMNS = ("label", "dataset", "phases", "fps", "num_frames", "duration_s", "num_sampled_frames")


def mean_std(values) -> dict:
    """{"mean", "std", "n"} of the finite values (None ignored); std with ddof=1 (0 for one value)."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(np.mean(v)), "std": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0, "n": len(v)}


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
        for k in ("accuracy", "format", "format_pa", "subaction", "temporal_consistency", "c_seq", "c_cross",
                  "c_bind"):  # fmt: skip
            row[k] = round(float(c.get(k, 0.0)), 6)
        row["answer"] = a.parsed.answer
        row["predicted"] = predicted_label(a.parsed.answer, rec["label"], bool(c.get("accuracy")), classes,
                                           rec.get("dataset"), scorer.library)  # fmt: skip
        row["sub_tp"] = row["sub_fp"] = row["sub_fn"] = None
        if a.gt.windows_source == "annotation" and a.gt.sub_actions:
            ds = rec.get("dataset")
            if ds not in vocab:
                vocab[ds] = subaction_vocabulary(scorer.library, ds)
            truth = {n for n in a.gt.sub_actions if n in scorer.detector.rows}
            found = _wide_detections(scorer, a, vocab[ds] + sorted(truth - set(vocab[ds])))
            row["detected"] = sorted(found)
            row["sub_tp"], row["sub_fp"] = len(found & truth), len(found - truth)
            row["sub_fn"] = len(truth - found)
    return rows


# ---- aggregation -----------------------------------------------------------------------------------


def _by(rows, key):
    out = defaultdict(list)
    for r in rows:
        out[r[key]].append(r)
    return out


def precision_recall(rows: list[dict]) -> tuple[float | None, float | None]:
    """Micro precision and recall of sub-action detection over rows with ground truth."""
    known = [r for r in rows if r.get("sub_tp") is not None]
    tp = sum(r["sub_tp"] for r in known)
    fp = sum(r["sub_fp"] for r in known)
    fn = sum(r["sub_fn"] for r in known)
    return (tp / (tp + fp) if tp + fp else None), (tp / (tp + fn) if tp + fn else None)


def confusion(rows: list[dict], classes: list[str] | None = None) -> dict:
    """Counts (summed over seeds): rows = true label, columns = predicted (classes, then the extras)."""
    classes = sorted(classes or {r["label"] for r in rows})
    extra = sorted({r["predicted"] for r in rows} - set(classes))
    cols = classes + extra
    m = np.zeros((len(classes), len(cols)), int)
    for r in rows:
        if r["label"] in classes:
            m[classes.index(r["label"]), cols.index(r["predicted"])] += 1
    return {"labels": classes, "predicted": cols, "matrix": m.tolist()}


def summarize(rows: list[dict], seeds=None, classes=None) -> dict:
    """Metrics of one condition's rows (see the module docstring)."""
    seeds = sorted(seeds if seeds is not None else {r["seed"] for r in rows})
    per_seed = _by(rows, "seed")
    out = {"seeds": seeds, "clips": len({r["clip"] for r in rows}), "completions": len(rows)}
    for k in SCALARS:
        vals = {s: float(np.mean([r[k] for r in per_seed[s]])) for s in seeds if per_seed.get(s)}
        out[k] = {**mean_std(vals.values()), "per_seed": vals}
    pr = {s: precision_recall(per_seed[s]) for s in seeds if per_seed.get(s)}
    for i, k in enumerate(("subaction_precision", "subaction_recall")):
        vals = {s: v[i] for s, v in pr.items()}
        out[k] = {**mean_std(vals.values()), "per_seed": vals}
    out["per_class"] = {}
    for label, lrows in sorted(_by(rows, "label").items()):
        by_seed = _by(lrows, "seed")
        vals = [np.mean([r["accuracy"] for r in by_seed[s]]) for s in seeds if by_seed.get(s)]
        out["per_class"][label] = {**mean_std(vals), "clips": len({r["clip"] for r in lrows})}
    out["confusion"] = confusion(rows, classes)
    return out


def combine_splits(summaries: dict[str, dict], condition: str = "ordered") -> dict:
    """Average over splits (folds) per seed, then mean and std over seeds; confusions are summed."""
    parts = [s["conditions"][condition] for s in summaries.values() if condition in s.get("conditions", {})]
    if not parts:
        return {}
    seeds = sorted(set().union(*[p["seeds"] for p in parts]))
    out = {"splits": list(summaries), "seeds": seeds}
    for k in (*SCALARS, "subaction_precision", "subaction_recall"):
        vals = {}
        for s in seeds:
            fold_vals = [p[k]["per_seed"].get(s) for p in parts]
            if all(v is not None for v in fold_vals):
                vals[s] = float(np.mean(fold_vals))
        out[k] = {**mean_std(vals.values()), "per_seed": vals}
    labels = sorted(set().union(*[p["confusion"]["labels"] for p in parts]))
    cols = labels + sorted(set().union(*[p["confusion"]["predicted"] for p in parts]) - set(labels))
    m = np.zeros((len(labels), len(cols)), int)
    for p in parts:
        c = p["confusion"]
        for i, t in enumerate(c["labels"]):
            for j, q in enumerate(c["predicted"]):
                m[labels.index(t), cols.index(q)] += c["matrix"][i][j]
    out["confusion"] = {"labels": labels, "predicted": cols, "matrix": m.tolist()}
    return out


# ---- tables ----------------------------------------------------------------------------------------


def fmt_pm(metric: dict, scale: float = 100.0, digits: int = 1) -> str:
    """ "67.2 ± 1.3" (percent by default); "-" when missing."""
    if not metric or metric.get("mean") is None:
        return "-"
    return f"{metric['mean'] * scale:.{digits}f} ± {metric['std'] * scale:.{digits}f}"


def write_tables(summary: dict, out_dir: str | Path) -> dict[str, str]:
    """``results.csv`` (one row per condition and seed, plus mean and std rows), ``per_class.csv`` and
    ``confusion_<condition>.csv`` from a ``summarize``-style summary with ``conditions``."""
    out = Path(out_dir)
    paths = {}
    metrics = [*SCALARS, "subaction_precision", "subaction_recall"]
    with (out / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", "seed", "clips", *metrics])
        for cond, s in summary["conditions"].items():
            for seed in s["seeds"]:
                w.writerow([cond, seed, s["clips"], *[_num(s[k]["per_seed"].get(seed)) for k in metrics]])
            for stat in ("mean", "std"):
                w.writerow([cond, stat, s["clips"], *[_num(s[k][stat]) for k in metrics]])
    paths["csv"] = str(out / "results.csv")
    with (out / "per_class.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["condition", "label", "clips", "accuracy_mean", "accuracy_std"])
        for cond, s in summary["conditions"].items():
            for label, v in s["per_class"].items():
                w.writerow([cond, label, v["clips"], _num(v["mean"]), _num(v["std"])])
    paths["per_class"] = str(out / "per_class.csv")
    for cond, s in summary["conditions"].items():
        c = s["confusion"]
        path = out / f"confusion_{cond}.csv"
        with path.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true \\ predicted", *c["predicted"]])
            for label, counts in zip(c["labels"], c["matrix"]):
                w.writerow([label, *counts])
        paths[f"confusion_{cond}"] = str(path)
    return paths


def _num(x):
    return "" if x is None else round(float(x), 6)
