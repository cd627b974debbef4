"""SynthAct: procedurally rendered stick-figure actions with exact ground truth for every phase.

    frames, rec = render_clip("jump", seed=3, level="easy")     # in memory: (T, H, W, 3) uint8 + record
    generate("data/synthact", clips_per_class=50, seed=0)      # mp4 + manifest_{train,val,test}.jsonl

Each clip is one repetition of an action named after an HMDB51 class, played as the phases of its
library entry (data/library/hmdb51.yaml: phase names, shares and sub-action names come from there)
with random per-phase durations. The record carries the phase windows and per-frame ground truth
(joint positions and angles, body height, foot contact, centre-of-mass motion, phase): the
manifest stores the latter in a ``<clip>.pose.json`` sidecar. Difficulty levels change the
picture, not the motion: the same seed gives the same timing and joint angles at every level
(only limb proportions vary more at harder levels).

- easy: a large, centred, thick white figure on black (what a from-scratch tiny VLM can learn,
  BENCHMARKS.md); medium: random size, position and mirroring, still white on black;
  hard: small thin figures in random colours on textured noisy backgrounds, with camera shake.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
import os
import re
import time
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from reasonact import paths
from reasonact.config import REPO_ROOT
from reasonact.data import figure as fig
from reasonact.data.manifest import write_manifest
from reasonact.progress import Progress
from reasonact.video import write_video

DATASET = "synthact"
CLASSES = fig.CLASSES
DEFAULT_SPLITS = (("train", 0.7), ("val", 0.15), ("test", 0.15))
DEFAULT_LIBRARY = Path(__file__).resolve().parents[2] / "data" / "library" / "hmdb51.yaml"
LIBRARY_ENV = "REASONACT_SYNTHACT_LIBRARY"  # override the library file (development only)

# Per level: figure scale (fraction of the largest that fits), limb width (torso units), limb
# proportion spread, mirroring probability, pixel-noise sigma range, camera-shake amplitude (px).
LEVELS = {
    "easy": dict(scale=(1.0, 1.0), centred=True, width=(0.30, 0.30), spread=0.05, mirror=0.0,
                 colours="white", noise=(0, 0), shake=0),
    "medium": dict(scale=(0.6, 1.0), centred=False, width=(0.22, 0.32), spread=0.10, mirror=0.5,
                   colours="grey", noise=(0, 0), shake=0),
    "hard": dict(scale=(0.4, 0.8), centred=False, width=(0.08, 0.16), spread=0.12, mirror=0.5,
                 colours="random", noise=(4, 16), shake=3),
}  # fmt: skip
TORSO_FRAC = 0.29  # easy: the torso is ~0.3 of the frame, limbs ~0.09 (the setting that learned)


class SynthActError(ValueError):
    """Bad arguments or a library file that does not match the generator."""


# ---- the library: phase names, shares and sub-action names are read, never duplicated ----


def _names(subs) -> list[str]:
    if isinstance(subs, dict):
        return [str(k) for k in subs]
    return [str(s if isinstance(s, str) else s.get("name") or s.get("id")) for s in subs or []]


@cache
def _library(path: str) -> dict:
    import yaml

    p = Path(path)
    if not p.is_file():
        raise SynthActError(f"SynthAct needs the sub-action library {p} (phase names); it is missing")
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    actions = data.get("actions", data)
    out = {}
    for label in CLASSES:
        entry = actions.get(label)
        if not entry or not entry.get("phases"):
            raise SynthActError(f"{p}: no phases for SynthAct class '{label}'")
        phases = [dict(name=str(ph["name"]), share=float(ph.get("share", 1.0)), sub_actions=_names(ph.get("sub_actions")))
                  for ph in entry["phases"]]  # fmt: skip
        if len(phases) != fig.num_phases(label):
            raise SynthActError(
                f"{p}: '{label}' has {len(phases)} phases, the generator animates {fig.num_phases(label)}"
            )
        out[label] = phases
    return out


def library_phases(label: str, library: str | Path | None = None) -> list[dict]:
    """The library's phases of ``label``: [{name, share, sub_actions: [names]}] in temporal order."""
    _check_label(label)
    return _library(str(library or os.environ.get(LIBRARY_ENV) or DEFAULT_LIBRARY))[label]


def _check_label(label):
    if label not in fig.ACTIONS:
        raise SynthActError(f"unknown SynthAct class {label!r}; choose from {', '.join(CLASSES)}")


# ---- the look of a clip: colours, size, position, background ----


def _lum(c):
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _contrasting(rng, ref, min_diff):
    for _ in range(100):
        c = tuple(int(v) for v in rng.integers(0, 256, 3))
        if abs(_lum(c) - ref) >= min_diff:
            return c
    return (255, 255, 255) if ref < 128 else (0, 0, 0)


def _texture(rng, n, c0, c1):
    """Low-frequency blobs, sometimes with stripes, mixing two colours: a cluttered background."""
    k = int(rng.integers(3, 9))
    t = np.asarray(
        Image.fromarray(rng.uniform(0, 255, (k, k)).astype(np.uint8)).resize((n, n), Image.BICUBIC)
    )
    t = t.astype(np.float32) / 255
    if rng.random() < 0.5:
        yy, xx = np.mgrid[0:n, 0:n]
        a, period = rng.uniform(0, np.pi), rng.uniform(6, 20)
        t = 0.6 * t + 0.4 * (np.sin((xx * np.cos(a) + yy * np.sin(a)) * 2 * np.pi / period) > 0)
    c0, c1 = np.array(c0, np.float32), np.array(c1, np.float32)
    return (c0 + (c1 - c0) * t[..., None]).astype(np.uint8)


def sample_look(level: str, size: int, extent: np.ndarray, num_frames: int, rng, mirror=None) -> fig.Look:
    """Appearance from ``rng``. ``extent`` = world bbox (x0, y0, x1, y1) of the whole clip."""
    cfg = LEVELS[level]
    w_t = rng.uniform(*cfg["width"])  # limb width in torso units
    ext_w, ext_h = extent[2] - extent[0] + w_t, extent[3] - extent[1] + w_t
    fit = 0.94 * size / max(ext_w, ext_h)  # the largest scale that keeps the whole clip in frame
    scale = min(TORSO_FRAC * size, fit) * rng.uniform(*cfg["scale"])
    centre = ((extent[0] + extent[2]) / 2, (extent[1] + extent[3]) / 2)
    mirror = bool(rng.random() < cfg["mirror"]) if mirror is None else bool(mirror)
    a = cfg["shake"]
    if cfg["centred"]:
        origin = ((size - 1) / 2, (size - 1) / 2)
    else:  # anywhere the clip's bbox stays inside the frame (shake included)
        free_x, free_y = max(size - 1 - ext_w * scale - 2 * a, 0), max(size - 1 - ext_h * scale - 2 * a, 0)
        origin = (
            a + ext_w * scale / 2 + rng.uniform(0, free_x),
            a + ext_h * scale / 2 + rng.uniform(0, free_y),
        )
    n = size + 2 * a
    ground = None
    if cfg["colours"] == "white":
        fg, prop = (255, 255, 255), (150, 150, 150)
        background = np.zeros((n, n, 3), np.uint8)
    elif cfg["colours"] == "grey":
        b, g = int(rng.integers(0, 41)), int(rng.integers(200, 256))
        fg, prop = (g, g, g), (int(rng.integers(110, 161)),) * 3
        background = np.full((n, n, 3), b, np.uint8)
    else:
        c0, c1 = tuple(rng.integers(0, 256, 3)), tuple(rng.integers(0, 256, 3))
        background = _texture(rng, n, c0, c1)
        ref = _lum(background.reshape(-1, 3).mean(0))
        fg, prop = _contrasting(rng, ref, 70), _contrasting(rng, ref, 50)
        ground = _contrasting(rng, ref, 40) if rng.random() < 0.5 else None
    noise = float(rng.uniform(*cfg["noise"]))
    if a:  # smooth camera shake: a random walk, low-passed, within +-a pixels
        walk = np.cumsum(rng.normal(0, 1, (num_frames + 4, 2)), axis=0)
        walk = np.stack([np.convolve(c, np.ones(5) / 5, "valid") for c in walk.T], axis=1)
        walk = walk - walk.mean(0)
        shake = np.clip(np.round(walk * a / max(np.abs(walk).max(), 1e-6)), -a, a).astype(int)
    else:
        shake = np.zeros((num_frames, 2), int)
    width = max(1, int(round(w_t * scale)))
    return fig.Look(scale, origin, centre, mirror, width, fg, prop, size, a, background, shake, noise, ground)


# ---- one clip, in memory ----

# rough segment mass fractions (Winter's tables, simplified): head, torso, upper arms, forearms, thighs, shins
_SEGMENTS = [("head", "head", 0.08), ("pelvis", "neck", 0.50), ("shoulder", "elbow_l", 0.03),
             ("shoulder", "elbow_r", 0.03), ("elbow_l", "hand_l", 0.025), ("elbow_r", "hand_r", 0.025),
             ("pelvis", "knee_l", 0.10), ("pelvis", "knee_r", 0.10), ("knee_l", "foot_l", 0.065),
             ("knee_r", "foot_r", 0.065)]  # fmt: skip


def _angle_at(j, a, b, c):
    """Interior angle at joint b between b->a and b->c, degrees (180 = straight)."""
    u, v = j[:, fig.J[a]] - j[:, fig.J[b]], j[:, fig.J[c]] - j[:, fig.J[b]]
    cos = (u * v).sum(-1) / np.maximum(np.linalg.norm(u, axis=-1) * np.linalg.norm(v, axis=-1), 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


def ground_truth(j: np.ndarray, body: fig.Body) -> dict:
    """Per-frame measurements that do not depend on the rendering (mirror-invariant)."""
    angles = np.stack([
        _angle_at(j, "shoulder", "elbow_l", "hand_l"), _angle_at(j, "shoulder", "elbow_r", "hand_r"),
        _angle_at(j, "pelvis", "shoulder", "elbow_l"), _angle_at(j, "pelvis", "shoulder", "elbow_r"),
        _angle_at(j, "neck", "pelvis", "knee_l"), _angle_at(j, "neck", "pelvis", "knee_r"),
        _angle_at(j, "pelvis", "knee_l", "foot_l"), _angle_at(j, "pelvis", "knee_r", "foot_r"),
    ], axis=1)  # fmt: skip
    w = np.array([m for _, _, m in _SEGMENTS])
    mids = np.stack([(j[:, fig.J[a]] + j[:, fig.J[b]]) / 2 for a, b, _ in _SEGMENTS], axis=1)
    com = (mids * w[None, :, None]).sum(1) / w.sum()
    return {
        "angles": angles,
        "height": (j[:, fig.J["head"], 1] + body.head_r) / body.standing_height,  # 1.0 = standing upright
        "contact": np.stack(
            [j[:, fig.J["foot_l"], 1] < fig.CONTACT_EPS, j[:, fig.J["foot_r"], 1] < fig.CONTACT_EPS], axis=1
        ),
        "com": com,
    }


def _check_args(label, level, size):
    _check_label(label)
    if level not in LEVELS:
        raise SynthActError(f"unknown level {level!r}; choose from {', '.join(LEVELS)}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 32 or size > 1024 or size % 2:
        raise SynthActError(
            f"size must be an even number of pixels in [32, 1024], got {size!r} (H.264 needs even sizes)"
        )


def render_clip(label: str, seed: int, level: str = "medium", size: int = 112, *, fps: int | None = None,
                mirror: bool | None = None, library: str | Path | None = None) -> tuple[np.ndarray, dict]:  # fmt: skip
    """Render one clip in memory: (frames (T, size, size, 3) uint8 RGB, record).

    The record has the manifest fields (label, dataset, fps, num_frames, duration_s, phases with
    start_s/end_s/sub_actions, seed, level, library_key) and ``pose``: per-frame ground truth as
    numpy arrays (see ``pose_to_json``). Frame i shows the instant (i + 0.5) / fps. The motion
    depends only on (label, seed, fps); the level and ``mirror`` only change the picture.
    """
    _check_args(label, level, size)
    if not isinstance(seed, int | np.integer) or seed < 0:
        raise SynthActError(f"seed must be a non-negative integer, got {seed!r}")
    if fps is not None and not 1 <= int(fps) <= 120:
        raise SynthActError(f"fps must be in [1, 120], got {fps!r}")
    phases = library_phases(label, library)
    motion_rng, look_rng = np.random.default_rng([int(seed), 0]), np.random.default_rng([int(seed), 1])
    body = fig.Body.sample(motion_rng, LEVELS[level]["spread"])
    track = fig.build_track(label, body, [p["share"] for p in phases], motion_rng, fps=fps)
    w = fig.world(track, body)
    look = sample_look(level, size, fig.extent(w, body), track.num_frames, look_rng, mirror)
    frames, joints_px = fig.draw_frames(w, body, look, look_rng)
    gt = ground_truth(w["joints"], body)
    sign = -1.0 if look.mirror else 1.0
    com_delta = np.diff(gt["com"], axis=0, prepend=gt["com"][:1]) * look.scale * np.array([sign, -1.0])
    pose = {
        "joint_names": list(fig.JOINTS), "angle_names": list(fig.ANGLES),
        "joints": joints_px,  # (T, 12, 2) pixels, as seen (camera shake included)
        "angles": gt["angles"],  # (T, 8) degrees: elbows/knees/hips 180 = straight, shoulders 0 = arm down
        "height": gt["height"],  # (T,) top of the head above the ground / standing height
        "contact": gt["contact"],  # (T, 2) bool: left, right foot on the ground
        "com_delta": com_delta,  # (T, 2) pixels the centre of mass moved since the previous frame (no shake)
        "phase": track.phase,  # (T,) index into ``phases``
        "ground_y": float(fig.to_pixels(np.zeros(2), look)[1]), "scale": float(look.scale), "mirrored": look.mirror,
    }  # fmt: skip
    b = track.bounds
    record = {
        "label": label, "dataset": DATASET, "library_key": f"hmdb51/{label}", "level": level, "seed": int(seed),
        "fps": track.fps, "num_frames": track.num_frames, "duration_s": round(track.num_frames / track.fps, 3),
        "size": size, "generator_version": paths.GENERATOR_VERSION,
        "phases": [dict(name=p["name"], start_s=round(float(b[i]), 3), end_s=round(float(b[i + 1]), 3),
                        sub_actions=list(p["sub_actions"])) for i, p in enumerate(phases)],
        "pose": pose,
    }  # fmt: skip
    return frames, record


def pose_to_json(pose: dict) -> dict:
    """The ``pose`` arrays as plain JSON values (0.1 px / 0.1 degree / 0.001 height precision)."""
    out = {}
    for k, v in pose.items():
        if isinstance(v, np.ndarray):
            v = v.astype(int) if v.dtype == bool else np.round(v, 3 if k == "height" else 1)
            v = v.tolist()
        out[k] = v
    return out


def load_pose(record: dict) -> dict:
    """Per-frame ground truth of a record: in memory already, or its sidecar next to the video."""
    pose = record["pose"]
    if isinstance(pose, dict):
        return pose
    path = Path(pose) if Path(pose).is_absolute() else Path(record["video"]).parent / Path(pose).name
    data = json.loads(path.read_text(encoding="utf-8"))
    return {k: np.asarray(v) if isinstance(v, list) and k not in ("joint_names", "angle_names") else v
            for k, v in data.items()}  # fmt: skip


# ---- files ----


def clip_seed(seed: int, split: str, label: str, index: int) -> int:
    """A clip's seed from (seed, split, label, index): independent of workers and order, and
    different split names (train, val, test, pretrain...) never share a clip."""
    h = hashlib.blake2b(f"synthact/{seed}/{split}/{label}/{index}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "little") >> 1


def parse_splits(text: str) -> tuple:
    """A CLI split spec: "train=0.7,val=0.15,test=0.15"; bare names share equally ("pretrain")."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    out = []
    for part in parts:
        name, _, frac = part.partition("=")
        try:
            out.append((name.strip(), float(frac) if frac else 1 / len(parts)))
        except ValueError:
            raise SynthActError(
                f"splits must look like 'train=0.7,val=0.15,test=0.15', got {text!r}"
            ) from None
    return tuple(out)


def _split_counts(n: int, splits) -> list[int]:
    """Largest-remainder rounding of n * fraction, so the counts add up to n."""
    raw = np.array([f for _, f in splits]) * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _make_clip(task):
    out_dir, split, label, index, seed, level, size, library = task
    frames, rec = render_clip(label, seed, level, size, library=library)
    rel = Path(split) / label / f"{label}_{index:05d}"
    (out_dir / rel).parent.mkdir(parents=True, exist_ok=True)
    write_video(out_dir / f"{rel}.mp4", frames, rec["fps"])
    (out_dir / f"{rel}.pose.json").write_text(json.dumps(pose_to_json(rec["pose"]), separators=(",", ":")))
    rec.update(pose=f"{rel}.pose.json", index=index)
    return {"video": f"{rel}.mp4", "label": label, "dataset": DATASET, "split": split, **rec}


def generate(out_dir: str | Path, clips_per_class: int, seed: int = 0, level: str = "medium", size: int = 112,
             splits=DEFAULT_SPLITS, classes=None, workers: int = 2, progress: bool = True,
             library: str | Path | None = None) -> dict:  # fmt: skip
    """Write mp4 clips, ``<clip>.pose.json`` sidecars and one ``manifest_<split>.jsonl`` per split.

    ``clips_per_class`` clips of each class are divided between ``splits`` (name, fraction) by
    largest remainder. Any split name works: ``splits=(("pretrain", 1.0),)`` draws clips that no
    train/val/test split contains, since a clip's seed hashes its split name. Returns a summary.
    """
    _check_args(CLASSES[0], level, size)
    if not isinstance(clips_per_class, int) or isinstance(clips_per_class, bool) or clips_per_class < 1:
        raise SynthActError(f"clips_per_class must be a positive integer, got {clips_per_class!r}")
    if not isinstance(seed, int) or seed < 0:
        raise SynthActError(f"seed must be a non-negative integer, got {seed!r}")
    if not isinstance(workers, int) or workers < 1:
        raise SynthActError(f"workers must be a positive integer, got {workers!r}")
    splits = tuple((str(name), float(frac)) for name, frac in splits)
    names = [name for name, _ in splits]
    ok_names = all(re.fullmatch(r"[A-Za-z0-9_-]+", n) for n in names) and len(set(names)) == len(names)
    if not splits or not ok_names:
        raise SynthActError(f"splits must be distinct names of letters, digits, '_' or '-', got {names}")
    if any(f <= 0 for _, f in splits) or abs(sum(f for _, f in splits) - 1) > 1e-6:
        raise SynthActError(f"split fractions must be positive and add up to 1, got {dict(splits)}")
    classes = list(CLASSES if classes is None else classes)
    for label in classes:
        _check_label(label)
    for label in classes:  # fail now, not in a worker, if the library does not fit
        library_phases(label, library)
    out_dir = Path(out_dir)
    counts = _split_counts(clips_per_class, splits)
    tasks = [(out_dir, split, label, i, clip_seed(seed, split, label, i), level, size, library)
             for (split, _), n in zip(splits, counts) for label in classes for i in range(n)]  # fmt: skip
    t0 = time.perf_counter()
    bar = Progress(len(tasks), f"SynthAct {level}", unit="clips", enabled=progress)
    records = []
    if workers == 1:
        for task in tasks:
            records.append(_make_clip(task))
            bar.update()
    else:  # fork: workers start in milliseconds; results come back in task order
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        with ctx.Pool(workers) as pool:
            for rec in pool.imap(_make_clip, tasks, chunksize=4):
                records.append(rec)
                bar.update()
    bar.close()
    manifests = {}
    for split, _ in splits:
        manifests[split] = str(
            write_manifest([r for r in records if r["split"] == split], out_dir / f"manifest_{split}.jsonl")
        )
    seconds = time.perf_counter() - t0
    return {
        "out_dir": str(out_dir), "manifests": manifests, "counts": dict(zip(names, [c * len(classes) for c in counts])),
        "num_clips": len(records), "classes": classes, "level": level, "size": size, "seed": seed,
        "seconds": round(seconds, 2), "clips_per_s": round(len(records) / max(seconds, 1e-9), 2),
    }  # fmt: skip


def ensure_dataset(
    recipe, out_dir: str | Path | None = None, seed: int | None = None, progress: bool = False
) -> dict:
    """The profile's SynthAct train/val/test, generated once and reused while its settings are unchanged.

    The settings (clips per class, level, size, seed, generator version) are stored in
    ``summary.json``; a folder made with other settings is regenerated from scratch, so a stale
    dataset is never silently reused.
    """
    import shutil

    d = recipe.data
    out = Path(out_dir or d.synthact_dir)
    out = out if out.is_absolute() else REPO_ROOT / out
    want = {
        "clips_per_class": d.synthact_clips_per_class,
        "level": d.synthact_level,
        "size": d.synthact_size,
        "seed": recipe.seed if seed is None else seed,
        "generator_version": paths.GENERATOR_VERSION,
    }
    with paths.locked(out):  # processes side by side (``reasonact experiments --jobs``) make it once
        summary_path = out / "summary.json"
        if summary_path.is_file():
            summary = json.loads(summary_path.read_text())
            manifests = summary["manifests"].values()
            if summary.get("settings") == want and all(Path(m).is_file() for m in manifests):
                return summary
            shutil.rmtree(out)
        summary = generate(
            out,
            want["clips_per_class"],
            seed=want["seed"],
            level=want["level"],
            size=want["size"],
            progress=progress,
        )
        summary["settings"] = want
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        return summary
