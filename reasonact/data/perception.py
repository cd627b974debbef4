"""The perception task of the tiny base: SynthAct clips described range by range, never named.

A real VLM arrives pretrained; the tiny Qwen2.5-VL is random init and, trained on action labels alone,
stays at chance (BENCHMARKS.md, "Tiny perception base"). Its stand-in for pretraining
(``reasonact.train.base`` trains it) is to describe the stick figure's body in every frame range, written
from SynthAct's exact per-frame ground truth:

    frames 1-2: tall upright low straight straight straight two level still. frames 3-4: ...

Values only, in the order of FIELDS (field names tripled the text, and the text's length is what a
training step costs). Never an action label, phase or sub-action name, so the base's zero-shot action
accuracy stays an honest baseline row. Every range is one temporal patch (2 frames) of the 16 sampled
frames; the model is asked for one range at a time ("Describe the body in frames 5-6."), see
``reasonact.train.base``.
"""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import torch

from reasonact.config import Recipe
from reasonact.data.synthact import CLASSES, clip_seed, render_clip
from reasonact.prompts import FORMAT_HINT, video_messages
from reasonact.video import Video, resize_square, sample_indices
from reasonact.vlm import generate

QUESTION = "Describe the body in each frame range."

# The description: one field per attribute, always in this order, "<field> <value>". The values of a
# field start with distinct tokens, so one teacher-forced forward scores every field (evaluate_base).
FIELDS = {
    "height": ("high", "tall", "mid", "low"),  # head top above ground / standing height
    "trunk": ("upright", "tilted", "flat"),  # pelvis->neck angle from vertical
    "hands": ("low", "mid", "high"),  # the higher arm's elevation at the shoulder
    "elbows": ("straight", "bent", "folded"),  # the more bent elbow
    "hips": ("straight", "bent", "folded"),
    "knees": ("straight", "bent", "folded"),
    "contact": ("two", "one", "none"),  # feet on the ground
    "travel": ("up", "down", "level"),  # centre of mass since the previous range
    "limbs": ("moving", "still"),  # joint angles since the previous range
}


def _bucket(x: float, edges: list[float], values: tuple[str, ...]) -> str:
    """values[i] for the first edge x is above (edges descending); the last value otherwise."""
    for edge, value in zip(edges, values):
        if x > edge:
            return value
    return values[-1]


def perception_fields(pose: dict, frame_indices) -> list[dict[str, str]]:
    """Per range of 2 sampled frames: {field: value}, from the generator's ground truth."""
    idx = np.asarray(list(frame_indices))
    if len(idx) % 2:
        idx = np.append(idx, idx[-1])  # a temporal patch is 2 frames; the processor pads the same way
    ang = np.asarray(pose["angles"], float)[idx]  # (N, 8): elbow l/r, shoulder l/r, hip l/r, knee l/r
    height = np.asarray(pose["height"], float)[idx]
    contact = np.asarray(pose["contact"], bool)[idx].sum(1)
    j = np.asarray(pose["joints"], float)[idx]
    trunk = j[:, 1] - j[:, 7]  # pelvis -> neck, pixels (y down)
    tilt = np.degrees(np.arctan2(np.abs(trunk[:, 0]), np.maximum(-trunk[:, 1], 1e-9)))
    tilt = np.where(-trunk[:, 1] > 0, tilt, 180 - tilt)
    scale = float(pose.get("scale", 1.0)) or 1.0
    com_y = -np.cumsum(np.asarray(pose["com_delta"], float)[:, 1]) / scale  # torso units, up positive
    com_y = com_y[idx]
    out = []
    for r in range(len(idx) // 2):
        a, b = 2 * r, 2 * r + 1
        m = ang[[a, b]].mean(0)
        if r == 0:  # no previous range: the motion inside the pair, doubled to the same time span
            dy, dang = 2 * (com_y[b] - com_y[a]), 2 * np.abs(ang[b] - ang[a]).sum()
        else:
            dy = com_y[[a, b]].mean() - com_y[[a - 2, a - 1]].mean()
            dang = np.abs(m - ang[[a - 2, a - 1]].mean(0)).sum()
        out.append({
            "height": _bucket(height[[a, b]].mean(), [1.04, 0.9, 0.65], FIELDS["height"]),
            "trunk": _bucket(-tilt[[a, b]].mean(), [-20, -55], FIELDS["trunk"]),
            "hands": _bucket(-m[2:4].max(), [-40, -110], FIELDS["hands"]),
            "elbows": _bucket(m[0:2].min(), [150, 90], FIELDS["elbows"]),
            "hips": _bucket(m[4:6].min(), [150, 110], FIELDS["hips"]),
            "knees": _bucket(m[6:8].min(), [150, 110], FIELDS["knees"]),
            "contact": ("none", "one", "two")[int(contact[[a, b]].min())],
            "travel": "up" if dy > 0.06 else "down" if dy < -0.06 else "level",
            "limbs": "moving" if dang > 40 else "still",
        })  # fmt: skip
    return out


def _range_text(r: int, fields: dict[str, str]) -> str:
    return f"frames {2 * r + 1}-{2 * r + 2}: " + " ".join(fields[k] for k in FIELDS) + "."


def perception_text(pose: dict, frame_indices) -> str:
    """The body, range by range, over the sampled frames the model sees (16 frames -> 8 ranges)."""
    return " ".join(_range_text(r, f) for r, f in enumerate(perception_fields(pose, frame_indices)))


def messages(text: str | None = None, question: str = QUESTION) -> list[dict]:

    return video_messages(question, text, hint="")


def range_question(ranges: list[int]) -> str:
    return "Describe the body in " + " and ".join(f"frames {2 * r + 1}-{2 * r + 2}" for r in ranges) + "."


def answer_slots(fields: list[dict[str, str]], ranges: list[int] | None = None):
    """The answer for ``ranges`` (all when None) and, per value, (char offset, field, value)."""
    text, slots = "", []
    for r in range(len(fields)) if ranges is None else ranges:
        text += (" " if text else "") + f"frames {2 * r + 1}-{2 * r + 2}:"
        for k in FIELDS:
            text += " "
            slots.append((len(text), k, fields[r][k]))
            text += fields[r][k]
        text += "."
    return text, slots


def render_example(
    label: str,
    seed: int,
    level: str,
    size: int = 112,
    video_size: int = 56,
    num_frames: int = 16,
    crop: float = 1.0,
) -> dict:
    """One clip as the model sees it: sampled like ``read_video`` (uniform indices, resized square).
    ``crop`` < 1: sample from a random window of at least that fraction of the clip, so that a frame
    range's position no longer tells what the body does there (clips start and end alike)."""

    frames, rec = render_clip(label, int(seed), level, size)
    t = rec["num_frames"]
    if crop < 1.0:
        rng = np.random.default_rng([int(seed), 7])
        length = min(t, max(num_frames // 2, int(round(t * rng.uniform(crop, 1.0)))))
        start = int(rng.integers(0, t - length + 1))
        idx = [start + i for i in sample_indices(length, num_frames)]
    else:
        idx = sample_indices(t, num_frames)
    fields = perception_fields(rec["pose"], idx)
    return {
        "frames": resize_square(frames[idx], video_size),
        "indices": idx,
        "fps": float(rec["fps"]),
        "total_frames": int(rec["num_frames"]),
        "label": label,
        "level": level,
        "seed": int(seed),
        "fields": fields,
        "text": " ".join(_range_text(r, f) for r, f in enumerate(fields)),
        "record": {
            k: v for k, v in rec.items() if k != "pose"
        },  # label, phases, fps...: what a teacher reads
    }


def _render_task(task):
    return render_example(*task)


def _one_thread():
    torch.set_num_threads(1)  # a 16-frame resize is slower with threads fighting the other workers


def render_pool(
    per_class: int,
    level: str,
    split: str = "pretrain",
    seed: int = 0,
    size: int = 112,
    video_size: int = 56,
    num_frames: int = 16,
    workers: int = 2,
    crop: float = 1.0,
) -> list[dict]:
    """``per_class`` clips of every class at ``level`` from the SynthAct split ``split`` (seeds hash it)."""

    tasks = [
        (label, clip_seed(seed, split, label, i), level, size, video_size, num_frames, crop)
        for i in range(per_class)
        for label in CLASSES
    ]
    if workers <= 1:
        threads = torch.get_num_threads()
        _one_thread()
        try:
            return [_render_task(t) for t in tasks]
        finally:
            torch.set_num_threads(threads)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_one_thread) as pool:
        return pool.map(_render_task, tasks, chunksize=16)


def to_example(item: dict, ranges: list[int] | None = None) -> dict:
    """A pool item -> what VideoCollator takes (frames, video_metadata, messages). ``ranges``: ask
    for these frame ranges only (the question names them); None: the whole description."""
    video = Video(
        item["frames"], item["indices"], item["fps"], item["total_frames"], f"synthact:{item['seed']}"
    )
    if ranges is None:
        msgs = messages(item["text"])
    else:
        msgs = messages(answer_slots(item["fields"], ranges)[0], range_question(ranges))
    return {"frames": item["frames"], "video_metadata": video.metadata(), "messages": msgs}


def with_options(question: str, options) -> str:
    """A multiple-choice question: ``question`` followed by "Options: a, b, c."."""
    return f"{question} Options: {', '.join(options)}."


def format_example(item: dict, rng: np.random.Generator, question: str = "range") -> tuple[dict, str]:
    """A multiple-choice question about one field, answered in the completion format without an action label
    (``base.format_share``). ``question="range"``: the field in one range, "Which knees does the body have in
    frames 5-6? ... Options: bent, straight, folded." -> ``<think>frames 5-6: tall upright ...</think>
    <answer>bent</answer>``. ``"clip"``: the field at the clip's start or end, asked as the action question
    asks ("Describe what happens in which frames"), the think describing every range in order. Returns
    (example, the true value)."""
    n = len(item["fields"])
    if question == "clip":  # the field at the first or the last range, the think describing them all
        r = n - 1 if rng.integers(2) else 0
        frames, ranges = f"at the {'end' if r else 'start'} of the video", None
    else:
        r = int(rng.integers(n))
        frames, ranges = f"in frames {2 * r + 1}-{2 * r + 2}", [r]
    field = list(FIELDS)[int(rng.integers(len(FIELDS)))]
    options = rng.permutation(FIELDS[field])
    then = "Describe what happens in which frames" if ranges is None else "Describe the body there"
    ask = f"Which {field} does the body have {frames}? {then}, then give the {field}."
    truth = item["fields"][r][field]
    answer = f"<think>{answer_slots(item['fields'], ranges)[0]}</think><answer>{truth}</answer>"
    msgs = video_messages(with_options(ask, options), answer, FORMAT_HINT)
    return {**to_example(item, ranges), "messages": msgs}, truth


def perception_items(recipe: Recipe, per_class: int, level: str, split: str, workers: int = 1) -> list[dict]:
    """``per_class`` rendered clips of each class at ``level`` from SynthAct split ``split``, for evaluating."""
    return render_pool(
        per_class,
        level,
        split=split,
        seed=recipe.base.seed,
        size=recipe.data.synthact_size,
        video_size=recipe.video.size,
        num_frames=recipe.video.num_frames,
        workers=workers,
    )


def describe(model, processor, item: dict, ranges: list[int], max_new_tokens: int = 24) -> list[dict]:
    """What a model says about frame ranges of a pool item (``render_example``), next to the truth:
    ``[{frames, said, truth}]``. Greedy decoding (``vlm.generate``)."""
    out = []
    for r in ranges:
        ex = to_example(item, [r])
        chats, videos = [ex["messages"][:1]], [(ex["frames"], ex["video_metadata"])]
        said = generate(model, processor, chats, videos, max_new_tokens=max_new_tokens, do_sample=False)[0][0]
        truth = answer_slots(item["fields"], [r])[0]
        out.append({"frames": f"{2 * r + 1}-{2 * r + 2}", "said": said, "truth": truth})
    return out
