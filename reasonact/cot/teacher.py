"""Chain-of-thought teachers: one interface, three teachers, and the structured prompt they share.

    teacher = make_teacher("template", recipe)             # or "openai", "model"
    chains = teacher.generate(records)                     # manifest records -> list[Chain], same order

A chain is a completion in the project's format (README, "Chains of thought"): ``<think>…</think><answer>…</answer>``,
or with ``format="process"`` (VideoP2R) ``<observation>…</observation><think>…</think><answer>…</answer>``.
Frame references ("frames 5-8") are 1-based numbers of the N frames the *student* sees (N =
``recipe.video.num_frames``, 16 as in the paper), sampled uniformly (``video.sample_indices``).

- ``TemplateTeacher`` (offline, the tiny profile and tests): correct chains written from the label, the
  clip's phase windows and the library's phrasings. Per clip (seeded by the clip's id, so the order of the
  records does not matter) it draws the subject, sentence templates, connectives and one phrasing per
  sub-action, so the same sub-action is named in different words across clips.
- ``OpenAITeacher``: any OpenAI-compatible endpoint (GPT-4o in the paper; a vLLM server with Qwen2.5-VL-72B
  as Video-R1 used) through the ``openai`` client (``chat_client.py``: retries, the key, the cache). Frames
  go as base64 JPEG image parts, each preceded by its frame number; responses are cached on disk by clip,
  prompt and model.
- ``ModelTeacher``: a local VLM through transformers (the tiny model here; Qwen2.5-VL-7B on a GPU), greedy,
  vision tokens suppressed.

A teacher never raises for one bad clip: the chain carries ``error`` and the filter counts it.
"""

from __future__ import annotations

import base64
import io
import random
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reasonact.config import REPO_ROOT
from reasonact.cot.chat_client import ChatCache, ChatClient, ChatError
from reasonact.data.synthact import CLASSES
from reasonact.library import Library, class_list, load_library, normalize_label
from reasonact.paths import derived_seed
from reasonact.progress import progress
from reasonact.prompts import video_messages
from reasonact.rewards.gt import ground_truth
from reasonact.video import VideoDecodeError, read_video, sample_indices
from reasonact.vlm import generate, load_model

FORMATS = ("plain", "process")
SYSTEM_PROMPT = (
    "You are an expert in human movement and biomechanics. You analyse short videos of one person "
    "performing an action and explain, step by step, how the movement unfolds over time."
)


@dataclass
class Chain:
    clip_id: str
    record: dict  # the manifest record the chain is about (video, label, dataset, phases, fps, ...)
    text: str  # the completion ("" when the teacher failed)
    format: str  # plain | process
    teacher: str  # "template", "openai:<model>", "model:<path>"
    error: str | None = None
    meta: dict = field(default_factory=dict)  # cached, attempts, usage...


def clip_id(record: dict) -> str:
    """A stable id for a clip: its own ``clip_id``/``id`` field, else dataset/split/label/file name (unique
    in every supported dataset; independent of where the data folder lives)."""
    for key in ("clip_id", "id"):
        if record.get(key) not in (None, ""):
            return str(record[key])
    parts = [str(record.get(k, "")) for k in ("dataset", "split", "label")]
    return "/".join([*parts, Path(record["video"]).name])


def frame_times(record: dict, num_frames: int = 16) -> np.ndarray:
    """Time (s) of each of the N sampled frames: frame i of a clip shows (i + 0.5) / fps (SynthAct's
    convention, used by the rewards too); without fps/num_frames, the centres of N equal cells."""
    fps, total = record.get("fps"), record.get("num_frames")
    if fps and total:
        return (np.array(sample_indices(int(total), num_frames), float) + 0.5) / float(fps)
    edges = ground_truth({**record, "num_sampled_frames": num_frames}, None).edges
    return (edges[:-1] + edges[1:]) / 2


def phase_frames(record: dict, library: Library | None, num_frames: int = 16) -> list[dict]:
    """The clip's phases with the 1-based sampled frames inside each window: [{name, first, last,
    sub_actions, phrasings}]. Windows are the record's (SynthAct) or the library's typical shares over
    the clip (real datasets, ``rewards.gt``). A phase too short to contain a sampled frame gets the
    frame nearest its middle."""
    gt = ground_truth({**record, "num_sampled_frames": num_frames}, library)
    times = frame_times(record, num_frames)
    phr = {s.name: list(s.phrasings) for ph in gt.action.phases for s in ph.sub_actions} if gt.action else {}
    out = []
    for p in gt.phases:
        inside = [k + 1 for k, t in enumerate(times) if p.start <= t < p.end]
        inside = inside or [int(np.argmin(np.abs(times - (p.start + p.end) / 2))) + 1]
        out.append(
            {
                "name": p.name,
                "first": min(inside),
                "last": max(inside),
                "sub_actions": list(p.sub_actions),
                "phrasings": [phr.get(s) or [s.replace("_", " ")] for s in p.sub_actions],
            }
        )
    return out


# ---- the structured prompt (the paper's CoT prompting) ------------------------------------------


def build_prompt(
    fmt: str = "plain",
    num_frames: int = 16,
    candidates: Sequence[str] | None = None,
    label: str | None = None,
    media: str = "images",
) -> str:
    """The teacher's instructions: analyse the frames in order, name phases and sub-actions with frame
    ranges, explain how the order identifies the action, conclude with the answer."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    seen = (
        f"The {num_frames} images are frames of one video clip, in temporal order, each preceded by its "
        f"number (1 to {num_frames})."
        if media == "images"
        else f"The video has {num_frames} frames, numbered 1 to {num_frames} in temporal order."
    )
    lines = [
        seen,
        "Analyse the frames in order:",
        '1. Describe what the person does in each group of consecutive frames, citing them as "frames a-b".',
        "2. Name the phases of the movement (for a jump: preparation, loading, propulsion, flight, landing) and "
        "the sub-actions within each (knee flexion, arm swing, ...), in the order they happen.",
        "3. Explain how this sequence of phases identifies the action.",
        "4. Conclude with the name of the action.",
    ]
    if candidates:
        lines.append("The action is one of: " + ", ".join(normalize_label(c) for c in candidates) + ".")
    if label:
        lines.append(f"The correct action is {normalize_label(label)}: explain how the frames show it.")
    lines.append(
        "Write what you see frame by frame (steps 1-2) inside <observation></observation>, your reasoning "
        "about the order of the phases (step 3) inside <think></think>, and only the action name inside "
        "<answer></answer>, with nothing outside these tags."
        if fmt == "process"
        else "Write your reasoning (steps 1-3) inside <think></think> and only the action name inside "
        "<answer></answer>, with nothing outside these tags."
    )
    return "\n".join(lines)


def candidate_classes(dataset: str | None) -> list[str] | None:
    """Class names to list in the prompt (SynthAct 12, HMDB51 51, UCF-101 101); None for Kinetics-400,
    whose 400 names would dwarf the question (the teacher answers openly there)."""
    if dataset == "synthact":
        return list(CLASSES)
    return class_list(dataset) if dataset in ("hmdb51", "ucf101") else None


# ---- teachers ------------------------------------------------------------------------------------


class Teacher:
    """``generate(records) -> list[Chain]``, one chain per record, in order."""

    name = "teacher"
    give_label = False  # tell the teacher the label (rationalisation)

    def __init__(self, fmt: str = "plain", num_frames: int = 16):
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        self.format, self.num_frames = fmt, int(num_frames)

    def generate(self, records: Sequence[dict]) -> list[Chain]:
        raise NotImplementedError

    def prompt(self, record: dict, media: str = "images") -> str:
        """The structured prompt for ``record``, with its dataset's classes as the candidates."""
        label = record["label"] if self.give_label else None
        candidates = candidate_classes(record.get("dataset"))
        return build_prompt(self.format, self.num_frames, candidates, label, media)

    def _chain(self, record: dict, text: str = "", error: str | None = None, **meta) -> Chain:
        return Chain(clip_id(record), record, text, self.format, self.name, error, meta)


_SUBJECTS = ("the person", "the figure", "he", "she", "the subject")
_OPENERS = (
    "",
    "Let me go through the frames in order.",
    "I follow the movement from the first frame to the last.",
    "The clip shows a single person; I describe the motion step by step.",
)
_PHASE_HEADS = (
    "Frames {r}: {s} {body}.",
    "In frames {r}, {s} {body}.",
    "During frames {r} {s} {body}.",
    "{C}, in frames {r}, {s} {body}.",
)
_CONNECTIVES = ("First", "Next", "Then", "After that", "Finally")
_CONCLUSIONS = (
    "The phases come in the order {seq}, which is typical of {label}.",
    "This sequence, {seq}, matches {label}.",
    "Taken together, {seq} is how {label} unfolds.",
    "So the movement goes {seq}: this is {label}.",
)
# A phrasing that starts with its own subject ("both feet leave the ground") takes none; "is airborne" does.
_OWN_SUBJECT = re.compile(
    r"^(?:the|both|his|her|their|its|one|a|an|each|arms?|hands?|feet|legs?|knees?)\b", re.I
)


def with_subject(subject: str, phrasing: str) -> str:
    """ "he" + "bends the knees" -> "he bends the knees"; "both feet leave the ground" stays as it is."""
    return phrasing if _OWN_SUBJECT.match(phrasing) else f"{subject} {phrasing}"


def _frames(p: dict) -> str:
    return f"{p['first']}-{p['last']}" if p["last"] > p["first"] else f"{p['first']}"


def _words(name: str) -> str:
    return name.replace("_", " ")


class TemplateTeacher(Teacher):
    """Correct, varied chains from the label, the phase windows and the library's phrasings."""

    name = "template"

    def __init__(
        self,
        library: Library,
        fmt: str = "plain",
        num_frames: int = 16,
        seed: int = 0,
        name_phases: float = 0.5,
        style: str = "full",
    ):
        super().__init__(fmt, num_frames)
        if style not in ("full", "concise"):
            raise ValueError(f"template teacher style must be full or concise, not {style!r}")
        self.library, self.seed, self.style = library, seed, style
        self.name_phases = name_phases  # chance that a phase sentence also names the phase

    def generate(self, records: Sequence[dict]) -> list[Chain]:
        out = []
        for rec in records:
            try:
                out.append(self._chain(rec, self.write(rec)))
            except (KeyError, ValueError) as e:  # e.g. a label the library does not know
                out.append(self._chain(rec, error=f"{type(e).__name__}: {e}"))
        return out

    def write(self, record: dict) -> str:
        rng = random.Random(derived_seed(self.seed, clip_id(record)))
        phases = phase_frames(record, self.library, self.num_frames)
        if not phases:
            raise ValueError(
                f"no phases for label {record.get('label')!r}: not in the library, none annotated"
            )
        label = normalize_label(record["label"])
        if self.style == "concise":
            return self.concise(phases, label, rng)
        subject = rng.choice(_SUBJECTS)
        sentences = []
        for i, p in enumerate(phases):
            parts = [rng.choice(o) for o in p["phrasings"]] or [f"moves through the {p['name']} phase"]
            subj = "" if _OWN_SUBJECT.match(parts[0]) else subject
            if not subj:  # "both feet leave the ground and [he] pulls the knees up"
                parts = parts[:1] + [with_subject(subject, q) for q in parts[1:]]
            body = ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]
            last = i == len(phases) - 1
            conn = _CONNECTIVES[0] if i == 0 else _CONNECTIVES[-1] if last else rng.choice(_CONNECTIVES[1:4])
            text = rng.choice(_PHASE_HEADS).format(r=_frames(p), s=subj, body=body, C=conn)
            text = " ".join(text.split()).replace(" ,", ",")
            if rng.random() < self.name_phases:
                text = text[:-1] + f" (the {_words(p['name'])} phase)."
            sentences.append(text[0].upper() + text[1:])
        seq = ", then ".join(_words(p["name"]) for p in phases)
        conclusion = rng.choice(_CONCLUSIONS).format(seq=seq, label=label)
        if self.format == "plain":
            opener = rng.choice(_OPENERS)
            return self._tags(" ".join(([opener] if opener else []) + sentences), conclusion, label)
        # Process-aware: the observation is the perception (what happens in which frames, no action
        # name); the think block reasons over the phases, citing their frames, and concludes.
        order = "; ".join(f"the {_words(p['name'])} phase in frames {_frames(p)}" for p in phases)
        return self._tags(" ".join(sentences), f"The movement passes through {order}. {conclusion}", label)

    def concise(self, phases: list[dict], label: str, rng: random.Random) -> str:
        """One short sentence per phase, same shape every time: "Frames 1-4: the person bends the knees
        (crouch)." ~40 words. For a student as small as the tiny profile's, which cannot learn the full
        style's free-form ~120-word prose in a CPU budget (measured: BENCHMARKS.md, Stage 1-2)."""
        lines, seq = [], ", ".join(_words(p["name"]) for p in phases)
        for p in phases:
            pick = f"moves through the {p['name']} phase"
            if p["phrasings"]:  # one phrasing of one sub-action: variety for the duplicate filter
                pick = rng.choice(rng.choice(p["phrasings"]))
            lines.append(f"Frames {_frames(p)}: {with_subject('the person', pick)} ({_words(p['name'])}).")
        return self._tags(" ".join(lines), f"Phases {seq}: {label}.", label)

    def _tags(self, observation: str, think: str, label: str) -> str:
        """plain: all of it inside <think>; process: the observation inside <observation> first."""
        if self.format == "plain":
            return f"<think>{observation} {think}</think><answer>{label}</answer>"
        return f"<observation>{observation}</observation><think>{think}</think><answer>{label}</answer>"


def frames_as_jpeg(frames: np.ndarray, quality: int = 85) -> list[str]:
    """Base64 JPEG strings, one per frame (uint8 RGB)."""
    from PIL import Image

    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(f)).save(buf, format="JPEG", quality=int(quality))
        out.append(base64.b64encode(buf.getvalue()).decode("ascii"))
    return out


class OpenAITeacher(Teacher):
    """Chains from an OpenAI-compatible chat endpoint through a ``ChatClient`` (retries, the key: there).

    The student's N frames are sampled; ``frames`` of them (evenly spread) are sent, each after a text
    part "Frame k:" with k the *student's* number, so frame references mean the same to both."""

    def __init__(
        self,
        client: ChatClient,
        fmt: str = "plain",
        num_frames: int = 16,
        frames: int = 16,
        frame_size: int = 336,
        jpeg_quality: int = 85,
        image_detail: str = "auto",
        temperature: float = 0.2,
        max_tokens: int = 600,
        concurrency: int = 4,
        cache_dir: str | Path | None = None,
        give_label: bool = False,
        progress: bool = False,
    ):
        super().__init__(fmt, num_frames)
        self.client, self.name = client, f"openai:{client.model}"
        self.frames = min(int(frames), self.num_frames)
        self.frame_size, self.jpeg_quality, self.image_detail = frame_size, jpeg_quality, image_detail
        self.temperature, self.max_tokens = temperature, max_tokens
        self.concurrency, self.give_label, self.progress = max(1, int(concurrency)), give_label, progress
        self.cache = ChatCache(cache_dir)

    def __repr__(self) -> str:
        return f"OpenAITeacher(client={self.client!r}, format={self.format!r}, frames={self.frames})"

    def shown_frames(self) -> list[int]:
        """1-based student frame numbers sent to the teacher (all N, or an even subset)."""
        return [int(k) + 1 for k in np.round(np.linspace(0, self.num_frames - 1, self.frames)).astype(int)]

    def messages(self, record: dict, prompt: str) -> list[dict]:
        video = read_video(record["video"], self.num_frames, self.frame_size)
        shown = self.shown_frames()
        content: list[dict] = []
        for k, b64 in zip(shown, frames_as_jpeg(video.frames[[k - 1 for k in shown]], self.jpeg_quality)):
            image = {"url": f"data:image/jpeg;base64,{b64}", "detail": self.image_detail}
            content += [{"type": "text", "text": f"Frame {k}:"}, {"type": "image_url", "image_url": image}]
        content.append({"type": "text", "text": prompt})
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": content}]

    def cache_key(self, record: dict, prompt: str) -> str:
        return self.cache.key(
            {
                "clip": clip_id(record),
                "prompt": prompt,
                "system": SYSTEM_PROMPT,
                "model": self.client.model,
                "base_url": self.client.base_url,
                "frames": self.shown_frames(),
                "size": self.frame_size,
                "detail": self.image_detail,
                "temperature": self.temperature,
                "max_tokens": self.max_tokens,
            }
        )

    def one(self, record: dict) -> Chain:
        prompt = self.prompt(record)
        key = self.cache_key(record, prompt)
        hit = self.cache.get(key)
        if hit is not None:  # checked before decoding the video: a re-run costs nothing
            return self._chain(record, hit["text"], cached=True, usage=hit.get("usage"))
        try:
            messages = self.messages(record, prompt)
            reply = self.client.chat(messages, temperature=self.temperature, max_tokens=self.max_tokens)
        except VideoDecodeError as e:
            return self._chain(record, error=f"video: {e.cause}")
        except ChatError as e:
            return self._chain(record, error=str(e), status=e.status, attempts=e.attempts)
        except Exception as e:  # noqa: BLE001 - one odd clip must not stop the batch; the filter counts it
            return self._chain(record, error=self.client.redact(f"{type(e).__name__}: {e}"))
        model = reply.model or self.client.model
        self.cache.put(key, dict(text=reply.text, usage=reply.usage, model=model, clip=clip_id(record)))
        return self._chain(record, reply.text, cached=False, attempts=reply.attempts, usage=reply.usage)

    def generate(self, records: Sequence[dict]) -> list[Chain]:
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:  # the endpoint's concurrency limit
            chains = pool.map(self.one, records)
            return list(progress(chains, len(records), self.name, "chains", enabled=self.progress))


class ModelTeacher(Teacher):
    """Chains from a local VLM (``model, processor`` from ``vlm.load_model``), vision tokens suppressed."""

    def __init__(
        self,
        model,
        processor,
        fmt: str = "plain",
        num_frames: int = 16,
        size: int = 224,
        max_new_tokens: int = 256,
        batch_size: int = 2,
        name: str = "model",
    ):
        super().__init__(fmt, num_frames)
        self.model, self.processor, self.size = model, processor, size
        self.max_new_tokens, self.batch_size = max_new_tokens, max(1, int(batch_size))
        self.name = f"model:{name}"

    @classmethod
    def from_recipe(cls, recipe, path: str | None = None, fmt: str | None = None) -> ModelTeacher:
        """The recipe's model (or ``teacher.local_model`` / ``path``) without LoRA, greedy."""
        t, v = recipe.teacher, recipe.video
        model, proc = load_model(recipe, lora=False, path=path or t.local_model)
        name = str(path or t.local_model or recipe.model.name_or_path or "tiny")
        return cls(model, proc, fmt or t.format, v.num_frames, v.size, t.max_new_tokens, t.batch_size, name)

    def generate(self, records: Sequence[dict]) -> list[Chain]:
        self.model.eval()
        out: list[Chain | None] = [None] * len(records)
        for start in range(0, len(records), self.batch_size):
            readable = []  # (index, record, video) of the clips that decode
            for i, rec in enumerate(records[start : start + self.batch_size], start):
                try:
                    readable.append((i, rec, read_video(rec["video"], self.num_frames, self.size)))
                except VideoDecodeError as e:
                    out[i] = self._chain(rec, error=f"video: {e.cause}")
            if not readable:
                continue
            where, batch, videos = zip(*readable)
            chats = [video_messages(self.prompt(r, media="video"), hint="") for r in batch]
            texts = generate(self.model, self.processor, chats, videos, max_new_tokens=self.max_new_tokens)[0]
            for i, rec, text in zip(where, batch, texts):
                out[i] = self._chain(rec, text)
        return out


def make_teacher(
    kind: str, recipe, library: Library | None = None, fmt: str | None = None, progress: bool = False
) -> Teacher:
    """The recipe's teacher of ``kind`` (template | openai | model); ``fmt`` overrides ``teacher.format``."""
    t = recipe.teacher
    fmt, n = fmt or t.format, recipe.video.num_frames
    if kind == "template":
        library = load_library(recipe.data.library_dir) if library is None else library
        return TemplateTeacher(library, fmt, n, seed=t.seed, style=t.style)
    if kind == "openai":
        client = ChatClient.from_env(
            t.base_url, t.model, t.api_key_env, timeout_s=t.timeout_s, max_retries=t.max_retries
        )
        names = ("frames", "frame_size", "jpeg_quality", "image_detail", "temperature", "max_tokens")
        kw = {k: getattr(t, k) for k in (*names, "concurrency", "give_label")}
        cache = Path(REPO_ROOT, t.cache_dir)  # an absolute cache_dir stays as it is
        return OpenAITeacher(client, fmt, n, cache_dir=cache, progress=progress, **kw)
    if kind == "model":
        return ModelTeacher.from_recipe(recipe, fmt=fmt)
    raise ValueError(f"unknown teacher {kind!r}; choose template, openai or model")
