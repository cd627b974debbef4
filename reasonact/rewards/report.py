"""Scoring files and showing rewards: what ``reasonact rewards score`` and the inspector call.

- ``score_file(path)``: one JSON line per completion (``completion`` plus the dataset columns) ->
  one dict per line with every component, the total and the detections.
- ``score_table(record, completions)``: a pandas DataFrame, one row per completion.
- ``highlight_html``, ``timeline_svg``, ``bars_html``: the pieces of the inspector as HTML/SVG
  strings (cheap enough to redraw on every keystroke).
- ``report_figure``: the same view as a matplotlib figure, for ``INTERACTIVE = False``.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from reasonact.rewards.functions import MAIN_COMPONENTS, normalize_weights
from reasonact.rewards.gt import COLUMNS
from reasonact.rewards.scorer import Analysis, Scorer, default_scorer
from reasonact.rewards.temporal import _leaf_detections

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")
ROW_COMPONENTS = (*MAIN_COMPONENTS, "format_pa", "perception_subaction", "reasoning_temporal_consistency")


def _columns(records: list[dict]) -> dict:
    keys = [k for k in COLUMNS if any(k in r for r in records)]
    return {k: [r.get(k) for r in records] for k in keys}


def analyze(record: dict, completions: list, scorer: Scorer | None = None) -> list[Analysis]:
    """Analyses of several completions of one clip (``record`` holds the dataset columns)."""
    scorer = scorer or default_scorer()
    return scorer.analyze(list(completions), **_columns([record] * len(completions)))


def result_row(a: Analysis, weights: dict | None = None) -> dict:
    w = normalize_weights(weights)
    row = {k: round(a.components.get(k, 0.0), 4) for k in ROW_COMPONENTS}
    row["total"] = round(sum(wt * a.components.get(k, 0.0) for k, wt in w.items()), 4)
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
    path = Path(input_jsonl)
    records = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(rec, dict) or "completion" not in rec:
                raise ValueError(f"{path}:{lineno}: expected an object with a 'completion' field")
            records.append(rec)
    return score_records(records, weights, scorer)


def score_table(
    record: dict,
    completions,
    scorer: Scorer | None = None,
    weights: dict | None = None,
    names: list[str] | None = None,
):
    """DataFrame: one row per completion (index = ``names`` or 0..n-1), every component + total."""
    import pandas as pd

    completions = list(completions)
    rows = [result_row(a, weights) for a in analyze(record, completions, scorer)]
    df = pd.DataFrame(rows, index=names or list(range(len(rows))))
    df["detected"] = df["detected"].map(", ".join)
    return df


# ---- HTML / SVG pieces for the widget ----------------------------------------------------------


def phase_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _marks(a: Analysis) -> list[tuple[int, int, str, str]]:
    """Non-overlapping (start, end, colour, title) highlights: clause detections first."""
    dets = sorted(
        _leaf_detections(a.detections, a.parsed.segments), key=lambda d: (d.end - d.start, -d.score)
    )
    taken: list[tuple[int, int]] = []
    out = []
    for d in dets:
        if any(d.start < b and a_ < d.end for a_, b in taken):
            continue
        taken.append((d.start, d.end))
        p = a.gt.phase_of.get(d.name, 0)
        out.append(
            (
                d.start,
                d.end,
                phase_colour(p),
                f"{d.name} ({d.phase}) score {d.score:.2f} >= {d.threshold:.2f}",
            )
        )
    return sorted(out)


def highlight_html(a: Analysis) -> str:
    """The completion with each detected sub-action highlighted in its phase's colour (hover: name,
    score, threshold); frame references in bold."""
    text, pos, parts = a.parsed.text, 0, []
    refs = sorted((r.start, r.end) for r in a.parsed.frame_refs)

    def esc(s: str, offset: int) -> str:
        out, p = [], offset
        for r0, r1 in refs:
            if r1 <= p or r0 >= offset + len(s):
                continue
            r0, r1 = max(r0, p), min(r1, offset + len(s))
            out.append(html.escape(text[p:r0]) + f"<b>{html.escape(text[r0:r1])}</b>")
            p = r1
        out.append(html.escape(text[p : offset + len(s)]))
        return "".join(out)

    for s, e, colour, title in _marks(a):
        parts.append(esc(text[pos:s], pos))
        parts.append(
            f"<mark style='background:{colour}55;border-bottom:2px solid {colour}' "
            f"title='{html.escape(title)}'>{esc(text[s:e], s)}</mark>"
        )
        pos = e
    parts.append(esc(text[pos:], pos))
    return (
        "<div style='white-space:pre-wrap;font-family:monospace;line-height:1.5'>" + "".join(parts) + "</div>"
    )


def bars_html(components: dict, weights: dict | None = None) -> str:
    """One horizontal bar per component (0..1), plus the total against its maximum."""
    w = normalize_weights(weights)
    rows = []
    total = sum(wt * components.get(k, 0.0) for k, wt in w.items())
    items = [(k, components.get(k, 0.0), 1.0) for k in MAIN_COMPONENTS] + [
        ("total", total, sum(w.values()) or 1.0)
    ]
    for name, v, vmax in items:
        width = 100.0 * max(0.0, min(1.0, v / vmax))
        wt = f" ×{w[name]:g}" if name in w else ""
        rows.append(
            f"<tr><td style='text-align:left;padding-right:8px'>{name}{wt}</td>"
            f"<td style='width:220px'><div style='background:#ddd;width:200px;height:12px'>"
            f"<div style='background:#4e79a7;width:{width:.0f}%;height:12px'></div></div></td>"
            f"<td style='text-align:right'>{v:.3f}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


def timeline_svg(a: Analysis, width: int = 640) -> str:
    """Ground-truth phase windows (top row), the sampled frames (ticks) and each detected
    sub-action at the frame span the reasoning gives it (bottom rows; grey if no span)."""
    gt = a.gt
    dur = gt.duration or 1.0
    x = lambda t: 10 + (width - 20) * min(max(t / dur, 0.0), 1.0)  # noqa: E731
    dets = _leaf_detections(a.detections, a.parsed.segments)
    names = list(dict.fromkeys(d.name for d in dets))
    h = 60 + 16 * len(names)
    out = [f"<svg width='{width}' height='{h}' style='font:11px sans-serif'>"]
    for i, p in enumerate(gt.phases):
        if p.end > p.start:
            out.append(
                f"<rect x='{x(p.start):.1f}' y='4' width='{x(p.end) - x(p.start):.1f}' height='22' "
                f"fill='{phase_colour(i)}' opacity='0.7'><title>{html.escape(p.name)} "
                f"{p.start:.2f}-{p.end:.2f}s ({gt.windows_source})</title></rect>"
            )
            out.append(f"<text x='{x(p.start) + 3:.1f}' y='19' fill='white'>{html.escape(p.name)}</text>")
    for k in range(gt.n_frames):
        c = (gt.edges[k] + gt.edges[k + 1]) / 2
        out.append(f"<line x1='{x(c):.1f}' x2='{x(c):.1f}' y1='28' y2='36' stroke='#555'/>")
        out.append(f"<text x='{x(c) - 3:.1f}' y='46' font-size='8'>{k + 1}</text>")
    for row, n in enumerate(names):
        y = 54 + 16 * row
        colour = phase_colour(gt.phase_of.get(n, 0))
        spans = [iv for d in dets if d.name == n for f in d.frames if (iv := gt.interval(*f))]
        for t0, t1 in spans or []:
            out.append(
                f"<rect x='{x(t0):.1f}' y='{y}' width='{max(2.0, x(t1) - x(t0)):.1f}' height='12' "
                f"fill='{colour}'/>"
            )
        label = html.escape(n + ("" if spans else " (no frames given)"))
        tx = x(spans[0][1]) + 4 if spans else 12
        out.append(
            f"<text x='{min(tx, width - 150):.1f}' y='{y + 10}' fill='{'#222' if spans else '#999'}'>"
            f"{label}</text>"
        )
    out.append("</svg>")
    return "".join(out)


# ---- matplotlib (non-interactive) ----------------------------------------------------------------


def sampled_frames(record: dict, frames: np.ndarray | None = None, n: int | None = None) -> np.ndarray | None:
    """The N frames the model sees: from ``frames`` (a whole clip), ``record['frames']``, the
    ``video`` file, or a SynthAct re-render (``seed``/``level``/``size`` in the record); else None."""
    from reasonact.rewards.gt import DEFAULT_SAMPLED_FRAMES
    from reasonact.video import sample_indices

    n = n or int(record.get("num_sampled_frames") or DEFAULT_SAMPLED_FRAMES)
    clip = frames if frames is not None else record.get("frames")
    if clip is None and record.get("video") and Path(str(record["video"])).is_file():
        from reasonact.video import read_video

        return read_video(record["video"], num_frames=n, size=None).frames
    if clip is None and str(record.get("dataset")) == "synthact" and "seed" in record:
        try:
            from reasonact.data.synthact import render_clip

            clip, _ = render_clip(
                record["label"],
                int(record["seed"]),
                record.get("level", "medium"),
                int(record.get("size", 112)),
            )
        except Exception:  # noqa: BLE001 - the view works without pictures
            return None
    if clip is None:
        return None
    clip = np.asarray(clip)
    return clip[sample_indices(len(clip), n)]


def report_figure(
    record: dict,
    analyses: list[Analysis],
    names: list[str],
    frames: np.ndarray | None = None,
    weights: dict | None = None,
):
    """Frames strip, phase timeline with each completion's detections, and component bars."""
    import matplotlib.pyplot as plt

    n = len(analyses)
    fig = plt.figure(figsize=(12, 4.5 + 0.45 * n + (1.4 if frames is not None else 0)))
    heights = ([1.4] if frames is not None else []) + [0.6 + 0.45 * n, 2.6]
    gs = fig.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.45)
    k = 0
    if frames is not None:
        ax = fig.add_subplot(gs[k])
        k += 1
        ax.imshow(np.concatenate(list(frames), axis=1))
        w = frames.shape[2]
        ax.set_xticks([w * (i + 0.5) for i in range(len(frames))], [str(i + 1) for i in range(len(frames))])
        ax.set_yticks([])
        ax.set_title(f"{record.get('label')}: the {len(frames)} sampled frames")
    ax = fig.add_subplot(gs[k])
    k += 1
    gt = analyses[0].gt if analyses else None
    if gt is not None:
        for i, p in enumerate(gt.phases):
            if p.end > p.start:
                ax.barh(n, p.end - p.start, left=p.start, color=phase_colour(i), alpha=0.8)
                ax.text(p.start + 0.01 * gt.duration, n, p.name, va="center", color="white", fontsize=8)
        for row, a in enumerate(analyses):
            for d in _leaf_detections(a.detections, a.parsed.segments):
                for f in d.frames:
                    iv = gt.interval(*f)
                    if iv:
                        ax.barh(
                            n - 1 - row,
                            iv[1] - iv[0],
                            left=iv[0],
                            height=0.5,
                            color=phase_colour(gt.phase_of.get(d.name, 0)),
                            alpha=0.5,
                        )
        ax.set_xlim(0, gt.duration)
        ax.set_yticks(range(n + 1), [*reversed(names), f"ground truth ({gt.windows_source})"])
        ax.set_xlabel("seconds (detections at the frame spans the reasoning gives them)")
    ax = fig.add_subplot(gs[k])
    comps = list(MAIN_COMPONENTS)
    width = 0.8 / max(n, 1)
    for i, (a, name) in enumerate(zip(analyses, names)):
        ax.bar(
            np.arange(len(comps)) + i * width, [a.components.get(c, 0.0) for c in comps], width, label=name
        )
    ax.set_xticks(np.arange(len(comps)) + 0.4 - width / 2, comps, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("reward")
    ax.legend(fontsize=7, ncol=min(n, 6), loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.subplots_adjust(left=0.2, right=0.97, top=0.95, bottom=0.12)
    return fig


def detection_precision_recall(
    scorer: Scorer | None = None, labelled=None, negatives=None, dataset: str = "synthact"
) -> dict:
    """Micro precision/recall of sub-action detection on labelled sentences (default: the
    hand-written set in ``examples.py``): each sentence is scored as the reasoning of a clip of
    its action; negatives are checked in every action's context."""
    from reasonact.rewards.examples import LABELLED_SENTENCES, NEGATIVE_SENTENCES

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
