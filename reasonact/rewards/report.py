"""Scoring completions in bulk: what ``reasonact rewards score`` and the inspector call.

- ``score_file(path)``: one JSON line per completion (``completion`` plus the dataset columns) ->
  one dict per line with every component, the total and the detections.
- ``analyze(record, completions)``: the scorer's analyses of several completions of one clip.
- ``detection_precision_recall``: how well the detector finds sub-actions in labelled sentences.

The inspector that shows these scores to a person is ``reasonact/viz/inspector.py``.
"""

from __future__ import annotations

from pathlib import Path

from reasonact.paths import read_jsonl
from reasonact.rewards.examples import LABELLED_SENTENCES, NEGATIVE_SENTENCES
from reasonact.rewards.functions import MAIN_COMPONENTS, normalize_weights, weighted_total
from reasonact.rewards.gt import COLUMNS
from reasonact.rewards.scorer import Analysis, Scorer, default_scorer

ROW_COMPONENTS = (*MAIN_COMPONENTS, "format_pa", "perception_subaction", "reasoning_temporal_consistency")


def _columns(records: list[dict]) -> dict:
    keys = [k for k in COLUMNS if any(k in r for r in records)]
    return {k: [r.get(k) for r in records] for k in keys}


def analyze(record: dict, completions: list, scorer: Scorer | None = None) -> list[Analysis]:
    """Analyses of several completions of one clip (``record`` holds the dataset columns)."""
    scorer = scorer or default_scorer()
    return scorer.analyze(list(completions), **_columns([record] * len(completions)))


def result_row(a: Analysis, weights: dict | None = None) -> dict:
    row = {k: round(a.components.get(k, 0.0), 4) for k in ROW_COMPONENTS}
    row["total"] = round(weighted_total(a.components, weights), 4)
    row["answer"] = a.parsed.answer
    row["detected"] = sorted(
        {d.name for d in a.detections}, key=lambda n: min(d.start for d in a.detections if d.name == n)
    )
    if "error" in a.details:
        row["error"] = a.details["error"]
    return row


def score_records(
    records: list[dict], weights: dict | None = None, scorer: Scorer | None = None
) -> list[dict]:
    """Score records that each hold a ``completion`` and the dataset columns (one batch pass)."""
    scorer = scorer or default_scorer()
    normalize_weights(weights)  # fail on a bad weight before any work
    comps = [r.get("completion", "") for r in records]
    analyses = scorer.analyze(comps, **_columns(records))
    return [
        {"index": i, "label": r.get("label"), **result_row(a, weights)}
        for i, (r, a) in enumerate(zip(records, analyses))
    ]


def score_file(
    input_jsonl: str | Path, weights: dict | None = None, scorer: Scorer | None = None
) -> list[dict]:
    """Score a JSON-lines file: each line ``{"completion": ..., "label": ..., "dataset": ...,
    "phases": ..., ...}``. Raises ValueError naming the line for invalid JSON or a missing
    ``completion``; the completion text itself can be anything."""

    def check(rec, where):
        if not isinstance(rec, dict) or "completion" not in rec:
            raise ValueError(f"{where}: expected an object with a 'completion' field")

    records = read_jsonl(input_jsonl, "completions file", check=check)
    return score_records(records, weights, scorer)


def detection_precision_recall(
    scorer: Scorer | None = None, labelled=None, negatives=None, dataset: str = "synthact"
) -> dict:
    """Micro precision/recall of sub-action detection on labelled sentences (default: the
    hand-written set in ``examples.py``): each sentence is scored as the reasoning of a clip of
    its action; negatives are checked in every action's context."""

    labelled = LABELLED_SENTENCES if labelled is None else labelled
    negatives = NEGATIVE_SENTENCES if negatives is None else negatives
    actions = sorted({a for a, _, _ in labelled})
    items = [(a, s, set(n)) for a, s, n in labelled] + [(a, s, set()) for s in negatives for a in actions]
    comps = [f"<think>{s}</think><answer>-</answer>" for _, s, _ in items]
    analyses = (scorer or default_scorer()).analyze(
        comps, label=[a for a, _, _ in items], dataset=[dataset] * len(items)
    )
    tp = fp = fn = 0
    errors = []
    for (a, s, truth), an in zip(items, analyses):
        got = {d.name for d in an.detections}
        tp, fp, fn = tp + len(got & truth), fp + len(got - truth), fn + len(truth - got)
        if got != truth:
            errors.append({"action": a, "sentence": s, "expected": sorted(truth), "detected": sorted(got)})
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {
        "precision": round(p, 3),
        "recall": round(r, 3),
        "f1": round(2 * p * r / max(p + r, 1e-9), 3),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "sentences": len(labelled),
        "negative_checks": len(items) - len(labelled),
        "errors": errors,
    }
