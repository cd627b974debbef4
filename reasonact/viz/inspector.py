"""The reward inspector: a clip's frames, its phase timeline and a completion's reasoning, scored.

One view, two renderings. In JupyterLab (``INTERACTIVE = True``) ``reward_inspector`` is an ipywidgets
view whose scores are recomputed on every keystroke; in batch runs ``reward_report`` gives the same
content as a table and a saved figure. Both draw the timeline of ``viz/timeline.py``, where frame k of
the strip stands exactly over tick k.

The HTML pieces carry CSS classes (``ra-inspector``, ``ra-total``, ``ra-timeline``, ``ra-reasoning``,
``ra-detections``, ``ra-editor``, ``ra-scores``, ``ra-legend``) that the browser test reads.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from reasonact.data.synthact import render_clip
from reasonact.rewards import report
from reasonact.rewards.functions import normalize_weights, weighted_total
from reasonact.rewards.gt import DEFAULT_SAMPLED_FRAMES
from reasonact.rewards.scorer import Analysis, default_scorer
from reasonact.rewards.temporal import leaf_detections
from reasonact.video import read_video, sample_indices
from reasonact.viz.timeline import phase_colour, timeline_figure, timeline_svg

# (key, label, what it measures, range, process-aware only). The order is the table's.
# fmt: off
LEGEND = (
    ("format", "format", "the text is <think>…</think><answer>…</answer>", "0 or 1", False),
    ("accuracy", "accuracy", "the answer names the clip's action", "0 or 1", False),
    ("subaction", "R_sub", "the clip's sub-actions named (coverage) and in order (Kendall's τ)", "0–1", False),
    ("c_seq", "C_seq", "the steps are described in their true temporal order", "0–1", False),
    ("c_cross", "C_cross", "one subject and one action throughout, no contradictions", "0–1", False),
    ("c_bind", "C_bind", "frame ranges given to each phase overlap its true window (IoU)", "0–1", False),
    ("temporal_consistency", "C_tc", "temporal consistency: the mean of C_seq, C_cross, C_bind", "0–1", False),
    ("format_pa", "format (PA)", "<observation>…</observation> first, then think and answer", "0 or 1", True),
    ("perception_subaction", "perception", "R_sub of the observation block alone: what was seen", "0–1", True),
    ("reasoning_temporal_consistency", "reasoning C_tc", "C_tc of the think and answer blocks", "0–1", True),
)
# fmt: on
PA_NOTE = (
    "Process-aware components (VideoP2R: perception on the observation, reasoning on the rest) appear "
    "when the text has an <observation> block."
)


def is_process_aware(a: Analysis) -> bool:
    return "observation" in a.parsed.blocks


def _shown(analyses: list[Analysis]) -> list[tuple]:
    pa = any(is_process_aware(a) for a in analyses)
    return [row for row in LEGEND if pa or not row[4]]


# ---- the table (both modes) ----------------------------------------------------------------------


def _weight(key: str, w: dict) -> str:
    return f"×{w[key]:g}" if key in w else "in C_tc" if key.startswith("c_") else "—"


def score_table(analyses: list[Analysis], names: list[str], weights: dict | None = None):
    """Components as rows (process-aware ones only when a text is process-aware), one column per
    completion, then the legend: the component's weight in the total, its range, what it measures."""
    import pandas as pd

    w = normalize_weights(weights)
    rows = {
        label: [round(a.components.get(key, 0.0), 3) for a in analyses] + [_weight(key, w), rng, what]
        for key, label, what, rng, _ in _shown(analyses)
    }
    rows["total"] = [round(weighted_total(a.components, weights), 3) for a in analyses] + [
        "",
        f"0–{sum(w.values()):g}",
        "Σ weight × component (before the shuffled-frame bonus)",
    ]
    return pd.DataFrame.from_dict(
        rows, orient="index", columns=[*names, "weight", "range", "what it measures"]
    )


def legend_html(analyses: list[Analysis], weights: dict | None = None) -> str:
    w = normalize_weights(weights)
    rows = "".join(
        f"<tr><td><b>{html.escape(label)}</b></td><td>{html.escape(what)}</td><td>{rng}</td>"
        f"<td>{_weight(key, w)}</td></tr>"
        for key, label, what, rng, _ in _shown(analyses)
    )
    note = (
        ""
        if any(map(is_process_aware, analyses))
        else f"<p style='font-size:12px'><i>{html.escape(PA_NOTE)}</i></p>"
    )
    return (
        "<table class='ra-legend-table' style='font-size:12px;width:100%'>"
        "<tr><th>component</th><th>what it measures</th><th>range</th><th>weight</th></tr>"
        f"{rows}</table><p style='font-size:12px'>total = Σ weight × component (the T-GRPO reward before the "
        f"shuffled-frame bonus).</p>{note}"
    )


def scores_html(a: Analysis, weights: dict | None = None) -> str:
    """One bar per component of the text being edited, and the total against its maximum."""
    w = normalize_weights(weights)
    rows = []
    for key, label, *_ in _shown([a]):
        v = a.components.get(key, 0.0)
        rows.append(
            f"<tr><td>{html.escape(label)}</td><td><div style='background:#ddd;width:110px;height:10px'>"
            f"<div style='background:#4e79a7;width:{100 * max(0.0, min(1.0, v)):.0f}%;height:10px'></div>"
            f"</div></td><td style='text-align:right'>{v:.2f}</td></tr>"
        )
    rows.append(
        f"<tr><td><b>total</b></td><td></td><td style='text-align:right'><b>{weighted_total(a.components, weights):.2f}"
        f"</b>&nbsp;/&nbsp;{sum(w.values()):g}</td></tr>"
    )
    return "<table style='font-size:12px'>" + "".join(rows) + "</table>"


# ---- reasoning, highlighted, and the side list of detections -------------------------------------


def _marks(a: Analysis) -> list[tuple[int, int, str]]:
    """Non-overlapping (start, end, colour) highlights: clause detections first."""
    dets = sorted(leaf_detections(a.detections, a.parsed.segments), key=lambda d: (d.end - d.start, -d.score))
    taken, out = [], []
    for d in dets:
        if any(d.start < b and s < d.end for s, b in taken):
            continue
        taken.append((d.start, d.end))
        out.append((d.start, d.end, phase_colour(a.gt.phase_of.get(d.name, 0))))
    return sorted(out)


def reasoning_html(a: Analysis) -> str:
    """The completion with each detected sub-action highlighted in its phase's colour."""
    text, pos, parts = a.parsed.text, 0, []
    for s, e, colour in _marks(a):
        parts.append(html.escape(text[pos:s]))
        parts.append(
            f"<mark style='background:{colour}55;border-bottom:2px solid {colour}'>{html.escape(text[s:e])}</mark>"
        )
        pos = e
    parts.append(html.escape(text[pos:]))
    return (
        "<div style='white-space:pre-wrap;overflow-wrap:anywhere;font-family:monospace;font-size:12px;"
        "line-height:1.5'>" + "".join(parts) + "</div>"
    )


def detections_html(a: Analysis) -> str:
    """Every detected sub-action in reading order: phase colour, name, phase, similarity >= threshold,
    and the frames the reasoning gives it."""
    dets = sorted(leaf_detections(a.detections, a.parsed.segments), key=lambda d: d.start)
    if not dets:
        return "<p style='font-size:12px'><i>no sub-action of this clip detected</i></p>"
    rows = []
    for d in dets:
        colour = phase_colour(a.gt.phase_of.get(d.name, 0))
        frames = ", ".join(f"{x}-{y}" if x != y else str(x) for x, y in d.frames) or "none given"
        rows.append(
            f"<tr><td style='background:{colour};width:6px;padding:0'></td><td style='padding:1px 4px'>"
            f"<b>{html.escape(d.name)}</b> ({html.escape(d.phase or '?')})</td><td style='padding:1px 4px'>"
            f"{d.score:.2f}&nbsp;≥&nbsp;{d.threshold:.2f}</td><td style='padding:1px 4px'>{frames}</td></tr>"
        )
    return (
        "<table style='font-size:12px;line-height:1.3;border-collapse:collapse'><tr><th></th>"
        "<th style='text-align:left'>detected sub-action (phase)</th><th>score ≥ threshold</th><th>frames</th></tr>"
        + "".join(rows)
        + "</table>"
    )


# ---- inputs --------------------------------------------------------------------------------------


def _items(clips, completions, names) -> list[dict]:
    """Normalise the inputs to [{record, completions, names}]."""
    clips = [clips] if isinstance(clips, dict) else list(clips)
    out = []
    for i, rec in enumerate(clips):
        comps = rec.get("completions")
        if isinstance(completions, dict):
            comps = completions.get(rec.get("label"), completions.get(i))
        elif completions is not None and all(isinstance(c, list | tuple) for c in completions):
            comps = completions[i] if i < len(completions) else None  # one list per clip
        elif completions is not None:
            comps = completions
        comps = [str(c) for c in (comps or [""])]
        nm = rec.get("completion_names") or names
        nm = (
            list(nm)
            if nm is not None and len(nm) == len(comps)
            else [f"completion {j + 1}" for j in range(len(comps))]
        )
        record = {k: v for k, v in rec.items() if k not in ("completions", "completion_names")}
        out.append({"record": record, "completions": comps, "names": nm})
    return out


def sampled_frames(record: dict, frames: np.ndarray | None = None, n: int | None = None) -> np.ndarray | None:
    """The N frames the model sees: from ``frames`` (a whole clip), ``record['frames']``, the
    ``video`` file, or a SynthAct re-render (``seed``/``level``/``size`` in the record); else None."""

    n = n or int(record.get("num_sampled_frames") or DEFAULT_SAMPLED_FRAMES)
    clip = frames if frames is not None else record.get("frames")
    if clip is None and record.get("video") and Path(str(record["video"])).is_file():
        return read_video(record["video"], num_frames=n, size=None).frames
    if clip is None and str(record.get("dataset")) == "synthact" and "seed" in record:
        try:
            clip, _ = render_clip(
                record["label"],
                int(record["seed"]),
                record.get("level", "medium"),
                int(record.get("size", 112)),
            )
        except (KeyError, ValueError):  # an unknown label or level: the view works without pictures
            return None
    if clip is None:
        return None
    clip = np.asarray(clip)
    return clip[sample_indices(len(clip), n)]


# ---- the two entry points ------------------------------------------------------------------------


def reward_table(clip: dict, completions=None, names=None, scorer=None, weights=None):
    """The score table of ``reward_report`` alone (no figure): components x completions."""
    item = _items(clip, completions, names)[0]
    return score_table(report.analyze(item["record"], item["completions"], scorer), item["names"], weights)


def reward_report(
    clip: dict, completions=None, names=None, scorer=None, weights=None, frames=None, path=None
):
    """The inspector without widgets (``INTERACTIVE = False``): ``(table, figure)``. The table has a row
    per component (and the total), a column per completion, the weight and the range; the figure is
    the frame strip over the phase timeline with each completion's detected sub-actions placed at the
    frames its reasoning gives them. The figure is saved to ``path`` if given."""
    item = _items(clip, completions, names)[0]
    rec, comps, nm = item["record"], item["completions"], item["names"]
    analyses = report.analyze(rec, comps, scorer)
    table = score_table(analyses, nm, weights)
    strip = sampled_frames(rec, frames)
    rows = [
        (name, sorted(leaf_detections(a.detections, a.parsed.segments), key=lambda d: d.start))
        for name, a in zip(nm, analyses)
    ]
    fig = timeline_figure(
        analyses[0].gt,
        rows,
        strip,
        title=f"{rec.get('label')}: sampled frames, phases "
        "(ground truth) and the sub-actions each completion names",
    )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return table, fig


def reward_inspector(clips, completions=None, names=None, scorer=None, weights=None, frames=None):
    """Pick a clip (a manifest record, or several) and one of its completions: the sampled frames over
    the phase timeline with the detected sub-actions at the frames the reasoning gives them, the
    reasoning highlighted beside the list of what was detected, an editable copy of the text (every
    keystroke re-scores), the scores and a legend.

    ``clips``: a record or a list of records (dataset columns: label, dataset, phases, fps,
    num_frames, duration_s...; optional ``completions``, ``frames`` or ``video``; SynthAct records
    with ``seed`` are re-rendered for the pictures). ``completions``: one list for every clip,
    a list of lists (one per clip), or a dict label -> list. ``frames``: a clip's frames when there is a single clip.
    """
    import ipywidgets as w

    scorer = scorer or default_scorer()
    items = _items(clips, completions, names)
    clip_dd = w.Dropdown(
        options=[(f"{i}: {it['record'].get('label')}", i) for i, it in enumerate(items)],
        description="clip",
        layout=w.Layout(width="220px"),
    )
    comp_dd = w.Dropdown(description="completion", layout=w.Layout(width="280px"))
    total_html = w.HTML()
    timeline = w.HTML()  # a VBox child stretches to the column; width 100% plus the margins would overflow
    reasoning = w.HTML(layout=w.Layout(flex="3 1 0%", min_width="0", padding="0 12px 0 0"))
    found = w.HTML(layout=w.Layout(flex="2 1 0%", min_width="0"))
    text = w.Textarea(
        continuous_update=True,
        layout=w.Layout(width="auto", height="90px"),
        placeholder="edit the completion: every keystroke re-scores it",
    )
    scores = w.HTML(layout=w.Layout(flex="0 0 auto", padding="0 12px 0 0"))
    legend = w.HTML(layout=w.Layout(flex="1 1 0%", min_width="0"))
    for widget, name in (
        (clip_dd, "ra-clip"),
        (comp_dd, "ra-completion"),
        (total_html, "ra-total"),
        (timeline, "ra-timeline"),
        (reasoning, "ra-reasoning"),
        (found, "ra-detections"),
        (text, "ra-editor"),
        (scores, "ra-scores"),
        (legend, "ra-legend"),
    ):
        widget.add_class(name)
    state = {"rec": None, "frames": None, "switching": False}

    def show_clip(_=None):
        it = items[clip_dd.value]
        state["rec"] = it["record"]
        state["frames"] = sampled_frames(it["record"], frames if len(items) == 1 else None)
        state["switching"] = True  # new options reset the value: show the completion once, below
        comp_dd.options = [(n, j) for j, n in enumerate(it["names"])]
        comp_dd.value = 0
        state["switching"] = False
        show_completion()

    def show_completion(_=None):
        if state["switching"] or comp_dd.value is None:
            return
        value = items[clip_dd.value]["completions"][comp_dd.value]
        if text.value == value:
            rescore()  # the same text: the observer does not fire, but the clip may have changed
        else:
            text.value = value  # the observer re-scores

    def rescore(_=None):
        a = report.analyze(state["rec"], [text.value], scorer)[0]
        dets = sorted(leaf_detections(a.detections, a.parsed.segments), key=lambda d: d.start)
        right = "right" if a.components.get("accuracy") else "wrong"
        total_html.value = (
            f"<b>total {weighted_total(a.components, weights):.3f}</b> / {sum(normalize_weights(weights).values()):g}"
            f" &nbsp; answer <code>{html.escape(a.parsed.answer or '—')}</code> ({right}; the clip is "
            f"<code>{html.escape(str(state['rec'].get('label')))}</code>)"
        )
        timeline.value = timeline_svg(a.gt, [("", dets)], state["frames"])
        reasoning.value = reasoning_html(a)
        found.value = detections_html(a)
        scores.value = scores_html(a, weights)
        legend.value = legend_html([a], weights)

    clip_dd.observe(show_clip, "value")
    comp_dd.observe(show_completion, "value")
    text.observe(rescore, "value")
    show_clip()
    return w.VBox(
        [
            w.HBox([clip_dd, comp_dd], layout=w.Layout(flex_flow="row wrap")),
            total_html,
            timeline,
            w.HBox([reasoning, found]),
            text,
            w.HBox([scores, legend]),
        ],
    ).add_class("ra-inspector")
