"""Prompts and model inputs: the chat messages every stage and the evaluation share.

The completion format is ``<think>...</think><answer>...</answer>`` (README); the process-aware
format adds a leading ``<observation>...</observation>``.
"""

from __future__ import annotations

from collections.abc import Sequence

QUESTION = (
    "Which action is the person performing in the video? Describe what happens in which frames, "
    "the phases and sub-actions in order, then give the action."
)
FORMAT_HINT = "Answer as <think>reasoning</think><answer>action</answer>."
FORMAT_HINT_PA = (
    "Answer as <observation>what you see</observation><think>reasoning</think><answer>action</answer>."
)


def format_hint(fmt: str = "plain") -> str:
    """The instruction for a completion format: ``plain`` or ``process`` (VideoP2R's observation first)."""
    if fmt not in ("plain", "process"):
        raise ValueError(f"unknown completion format {fmt!r}; choose plain or process")
    return FORMAT_HINT_PA if fmt == "process" else FORMAT_HINT


def video_messages(
    question: str = QUESTION, answer: str | None = None, hint: str = FORMAT_HINT
) -> list[dict]:
    """One user turn with a video and the question (plus the assistant turn when training)."""
    text = f"{question} {hint}".strip()
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": text}]}]
    if answer is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    return msgs


def encode_videos(
    processor,
    videos: Sequence,
    questions: Sequence[str] | None = None,
    answers: Sequence[str] | None = None,
    add_generation_prompt: bool | None = None,
    hint: str = FORMAT_HINT,
    padding_side: str = "right",
):
    """Processor inputs for a batch of ``reasonact.video.Video`` asked ``questions`` (default: QUESTION),
    with the assistant's ``answers`` when training. ``padding_side="left"`` for generation."""
    questions = list(questions) if questions is not None else [QUESTION] * len(videos)
    answers = list(answers) if answers is not None else [None] * len(videos)
    gen = all(a is None for a in answers) if add_generation_prompt is None else add_generation_prompt
    chats = [video_messages(q, a, hint) for q, a in zip(questions, answers)]
    return encode_chats(processor, chats, videos, gen, padding_side)


def encode_chats(
    processor,
    chats: Sequence,
    videos: Sequence = (),
    add_generation_prompt: bool = True,
    padding_side: str = "right",
):
    """The one place chats are encoded, for training, generation and features alike.

    ``videos``: one per chat that has a ``{"type": "video"}`` part, in order, each a
    ``reasonact.video.Video`` or a ``(frames, metadata)`` pair (frames + metadata, so the processor neither
    re-samples frames nor guesses the fps); empty for text-only chats. ``padding_side="left"`` to generate."""
    texts = [
        processor.apply_chat_template(c, add_generation_prompt=add_generation_prompt, tokenize=False)
        for c in chats
    ]
    kwargs = {}
    if videos:
        pairs = [(v.frames, v.metadata()) if hasattr(v, "metadata") else tuple(v) for v in videos]
        kwargs = dict(
            videos=[f for f, _ in pairs], video_metadata=[m for _, m in pairs], do_sample_frames=False
        )
    return processor(text=texts, padding=True, padding_side=padding_side, return_tensors="pt", **kwargs)
