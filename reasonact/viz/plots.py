"""Figures for the notebooks: frame strips, phase timelines, clip galleries, and ``show``.

Every plotting function returns a matplotlib Figure (or draws on the ``ax`` it is given). Figures are
built with ``matplotlib.figure.Figure`` rather than pyplot, so no global figure state leaks between
cells. Such a figure is *not* displayed when a cell ends with it (Jupyter prints ``<Figure size ...>``)
and ``plt.show()`` ignores it: notebooks call ``show(fig, path)``, which saves the figure and displays
it as a PNG image, in JupyterLab and in the executed copies papermill writes.
"""

from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

# Okabe-Ito: colour-blind safe, distinct in print
PHASE_COLOURS = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"]


def show(fig, path: str | Path | None = None, dpi: int = 100) -> None:
    """Display ``fig`` as a PNG image and save it to ``path`` (if given). Works for pyplot figures too
    (pandas ``.plot``): those are closed afterwards, so the inline backend does not draw them twice.
    Returns None, so a cell that ends with ``show(...)`` prints nothing else."""
    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(buf.getvalue())
    display(Image(data=buf.getvalue(), format="png"))
    import matplotlib.pyplot as plt

    plt.close(fig)  # a no-op for a figure pyplot does not manage


def animation(clips, labels=(), fps: float = 8.0, height: int = 112) -> bytes:
    """Clips (each (T, H, W, 3)) side by side as one looping animated GIF (bytes), a caption under each;
    clips of different lengths hold their last frame. ``show_animation`` displays one."""
    from PIL import Image, ImageDraw

    clips = [np.asarray(c, np.uint8) for c in clips]
    if not clips or any(c.ndim != 4 for c in clips):
        raise ValueError("animation wants a list of clips shaped (T, H, W, 3)")
    widths = [round(c.shape[2] * height / c.shape[1]) for c in clips]
    caption = 16 if labels else 0
    frames = []
    for t in range(max(len(c) for c in clips)):
        canvas = Image.new("RGB", (sum(widths) + 6 * (len(clips) - 1), height + caption), "white")
        x = 0
        for c, w, label in zip(clips, widths, list(labels) + [""] * len(clips)):
            canvas.paste(Image.fromarray(c[min(t, len(c) - 1)]).resize((w, height)), (x, 0))
            ImageDraw.Draw(canvas).text((x + 3, height + 2), str(label), fill="black")
            x += w + 6
        frames.append(canvas)
    buf = io.BytesIO()
    frames[0].save(
        buf, format="GIF", save_all=True, append_images=frames[1:], duration=round(1000 / fps), loop=0
    )
    return buf.getvalue()


def show_animation(
    clips, labels=(), fps: float = 8.0, path: str | Path | None = None, height: int = 112
) -> None:
    """Display clips as a looping GIF (an ``<img>`` in an HTML output, which JupyterLab and nbconvert's
    HTML both render) and save the GIF to ``path`` (if given)."""
    import base64

    from IPython.display import HTML, display

    gif = animation(clips, labels, fps, height)
    alt = html.escape(", ".join(map(str, labels)), quote=True)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(gif)
    display(HTML(f"<img alt='{alt}' src='data:image/gif;base64,{base64.b64encode(gif).decode()}'/>"))


def _new_ax(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def frame_strip(frames, ax=None, titles=None, max_frames: int = 16, aspect="equal"):
    """Frames (T, H, W, 3) side by side in one image; at most ``max_frames``, uniformly spaced."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or len(frames) == 0:
        raise ValueError(f"frame_strip wants frames shaped (T, H, W, C), got {frames.shape}")
    idx = np.linspace(0, len(frames) - 1, min(len(frames), max_frames)).round().astype(int)
    if titles is not None and len(titles) == len(frames) and len(idx) < len(frames):
        titles = [titles[i] for i in idx]
    h, w = frames.shape[1:3]
    fig, ax = _new_ax(ax, (1.1 * len(idx), 1.3))
    ax.imshow(np.concatenate(list(frames[idx]), axis=1), aspect=aspect)
    ax.set_yticks([])
    ax.set_xticks((np.arange(len(idx)) + 0.5) * w)
    ax.set_xticklabels([str(t) for t in titles] if titles is not None else [str(i) for i in idx], fontsize=7)
    ax.tick_params(length=0)
    return fig


def phase_timeline(phases, duration_s: float, ax=None, frame_times=None, show_names: bool = True):
    """A bar of coloured phase windows over [0, duration_s]; ``frame_times`` adds tick marks.

    ``phases`` is the manifest's list of {name, start_s, end_s}.
    """
    fig, ax = _new_ax(ax, (8, 0.5))
    for i, ph in enumerate(phases):
        start, end = float(ph["start_s"]), float(ph["end_s"])
        ax.add_patch(Rectangle((start, 0), end - start, 1, color=PHASE_COLOURS[i % len(PHASE_COLOURS)], lw=0))
        if show_names:
            ax.text((start + end) / 2, 0.5, ph["name"], ha="center", va="center", fontsize=7, clip_on=True)
    if frame_times is not None:
        ax.vlines(frame_times, 0, 0.25, color="black", lw=0.8)
    ax.set_xlim(0, duration_s)
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    ax.set_xlabel("seconds", fontsize=7)
    ax.tick_params(labelsize=7)
    return fig


def _decode(video: str, n: int):
    import decord

    vr = decord.VideoReader(video)
    idx = np.linspace(0, len(vr) - 1, min(n, len(vr))).round().astype(int)
    return vr.get_batch(list(idx)).asnumpy(), idx


def clip_gallery(records, frames=None, n_frames: int = 8, title_key: str = "label"):
    """One row per clip: a strip of ``n_frames`` uniformly sampled frames over its phase timeline.

    ``records`` are manifest records (videos are decoded with decord) or, with ``frames`` (a list
    of (T, H, W, 3) arrays, e.g. from ``render_clip``), in-memory records. Tick marks on the
    timeline show when the shown frames were taken.
    """
    records = list(records)
    if not records:
        raise ValueError("clip_gallery needs at least one record")
    fig = Figure(figsize=(1.0 * n_frames, 1.6 * len(records)), layout="constrained")
    axes = fig.subplots(
        2 * len(records), 1, gridspec_kw={"height_ratios": [4, 1] * len(records)}, squeeze=False
    )[:, 0]
    for r, rec in enumerate(records):
        if frames is not None:
            clip = np.asarray(frames[r])
            idx = np.linspace(0, len(clip) - 1, min(n_frames, len(clip))).round().astype(int)
            shown = clip[idx]
        else:
            shown, idx = _decode(rec["video"], n_frames)
        fps = float(rec.get("fps") or 1.0)
        duration = float(rec.get("duration_s") or len(idx) / fps)
        # aspect "auto": the strip spans the full width, aligned with the timeline under it
        frame_strip(shown, ax=axes[2 * r], titles=[f"f{i}" for i in idx], aspect="auto")
        axes[2 * r].set_title(str(rec.get(title_key, "")), fontsize=9, loc="left")
        if rec.get("phases"):
            phase_timeline(rec["phases"], duration, ax=axes[2 * r + 1], frame_times=(idx + 0.5) / fps)
        else:
            axes[2 * r + 1].set_axis_off()
    return fig


# ---- the sub-action library (notebook 01) ----


def library_overview(stats: dict):
    """Three panels from ``Library.stats()``: phases per action, sub-actions per phase, and in how many
    datasets each canonical sub-action appears."""
    fig = Figure(figsize=(10, 2.6), layout="constrained")
    axes = fig.subplots(1, 3)
    panels = [
        ("phases_per_action", "phases per action", "actions"),
        ("sub_actions_per_phase", "sub-actions per phase", "phases"),
        ("sub_actions_by_number_of_datasets", "datasets using the sub-action", "sub-actions"),
    ]
    for ax, (key, xlabel, ylabel) in zip(axes, panels):
        hist = {int(k): v for k, v in stats[key].items()}
        ax.bar(list(hist), list(hist.values()), color=PHASE_COLOURS[4])
        for x, y in hist.items():
            ax.text(x, y, str(y), ha="center", va="bottom", fontsize=7)
        ax.set_xticks(list(hist))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    fig.suptitle(
        f"{stats['actions']} actions, {stats['unique_sub_actions']} unique sub-actions "
        f"({stats['shared_across_actions']} shared by several actions, "
        f"{stats['shared_across_datasets']} by several datasets)",
        fontsize=9,
    )
    return fig


def embedding_map(lib, index, highlight=(), max_points: int = 4000, seed: int = 0):
    """Each action's sub-actions (mean of their phrasing embeddings) in 2-D by PCA, coloured by the
    relative position of their phase in the action (0 = first phase, 1 = last). ``highlight`` lists
    action keys whose sub-actions are labelled and joined in temporal order."""
    names = np.array(index.names)
    points, where, labels = [], [], []
    for a in lib:
        rows = index.rows(a.key)
        for pi, p in enumerate(a.phases):
            for s in p.sub_actions:
                r = rows[names[rows] == s.name]
                if len(r):
                    points.append(index.matrix[r].mean(0))
                    where.append(pi / max(1, len(a.phases) - 1))
                    labels.append((a.key, s.name))
    x = np.asarray(points)
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)  # PCA: the two main directions of variation
    xy = x @ vt[:2].T
    rng = np.random.default_rng(seed)
    shown = rng.permutation(len(xy))[:max_points]
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    sc = ax.scatter(
        xy[shown, 0], xy[shown, 1], c=np.asarray(where)[shown], cmap="viridis", s=5, alpha=0.5, lw=0
    )
    fig.colorbar(sc, ax=ax, label="phase position in the action (0 = first, 1 = last)", shrink=0.7)
    for h, colour in zip(highlight, ["#D55E00", "#CC79A7", "#0072B2", "#E69F00"]):
        idx = [i for i, (k, _) in enumerate(labels) if k == h]
        if not idx:
            continue
        ax.plot(xy[idx, 0], xy[idx, 1], "-o", color=colour, ms=4, lw=1, label=h)
        for i in idx:
            ax.annotate(
                labels[i][1], xy[i], fontsize=6, color=colour, xytext=(2, 2), textcoords="offset points"
            )
    if highlight:
        ax.legend(fontsize=7, loc="lower right")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"{len(xy)} action sub-actions, MiniLM embeddings (PCA)", fontsize=9)
    return fig
