"""SynthAct: the generator's contract (determinism, files decord reads, manifests, ground truth)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

import reasonact  # noqa: F401  (first: installs the CPU torchvision shim before anything imports it)
from reasonact.data import synthact as sa
from reasonact.data.manifest import read_manifest, validate_record

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _library_entries() -> dict:
    path = Path(os.environ.get(sa.LIBRARY_ENV) or sa.DEFAULT_LIBRARY)
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data.get("actions", data)


def _digest(root: Path) -> dict:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_twelve_classes_with_library_phases_and_sub_actions():
    entries = _library_entries()
    assert len(sa.CLASSES) >= 12
    for label in sa.CLASSES:
        _, rec = sa.render_clip(label, 0, "easy", 64)
        want = [(ph["name"], list(ph["sub_actions"])) for ph in entries[label]["phases"]]
        got = [(ph["name"], ph["sub_actions"]) for ph in rec["phases"]]
        # sub_actions in the library may be a mapping name -> phrasings or a list of names
        want = [(n, [s if isinstance(s, str) else s["name"] for s in subs]) for n, subs in want]
        assert got == want, label
        assert rec["library_key"] == f"hmdb51/{label}"


@pytest.mark.parametrize("label", sa.CLASSES)
def test_record_windows_tile_the_clip_and_match_frames(label):
    frames, rec = sa.render_clip(label, 5, "medium", 64)
    T, fps = rec["num_frames"], rec["fps"]
    assert frames.shape == (T, 64, 64, 3) and frames.dtype == np.uint8
    assert 10 <= fps <= 15 and rec["duration_s"] == pytest.approx(T / fps, abs=1e-3)
    validate_record({**rec, "video": "x.mp4", "split": "train"})
    ph = rec["phases"]
    assert ph[0]["start_s"] == 0 and ph[-1]["end_s"] == rec["duration_s"]
    assert all(a["end_s"] == b["start_s"] for a, b in zip(ph, ph[1:]))
    pose = rec["pose"]
    assert pose["joints"].shape == (T, 12, 2) and pose["angles"].shape == (T, 8)
    assert (
        pose["height"].shape == (T,) and pose["contact"].shape == (T, 2) and pose["com_delta"].shape == (T, 2)
    )
    assert np.all(np.diff(pose["phase"]) >= 0) and set(pose["phase"]) == set(range(len(ph)))
    for i, p in enumerate(pose["phase"]):  # each frame's phase is the window containing its instant
        t = (i + 0.5) / fps
        assert ph[p]["start_s"] - 1e-3 <= t <= ph[p]["end_s"] + 1e-3
    assert np.all((pose["angles"] >= 0) & (pose["angles"] <= 180))


def test_render_is_deterministic_and_seed_dependent():
    a, ra = sa.render_clip("throw", 3, "hard")
    b, rb = sa.render_clip("throw", 3, "hard")
    c, _ = sa.render_clip("throw", 4, "hard")
    assert np.array_equal(a, b) and np.array_equal(ra["pose"]["joints"], rb["pose"]["joints"])
    assert a.shape != c.shape or not np.array_equal(a, c)


def test_sit_and_stand_are_time_reverses():
    for seed in (0, 1, 2):
        sit, rs = sa.render_clip("sit", seed, "easy")
        stand, rt = sa.render_clip("stand", seed, "easy")
        assert np.allclose(rs["pose"]["joints"], rt["pose"]["joints"][::-1], atol=1e-6)
        assert np.allclose(rs["pose"]["angles"], rt["pose"]["angles"][::-1], atol=1e-6)
        assert np.array_equal(sit, stand[::-1])  # easy has no noise or shake: the pictures reverse too
        n = len(rs["phases"]) - 1
        assert np.array_equal(rs["pose"]["phase"], n - rt["pose"]["phase"][::-1])


def test_mirroring_flips_x():
    a, ra = sa.render_clip("kick", 9, "easy", mirror=False)
    b, rb = sa.render_clip("kick", 9, "easy", mirror=True)
    ja, jb = ra["pose"]["joints"], rb["pose"]["joints"]
    assert np.allclose(ja[..., 0], a.shape[2] - 1 - jb[..., 0]) and np.allclose(ja[..., 1], jb[..., 1])
    assert (a != b[:, :, ::-1]).mean() < 0.05  # the same picture up to rasterisation
    assert (a != b).mean() > 0.05
    assert np.allclose(ra["pose"]["com_delta"][:, 0], -rb["pose"]["com_delta"][:, 0])


def test_levels_change_the_picture_not_the_motion():
    recs = {lv: sa.render_clip("kick", 21, lv) for lv in sa.LEVELS}
    (fe, re_), (_, rm), (fh, rh) = recs["easy"], recs["medium"], recs["hard"]
    for r in (rm, rh):
        assert (
            r["fps"] == re_["fps"] and r["num_frames"] == re_["num_frames"] and r["phases"] == re_["phases"]
        )
        assert np.allclose(r["pose"]["angles"], re_["pose"]["angles"], atol=1e-6)
    assert set(np.unique(fe)) <= {0, 150, 255}  # easy: white figure, grey props, black background
    assert len(np.unique(fh.reshape(-1, 3), axis=0)) > 500  # hard: colours, texture and noise
    seeds = range(12)
    easy = [sa.render_clip("wave", s, "easy", 64)[1]["pose"] for s in seeds]
    hard = [sa.render_clip("wave", s, "hard", 64)[1]["pose"] for s in seeds]
    assert not any(p["mirrored"] for p in easy) and any(p["mirrored"] for p in hard)
    assert np.mean([p["scale"] for p in hard]) < 0.8 * np.mean([p["scale"] for p in easy])
    centre = [p["joints"][:, :, 0].mean() for p in easy]
    assert np.ptp(centre) < 0.15 * 64 < np.ptp([p["joints"][:, :, 0].mean() for p in hard])


def test_ground_truth_describes_the_body():
    jump = sa.render_clip("jump", 1, "easy")[1]["pose"]
    flight = jump["phase"] == 2
    assert not jump["contact"][flight].any() and jump["contact"][0].all()
    assert jump["height"][flight].max() > 1.0 > jump["height"][jump["phase"] == 0].min()
    sit = sa.render_clip("sit", 1, "easy")[1]["pose"]
    hip = sit["angles"][:, sit["angle_names"].index("hip_l")]
    assert hip[0] > 160 and 70 < hip[-1] < 110 and sit["height"][-1] < 0.85 * sit["height"][0]
    assert not sa.render_clip("pullup", 1, "easy")[1]["pose"]["contact"].any()
    assert sa.render_clip("pushup", 1, "easy")[1]["pose"]["contact"].all()


def test_generate_writes_readable_deterministic_clips(tmp_path):
    import decord

    kw = dict(clips_per_class=3, seed=7, classes=["jump", "sit", "stand"], size=64, progress=False)
    out = sa.generate(tmp_path / "a", workers=1, **kw)
    assert out["num_clips"] == 9 and out["counts"] == {"train": 6, "val": 3, "test": 0}  # largest remainder
    n = 0
    for split, path in out["manifests"].items():
        for rec in read_manifest(path):
            assert rec["split"] == split and rec["dataset"] == "synthact"
            vr = decord.VideoReader(rec["video"])
            assert len(vr) == rec["num_frames"] and vr[0].shape == (64, 64, 3)
            pose = sa.load_pose(rec)
            assert len(pose["phase"]) == rec["num_frames"]
            n += 1
    assert n == 9
    sa.generate(tmp_path / "b", workers=2, **kw)
    da, db = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert da == db and sum(k.endswith(".mp4") for k in da) == 9  # byte for byte, any worker count
    # a decoded clip is the rendered one up to compression
    rec = read_manifest(out["manifests"]["train"])[0]
    frames, _ = sa.render_clip(rec["label"], rec["seed"], rec["level"], 64)
    decoded = decord.VideoReader(rec["video"]).get_batch(list(range(rec["num_frames"]))).asnumpy()
    assert np.abs(decoded.astype(int) - frames).mean() < 4


def test_named_splits_never_share_clips(tmp_path):
    out = sa.generate(
        tmp_path, 2, seed=0, splits=(("pretrain", 1.0),), classes=["wave"], size=64, progress=False
    )
    seeds = {r["seed"] for r in read_manifest(out["manifests"]["pretrain"])}
    assert len(seeds) == 2 and Path(out["manifests"]["pretrain"]).name == "manifest_pretrain.jsonl"
    others = {sa.clip_seed(0, s, "wave", i) for s in ("train", "val", "test") for i in range(1000)}
    assert not seeds & others


def test_parse_splits():
    assert sa.parse_splits("train=0.7,val=0.15,test=0.15") == (("train", 0.7), ("val", 0.15), ("test", 0.15))
    assert sa.parse_splits("pretrain") == (("pretrain", 1.0),)
    with pytest.raises(sa.SynthActError, match="look like"):
        sa.parse_splits("train=most")


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: sa.render_clip("dance", 0), "unknown SynthAct class"),
        (lambda: sa.render_clip("jump", 0, "extreme"), "unknown level"),
        (lambda: sa.render_clip("jump", 0, size=111), "even"),
        (lambda: sa.render_clip("jump", -1), "non-negative"),
        (lambda: sa.generate("/nonexistent", 0), "clips_per_class"),
        (lambda: sa.generate("/nonexistent", 2, splits=(("train", 0.5), ("test", 0.4))), "add up to 1"),
        (lambda: sa.generate("/nonexistent", 2, splits=(("a", 0.5), ("a", 0.5))), "distinct"),
        (lambda: sa.generate("/nonexistent", 2, workers=0), "workers"),
    ],
)
def test_bad_arguments_are_clear(call, match):
    with pytest.raises(sa.SynthActError, match=match):
        call()


def test_library_that_does_not_fit_is_rejected(tmp_path):
    bad = {"actions": {k: v for k, v in _library_entries().items() if k != "situp"}}
    path = tmp_path / "lib.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(sa.SynthActError, match="situp"):
        sa.render_clip("jump", 0, library=path)


def test_plots_return_figures(tmp_path):
    from matplotlib.figure import Figure

    from reasonact.viz import plots

    clips = [sa.render_clip(label, 0, "easy", 64) for label in ("sit", "stand")]
    fig = plots.clip_gallery([r for _, r in clips], frames=[f for f, _ in clips], n_frames=6)
    assert isinstance(fig, Figure)
    fig.savefig(tmp_path / "g.png")
    f, r = clips[0]
    assert isinstance(plots.frame_strip(f), Figure)
    assert isinstance(plots.phase_timeline(r["phases"], r["duration_s"]), Figure)
