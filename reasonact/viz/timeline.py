"""The inspector's timeline: a clip's sampled frames over its phase windows, and the sub-actions a text
names at the frames it gives them, laid out once (``layout``) and drawn as SVG (the widget) or with
matplotlib (saved reports).

The x axis is the *sampled frames*, one slot per frame, so frame k of the strip stands exactly over
tick k; a phase window given in seconds is placed by the frame cells it covers (``GroundTruth.edges``).
"""

from __future__ import annotations

import base64
import html
import io

import numpy as np

PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#ff9da7")


def phase_colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


SLOT = 100.0  # width of one sampled frame in layout units


def slot_x(gt, t: float) -> float:
    """A time in seconds -> x in frame slots (frame k occupies [k, k+1) * SLOT)."""
    return float(np.interp(t, gt.edges, np.arange(len(gt.edges)))) * SLOT


def layout(gt, rows: list[tuple[str, list]], frame_aspect: float | None) -> tuple[list[dict], float, float]:
    """Shapes in layout units: the frame strip (if any), the phase bar with a tick per sampled frame,
    then one line per detected sub-action at the frame span the reasoning gives it. ``rows`` is
    ``[(title, leaf detections)]``, one per completion (a title line is drawn when there are several)."""
    n = gt.n_frames
    width = n * SLOT
    shapes, y = [], 0.0
    if frame_aspect is not None:
        h = SLOT * frame_aspect
        shapes.append({"kind": "image", "x": 0, "y": 0, "w": width, "h": h})
        shapes += [
            {"kind": "text", "x": k * SLOT + 6, "y": 24, "text": str(k + 1), "colour": "#ffeb3b", "size": 20}
            for k in range(n)
        ]
        y = h + 4
    for i, p in enumerate(gt.phases):
        if p.end > p.start:
            x0, x1 = slot_x(gt, p.start), slot_x(gt, p.end)
            shapes.append({"kind": "rect", "x": x0, "y": y, "w": x1 - x0, "h": 34, "colour": phase_colour(i)})
            shapes.append(
                {"kind": "text", "x": x0 + 6, "y": y + 24, "text": p.name, "colour": "white", "size": 20}
            )
    for k in range(n):  # a tick under the middle of frame k, numbered like the strip
        shapes.append({"kind": "line", "x": (k + 0.5) * SLOT, "y0": y + 34, "y1": y + 44})
    shapes += [
        {
            "kind": "text",
            "x": (k + 0.5) * SLOT - 6,
            "y": y + 62,
            "text": str(k + 1),
            "colour": "#555",
            "size": 17,
        }
        for k in range(n)
    ]
    y += 72
    for title, dets in rows:
        if len(rows) > 1:
            shapes.append(
                {
                    "kind": "text",
                    "x": 4,
                    "y": y + 22,
                    "text": title,
                    "colour": "#000",
                    "size": 20,
                    "bold": True,
                }
            )
            y += 30
        for d in dets:
            colour = phase_colour(gt.phase_of.get(d.name, 0))
            spans = [(a - 1, b) for a, b in d.frames if 1 <= a <= b <= n]
            for a, b in spans:
                shapes.append(
                    {
                        "kind": "rect",
                        "x": a * SLOT,
                        "y": y + 4,
                        "w": (b - a) * SLOT,
                        "h": 22,
                        "colour": colour,
                    }
                )
            label = f"{d.name} {d.score:.2f}" + ("" if spans else " (no frames given)")
            x = spans[0][0] * SLOT + 6 if spans else 4
            shapes.append(
                {
                    "kind": "text",
                    "x": min(x, width - 12 * len(label)),
                    "y": y + 21,
                    "text": label,
                    "colour": "#111" if spans else "#888",
                    "size": 17,
                }
            )
            y += 30
    return shapes, width, y + 4


def strip_png(frames: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.concatenate(list(np.asarray(frames, np.uint8)), axis=1)).save(buf, format="PNG")
    return buf.getvalue()


def timeline_svg(gt, rows, frames: np.ndarray | None = None) -> str:
    """The layout as one SVG that scales to the width of its container (``width=100%``)."""
    aspect = frames.shape[1] / frames.shape[2] if frames is not None else None
    shapes, width, height = layout(gt, rows, aspect)
    out = [f"<svg viewBox='0 0 {width:.0f} {height:.0f}' width='100%' style='font-family:sans-serif'>"]
    for s in shapes:
        if s["kind"] == "image":
            data = base64.b64encode(strip_png(frames)).decode()
            out.append(
                f"<image x='0' y='0' width='{s['w']:.0f}' height='{s['h']:.0f}' preserveAspectRatio='none' "
                f"href='data:image/png;base64,{data}'/>"
            )
        elif s["kind"] == "rect":
            out.append(
                f"<rect x='{s['x']:.1f}' y='{s['y']:.1f}' width='{max(s['w'], 3):.1f}' height='{s['h']:.1f}' "
                f"fill='{s['colour']}' opacity='0.85'/>"
            )
        elif s["kind"] == "line":
            out.append(
                f"<line x1='{s['x']:.1f}' x2='{s['x']:.1f}' y1='{s['y0']:.1f}' y2='{s['y1']:.1f}' stroke='#555'/>"
            )
        else:
            weight = " font-weight='bold'" if s.get("bold") else ""
            out.append(
                f"<text x='{s['x']:.1f}' y='{s['y']:.1f}' font-size='{s['size']}' fill='{s['colour']}'{weight}>"
                f"{html.escape(s['text'])}</text>"
            )
    out.append("</svg>")
    return "".join(out)


def timeline_figure(gt, rows, frames: np.ndarray | None = None, title: str = ""):
    """The same layout as a matplotlib Figure (for saved reports)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    aspect = frames.shape[1] / frames.shape[2] if frames is not None else None
    shapes, width, height = layout(gt, rows, aspect)
    fig = Figure(figsize=(12, 12 * height / width), layout="constrained")
    ax = fig.add_subplot()
    scale = 12 * 72 / width  # points per layout unit: text keeps its size relative to the frames
    for s in shapes:
        if s["kind"] == "image":
            ax.imshow(np.concatenate(list(frames), axis=1), extent=(0, s["w"], s["h"], 0), aspect="auto")
        elif s["kind"] == "rect":
            ax.add_patch(
                Rectangle((s["x"], s["y"]), max(s["w"], 3), s["h"], color=s["colour"], alpha=0.85, lw=0)
            )
        elif s["kind"] == "line":
            ax.plot([s["x"], s["x"]], [s["y0"], s["y1"]], color="#555", lw=0.8)
        else:
            ax.text(
                s["x"],
                s["y"],
                s["text"],
                color=s["colour"],
                fontsize=s["size"] * scale * 0.75,
                fontweight="bold" if s.get("bold") else "normal",
                va="baseline",
            )
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10, loc="left")
    return fig
