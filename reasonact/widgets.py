"""ipywidgets views over package functions, for students in JupyterLab.

Widgets only arrange what package functions compute; with ``INTERACTIVE = False`` (papermill) the
notebooks show the same content as tables and saved figures instead.
"""

from __future__ import annotations

import html

from reasonact.embeddings import EmbeddingIndex, nearest_sub_actions
from reasonact.library import Action, Library


def decomposition_table(action: Action) -> list[dict]:
    """One row per sub-action: phase, share, sub-action, phrasings (what the lookup widget shows)."""
    return [
        {
            "phase": p.name,
            "share": round(p.share, 2),
            "sub_action": s.name,
            "phrasings": " | ".join(s.phrasings),
        }
        for p in action.phases
        for s in p.sub_actions
    ]


def _html_table(rows: list[dict]) -> str:
    if not rows:
        return "<i>nothing</i>"
    head = "".join(f"<th style='text-align:left'>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>"
        + "".join(f"<td style='text-align:left'>{html.escape(str(v))}</td>" for v in r.values())
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def library_explorer(
    lib: Library, index: EmbeddingIndex, action: str = "jump", sentence: str = "bends the knees"
):
    """Type an action (any dataset's spelling) to see its decomposition; type a sentence to see the
    nearest sub-actions and their cosine scores."""
    import ipywidgets as w

    action_box = w.Text(value=action, description="action", continuous_update=False)
    sentence_box = w.Text(
        value=sentence, description="sentence", continuous_update=False, layout=w.Layout(width="60%")
    )
    within = w.Checkbox(value=False, description="only within the action above")
    action_out, sentence_out = w.HTML(), w.HTML()

    def show_action(_=None):
        try:
            a = lib.resolve(action_box.value.strip())
        except KeyError as e:
            action_out.value = f"<b>{html.escape(str(e))}</b>"
            return
        action_out.value = f"<b>{html.escape(a.key)}</b>: {html.escape(a.description)}" + _html_table(
            decomposition_table(a)
        )

    def show_sentence(_=None):
        key = None
        if within.value:
            try:
                key = lib.resolve(action_box.value.strip()).key
            except KeyError:
                pass
        rows = nearest_sub_actions(sentence_box.value, index, k=8, key=key)
        sentence_out.value = _html_table(rows)

    action_box.observe(show_action, "value")
    action_box.observe(show_sentence, "value")
    sentence_box.observe(show_sentence, "value")
    within.observe(show_sentence, "value")
    show_action()
    show_sentence()
    return w.VBox([action_box, action_out, w.HBox([sentence_box, within]), sentence_out])


# ---- reward inspector (notebook 05, and a section of notebook 01) --------------------------------


def _as_clips(clips, completions, names) -> list[dict]:
    """Normalise the inspector's inputs to [{record, completions, names}]."""
    clips = [clips] if isinstance(clips, dict) else list(clips)
    out = []
    for i, rec in enumerate(clips):
        comps = rec.get("completions")
        if completions is not None:
            comps = (
                completions.get(rec.get("label"), completions.get(i))
                if isinstance(completions, dict)
                else completions
            )
        comps = [str(c) for c in (comps or [""])]
        nm = rec.get("completion_names") or names
        nm = (
            list(nm)
            if nm is not None and len(nm) == len(comps)
            else [f"completion {j + 1}" for j in range(len(comps))]
        )
        out.append(
            {
                "record": {k: v for k, v in rec.items() if k not in ("completions", "completion_names")},
                "completions": comps,
                "names": nm,
            }
        )
    return out


def _frames_png(frames, height: int = 72) -> bytes:
    """A numbered strip of the sampled frames as PNG bytes."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    tiles = []
    for k, f in enumerate(frames):
        img = Image.fromarray(np.asarray(f, dtype=np.uint8)).convert("RGB")
        img = img.resize((max(1, round(img.width * height / img.height)), height))
        ImageDraw.Draw(img).text((3, 2), str(k + 1), fill=(255, 255, 0))
        tiles.append(img)
    strip = Image.new("RGB", (sum(t.width + 2 for t in tiles), height), (40, 40, 40))
    x = 0
    for t in tiles:
        strip.paste(t, (x, 0))
        x += t.width + 2
    buf = io.BytesIO()
    strip.save(buf, format="PNG")
    return buf.getvalue()


def reward_report(
    clip: dict, completions=None, names=None, scorer=None, weights=None, frames=None, path=None
):
    """The inspector without widgets (``INTERACTIVE = False``): ``(DataFrame, Figure)`` — one row per
    completion with every reward component and the total, and a figure with the sampled frames,
    the phase timeline with each completion's detected sub-actions, and a bar per component.
    ``completions`` defaults to ``clip['completions']``; the figure is saved to ``path`` if given."""
    from reasonact.rewards import report

    item = _as_clips(clip, completions, names)[0]
    rec, comps, nm = item["record"], item["completions"], item["names"]
    df = report.score_table(rec, comps, scorer, weights, names=nm)
    analyses = report.analyze(rec, comps, scorer)
    fig = report.report_figure(rec, analyses, nm, report.sampled_frames(rec, frames), weights)
    if path is not None:
        from pathlib import Path

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return df, fig


def reward_inspector(clips, completions=None, names=None, scorer=None, weights=None, frames=None):
    """Pick a clip (a manifest record, or several) and one of its completions: see the sampled
    frames, the phase timeline with the detected sub-actions placed at the frames the reasoning
    gives them, a bar per reward component, and the completion with its detected sub-actions
    highlighted. Edit the text box and every reward is recomputed as you type.

    ``clips``: a record or a list of records (dataset columns: label, dataset, phases, fps,
    num_frames, duration_s...; optional ``completions``, ``frames`` or ``video``; SynthAct records
    with ``seed`` are re-rendered for the pictures). ``completions``: a list for every clip, or a
    dict label -> list. ``frames``: a clip's frames when there is a single clip.
    """
    import ipywidgets as w

    from reasonact.rewards import report
    from reasonact.rewards.scorer import default_scorer

    scorer = scorer or default_scorer()
    items = _as_clips(clips, completions, names)
    clip_dd = w.Dropdown(
        options=[(f"{i}: {it['record'].get('label')}", i) for i, it in enumerate(items)], description="clip"
    )
    comp_dd = w.Dropdown(description="completion")
    text = w.Textarea(layout=w.Layout(width="100%", height="160px"), continuous_update=True)
    frames_img, table = w.Image(format="png"), w.HTML()
    bars, timeline, marked = w.HTML(), w.HTML(), w.HTML()
    state = {"rec": None}

    def show_clip(_=None):
        it = items[clip_dd.value]
        state["rec"] = it["record"]
        strip = report.sampled_frames(it["record"], frames if len(items) == 1 else None)
        frames_img.value = _frames_png(strip) if strip is not None else b""
        frames_img.layout.display = None if strip is not None else "none"
        df = report.score_table(it["record"], it["completions"], scorer, weights, names=it["names"])
        table.value = df.drop(columns=["answer"]).to_html(float_format=lambda v: f"{v:.2f}")
        comp_dd.options = [(n, j) for j, n in enumerate(it["names"])]
        comp_dd.value = 0
        show_completion()

    def show_completion(_=None):
        if comp_dd.value is not None:
            text.value = items[clip_dd.value]["completions"][comp_dd.value]
        rescore()

    def rescore(_=None):
        a = report.analyze(state["rec"], [text.value], scorer)[0]
        bars.value = report.bars_html(a.components, weights)
        timeline.value = report.timeline_svg(a)
        notes = "; ".join(a.details.get("c_cross", {}).get("notes", []))
        marked.value = report.highlight_html(a) + (
            f"<p><i>C_cross: {html.escape(notes)}</i></p>" if notes else ""
        )

    clip_dd.observe(show_clip, "value")
    comp_dd.observe(show_completion, "value")
    text.observe(rescore, "value")
    show_clip()
    return w.VBox([clip_dd, frames_img, timeline, table, comp_dd, text, w.HBox([bars, marked])])
