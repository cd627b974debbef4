"""Example completions for SynthAct-like clips: the tests', the benchmark's and the inspector's demo.

``MINI_LIBRARY`` (``data/examples/mini_library.yaml``) is six SynthAct classes (same phase and sub-action
names as the HMDB51 library entries SynthAct renders) so unit tests and demos need neither the full
library nor a download; ``data/examples/detection_sentences.yaml`` holds the labelled detection sentences.
``example_completion(record, action, kind)`` writes a template chain of the kind a teacher
produces: one "Frames a-b:" sentence per phase with its sub-actions, a conclusion and the answer;
``kind`` makes the variants the rewards must rank (good > shuffled > missing > wrong).
"""

from __future__ import annotations

import random
from pathlib import Path

import yaml

from reasonact.config import REPO_ROOT
from reasonact.data.synthact import render_clip
from reasonact.library import Action, Library, load_library
from reasonact.library.grammar import NO_SUBJECT
from reasonact.rewards.gt import ground_truth

KINDS = ("good", "shuffled", "unbound", "missing", "wrong")
EXAMPLES_DIR = REPO_ROOT / "data" / "examples"
MINI_LIBRARY = (EXAMPLES_DIR / "mini_library.yaml").read_text(encoding="utf-8")

_SUBJECTS = ("the person", "the figure", "he")
_FILLERS = (
    "The figure stays near the centre of the frame.",
    "The background does not change.",
    "The movement is smooth and continuous.",
    "Nothing else moves in the scene.",
)


def mini_library(directory: str | Path) -> Library:
    """Write MINI_LIBRARY to ``directory/hmdb51.yaml`` and load it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hmdb51.yaml").write_text(MINI_LIBRARY, encoding="utf-8")
    return load_library(directory)


def synthetic_record(
    action: Action, duration_s: float = 3.2, fps: int = 10, jitter: float = 0.0, seed: int = 0
) -> dict:
    """A SynthAct-like manifest record for ``action`` (phase windows from its shares, optionally
    jittered), without rendering anything."""
    rng = random.Random(seed)
    shares = [p.share * (1 + rng.uniform(-jitter, jitter)) for p in action.phases]
    total, t, phases = sum(shares), 0.0, []
    for p, s in zip(action.phases, shares):
        d = duration_s * s / total
        phases.append(
            {
                "name": p.name,
                "start_s": round(t, 3),
                "end_s": round(t + d, 3),
                "sub_actions": [x.name for x in p.sub_actions],
            }
        )
        t += d
    phases[-1]["end_s"] = round(duration_s, 3)
    return {
        "label": action.label,
        "dataset": "synthact",
        "fps": fps,
        "num_frames": int(round(duration_s * fps)),
        "duration_s": duration_s,
        "phases": phases,
    }


def example_clip(label: str, seed: int = 0, size: int = 112, level: str = "easy"):
    """A rendered SynthAct clip to write example completions for: ``(frames, record)``, the record with
    its exact phase windows (what the rewards score against)."""
    return render_clip(label, seed=seed, level=level, size=size)


def phase_frames(record: dict, lib: Library | None = None) -> list[tuple[int, int]]:
    """Per phase, the 1-based range of sampled frames whose time cell centre lies in its window."""
    gt = ground_truth(record, lib)
    centres = (gt.edges[:-1] + gt.edges[1:]) / 2
    out = []
    for p in gt.phases:
        idx = [k + 1 for k, c in enumerate(centres) if p.start <= c < p.end] or [1]
        out.append((min(idx), max(idx)))
    return out


def example_completion(
    record: dict,
    action: Action,
    kind: str = "good",
    seed: int = 0,
    wrong_label: str = "kick",
    process_aware: bool = False,
    fillers: int = 0,
) -> str:
    """A template chain for ``record`` (see the module docstring); ``fillers`` adds neutral
    sentences (the benchmark's ~150-word completions)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    rng = random.Random(seed)
    label = action.label.replace("_", " ")
    frames = phase_frames(record)
    sentences = []
    for (a, b), phase in zip(frames, action.phases):
        parts = [rng.choice(s.phrasings) for s in phase.sub_actions]
        body = ", ".join(parts[:-1]) + (", and " if len(parts) > 1 else "") + parts[-1]
        if not NO_SUBJECT.match(parts[0]):
            body = f"{rng.choice(_SUBJECTS)} {body}"
        head = "" if kind == "unbound" else f"Frames {a}-{b}: " if a != b else f"Frame {a}: "
        sentences.append(head + (body[0].upper() + body[1:] if not head else body) + ".")
        sentences.extend(rng.sample(_FILLERS, min(fillers, len(_FILLERS))))
    if kind == "shuffled":
        sentences = sentences[::-1]  # a fixed derangement for the phase sentences: reversed time
    if kind == "missing":
        sentences = ["The person moves around during the clip.", "The motion is hard to make out."]
    conclusion = {"wrong": "", "missing": f"It looks like {label}."}.get(
        kind,
        f"The order {' then '.join(p.name.replace('_', ' ') for p in action.phases)} is typical of {label}.",
    )
    think = " ".join(sentences + ([conclusion] if conclusion else []))
    answer = wrong_label if kind == "wrong" else label
    if process_aware:
        obs = " ".join(sentences)
        return (
            f"<observation>{obs}</observation><think>{conclusion or 'The movements follow each other.'}"
            f"</think><answer>{answer}</answer>"
        )
    return f"<think>{think}</think><answer>{answer}</answer>"


# Hand-written sentences labelled with the sub-actions they describe, and sentences about none: what
# detection precision and recall are measured on.
_SENTENCES = yaml.safe_load((EXAMPLES_DIR / "detection_sentences.yaml").read_text(encoding="utf-8"))
LABELLED_SENTENCES = tuple((a, s, tuple(subs)) for a, s, subs in _SENTENCES["labelled"])
NEGATIVE_SENTENCES = tuple(_SENTENCES["negatives"])
