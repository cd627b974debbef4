"""The reward inspector (reasonact/viz/inspector.py): what it shows, that it re-scores, and that the timeline
lines up with the frames. The browser test (tests/test_browser.py) checks the same widget in JupyterLab."""

import re

import numpy as np
import pytest

from reasonact.rewards.temporal import leaf_detections
from reasonact.viz import inspector, timeline
from tests.test_rewards import CASES


def _find(widget, cls):
    if cls in getattr(widget, "_dom_classes", ()):
        return widget
    for child in getattr(widget, "children", ()):
        if (hit := _find(child, cls)) is not None:
            return hit
    return None


def test_reward_report_table_and_figure(tmp_path, scorer):
    record, comps = CASES[0]
    frames = np.zeros((16, 32, 32, 3), np.uint8)
    table, fig = inspector.reward_report(
        dict(record, frames=frames),
        list(comps.values()),
        names=list(comps),
        scorer=scorer,
        path=tmp_path / "r.png",
    )
    assert (tmp_path / "r.png").is_file() and fig.axes
    assert list(table.columns) == [*comps, "weight", "range", "what it measures"]
    totals = table.loc["total", list(comps)]
    assert totals["good"] == totals.max() and totals["wrong"] < totals["good"]
    assert table.loc["accuracy", "weight"] == "×1" and table.loc["C_seq", "weight"] == "in C_tc"
    assert "perception" not in table.index  # no <observation> block, so no process-aware rows
    pa = comps["good"].replace("<think>", "<observation>the person crouches</observation><think>", 1)
    assert {"format (PA)", "perception", "reasoning C_tc"} <= set(
        inspector.reward_table(record, [pa], scorer=scorer).index
    )


def test_timeline_puts_frame_k_under_tick_k(scorer):
    """Slot k of the strip is [k, k+1) x SLOT; tick k sits in its middle; a phase window in seconds is
    placed by the frame cells it covers, and a detection at the frames the reasoning gives it."""
    record, comps = CASES[0]
    a = scorer.analyze([comps["good"]], **{k: [v] for k, v in record.items()})[0]
    dets = leaf_detections(a.detections, a.parsed.segments)
    shapes, width, _ = timeline.layout(a.gt, [("", dets)], frame_aspect=1.0)
    n = a.gt.n_frames
    assert width == n * timeline.SLOT
    ticks = [s["x"] for s in shapes if s["kind"] == "line"]
    assert ticks == [(k + 0.5) * timeline.SLOT for k in range(n)]
    phase_rects = [s for s in shapes if s["kind"] == "rect"][: len(a.gt.phases)]
    for p, r in zip(a.gt.phases, phase_rects):
        assert r["x"] == pytest.approx(timeline.slot_x(a.gt, p.start))
    assert phase_rects[0]["x"] == 0 and phase_rects[-1]["x"] + phase_rects[-1]["w"] == pytest.approx(width)
    first = next(d for d in dets if d.frames)
    bar = next(s for s in shapes if s["kind"] == "rect" and s["y"] > phase_rects[0]["y"] + 40)
    assert bar["x"] == (first.frames[0][0] - 1) * timeline.SLOT
    svg = timeline.timeline_svg(a.gt, [("", dets)], np.zeros((n, 20, 20, 3), np.uint8))
    assert (
        svg.startswith(f"<svg viewBox='0 0 {width:.0f} ")
        and "width='100%'" in svg
        and "data:image/png" in svg
    )


def test_inspector_shows_everything_and_rescores_on_edit(scorer):
    record, comps = CASES[0]
    box = inspector.reward_inspector([record, CASES[1][0]], completions=[list(comps.values()), ["x"]],
                                     names=list(comps), scorer=scorer)  # fmt: skip
    parts = {c: _find(box, c) for c in ("ra-total", "ra-timeline", "ra-reasoning", "ra-detections", "ra-editor",
                                         "ra-scores", "ra-legend", "ra-completion", "ra-clip")}  # fmt: skip
    assert "ra-inspector" in box._dom_classes and all(v is not None for v in parts.values())
    total = lambda: float(re.search(r"total ([\d.]+)", parts["ra-total"].value).group(1))  # noqa: E731
    good = total()
    assert "<svg" in parts["ra-timeline"].value and "<mark" in parts["ra-reasoning"].value
    assert "score" in parts["ra-detections"].value and "R_sub" in parts["ra-legend"].value
    assert "perception" not in parts["ra-scores"].value  # plain text: no process-aware components
    parts["ra-completion"].value = list(comps).index("wrong")  # switch the completion
    assert parts["ra-editor"].value == comps["wrong"] and total() < good
    parts["ra-editor"].value = "<think>nothing</think><answer>jump</answer>"  # edit: every reward recomputed
    assert "<mark" not in parts["ra-reasoning"].value and "no sub-action" in parts["ra-detections"].value
    parts["ra-editor"].value = "<observation>he crouches</observation>" + comps["good"]
    assert "perception" in parts["ra-scores"].value  # process-aware text: its components appear
    parts["ra-clip"].value = 1  # the second clip has its own single completion
    assert parts["ra-editor"].value == "x" and total() == 0.0
