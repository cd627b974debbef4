"""ipywidgets views over package functions, for students in JupyterLab.

Widgets only arrange what package functions compute; with ``INTERACTIVE = False`` (papermill) the
notebooks show the same content as tables and saved figures instead. The reward inspector has a
module of its own, ``reasonact/viz/inspector.py``.
"""

from __future__ import annotations

import html

from reasonact.library import Action, Library
from reasonact.library.embeddings import EmbeddingIndex, nearest_sub_actions


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
