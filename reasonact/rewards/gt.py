"""Ground truth for one completion, from the dataset columns TRL passes to reward functions.

Columns (each a list aligned with the completions; all optional except ``label``):
``label``, ``dataset``, ``phases`` ([{name, start_s, end_s, sub_actions}], a list or its JSON
string), ``fps``, ``num_frames`` (frames of the *clip*), ``duration_s``, ``frame_times`` (seconds
of each *sampled* frame the model saw), ``num_sampled_frames`` and ``options``.

Frame references in reasoning ("frames 5-8") are 1-based numbers of the N sampled frames (N =
``len(frame_times)``, else ``num_sampled_frames``, else 16 as in ``reasonact.prompts``). Sampled
frame k stands for the time cell between the midpoints to its neighbours (the first cell starts at
0, the last ends at the clip's duration), so "frames a-b" covers ``[edge[a-1], edge[b]]``. Without
``frame_times`` the sampled frames are the ones ``reasonact.video.sample_indices`` picks from
``num_frames`` at ``fps`` (frame i shows the instant ``(i + 0.5) / fps``, as SynthAct renders it);
without those either, N evenly spaced cells over the duration.

Phase windows: the clip's annotated ``phases`` when they carry times; otherwise (real datasets
have no phase annotations) the library's typical phase shares laid over the clip's duration
(``Action.phase_windows``), ``windows_source = "library_shares"``. Without any duration, time is
normalised to [0, 1]. An fps below ``MIN_FPS`` or a duration above ``MAX_DURATION_S`` counts as missing.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

from reasonact.library import Action, Library, normalize_label
from reasonact.video import sample_indices

DEFAULT_SAMPLED_FRAMES = 16  # reasonact.prompts / config.video.num_frames: the paper's 16 frames
MIN_FPS = 1e-3  # slower than a frame in 1000 s is a broken record, not a video: fps is ignored
MAX_DURATION_S = 1e7  # longer (115 days) is a broken record too: treated as no duration
COLUMNS = (
    "label",
    "dataset",
    "phases",
    "fps",
    "num_frames",
    "duration_s",
    "frame_times",
    "num_sampled_frames",
    "options",
)


@dataclass
class GTPhase:
    name: str
    start: float
    end: float
    sub_actions: list[str]


@dataclass
class GroundTruth:
    label: str | None
    dataset: str | None
    action: Action | None
    phases: list[GTPhase]
    windows_source: str  # "annotation" | "library_shares" | "none"
    duration: float
    edges: np.ndarray  # N + 1 time edges of the sampled-frame cells
    options: list[str] | None = None
    phase_of: dict[str, int] = field(default_factory=dict)  # sub-action name -> phase index

    @property
    def n_frames(self) -> int:
        return len(self.edges) - 1

    @property
    def sub_actions(self) -> list[str]:
        """Ground-truth sub-action names in temporal order."""
        return [s for p in self.phases for s in p.sub_actions]

    def interval(self, first: int, last: int) -> tuple[float, float] | None:
        """Time interval of sampled frames first..last (1-based, as written), clipped to the clip;
        None when the range lies entirely outside 1..N."""
        n = self.n_frames
        first, last = max(1, first), min(n, last)
        if n < 1 or first > last:
            return None
        return float(self.edges[first - 1]), float(self.edges[last])


def row(columns: dict, i: int, n: int) -> dict:
    """Row i of TRL-style columns: a list/tuple of length n is per row, anything else is broadcast."""
    out = {}
    for key in COLUMNS:
        v = columns.get(key)
        if isinstance(v, list | tuple | np.ndarray) and len(v) == n:
            v = v[i]
        out[key] = v
    return out


def _num(x) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _phases(raw) -> list[dict] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(p, dict) for p in raw):
        return None
    return list(raw)


def _edges(r: dict, duration: float) -> np.ndarray:
    times = r.get("frame_times")
    if isinstance(times, list | tuple | np.ndarray) and len(times) > 0:
        t = np.array([_num(x) if _num(x) is not None else np.nan for x in times], dtype=float)
        if np.isfinite(t).all():
            t = np.clip(np.sort(t), 0.0, duration)
            mids = (t[1:] + t[:-1]) / 2
            return np.concatenate([[0.0], mids, [duration]])
    n = r.get("num_sampled_frames")
    n = (
        int(n)
        if isinstance(n, int | float) and not isinstance(n, bool) and 1 <= n <= 4096
        else DEFAULT_SAMPLED_FRAMES
    )
    fps, total = _num(r.get("fps")), _num(r.get("num_frames"))
    if fps and fps >= MIN_FPS and total and 1 <= total <= 10_000_000:
        t = np.clip((np.array(sample_indices(int(total), n), dtype=float) + 0.5) / fps, 0.0, duration)
        return np.concatenate([[0.0], (t[1:] + t[:-1]) / 2, [duration]])
    return np.linspace(0.0, duration, n + 1)


def resolve_action(lib: Library | None, label, dataset) -> Action | None:
    if lib is None or label is None:
        return None
    try:
        return lib.resolve(str(label), str(dataset) if dataset else None)
    except (KeyError, ValueError, TypeError):
        return None


def ground_truth(r: dict, lib: Library | None) -> GroundTruth:
    """Ground truth of one row (see the module docstring for every fallback)."""
    label = r.get("label")
    label = None if label is None else str(label)
    dataset = None if r.get("dataset") is None else str(r.get("dataset"))
    action = resolve_action(lib, label, dataset)
    raw = _phases(r.get("phases"))
    duration = _num(r.get("duration_s"))
    if not duration or duration <= 0:
        fps, total = _num(r.get("fps")), _num(r.get("num_frames"))
        duration = total / fps if fps and total and fps >= MIN_FPS and total > 0 else None
    phases: list[GTPhase] = []
    source = "none"
    if raw:
        starts = [_num(p.get("start_s")) for p in raw]
        ends = [_num(p.get("end_s")) for p in raw]
        timed = all(s is not None and e is not None and e > s for s, e in zip(starts, ends))
        if not duration or duration <= 0:
            duration = max(ends) if timed else None
        for p, s, e in zip(raw, starts, ends):
            subs = p.get("sub_actions")
            subs = [str(x) for x in subs] if isinstance(subs, list | tuple) else []
            phases.append(GTPhase(str(p.get("name", "")), s if timed else 0.0, e if timed else 0.0, subs))
        source = "annotation" if timed else "none"
    duration = duration if duration and 0 < duration <= MAX_DURATION_S else 1.0
    if action is not None:
        if not phases:
            phases = [GTPhase(p.name, 0.0, 0.0, [s.name for s in p.sub_actions]) for p in action.phases]
        if source != "annotation" and [p.name for p in phases] == [p.name for p in action.phases]:
            for p, (_, s, e) in zip(phases, action.phase_windows(duration)):
                p.start, p.end = s, e
            source = "library_shares"
    options = r.get("options")
    options = [str(o) for o in options] if isinstance(options, list | tuple) and options else None
    phase_of = {}
    for i, p in enumerate(phases):
        for s in p.sub_actions:
            phase_of.setdefault(s, i)
    return GroundTruth(
        label, dataset, action, phases, source, float(duration), _edges(r, float(duration)), options, phase_of
    )


def phase_words(name: str) -> str:
    """A phase name as prose ("wind_up" -> "wind up") for matching explicit mentions."""
    return normalize_label(name)
