"""Template teacher (valid, varied, both formats), the quality filter (each rule), saving, ``generate_cot``
and the local-model teacher. The mini library of ``rewards.examples`` keeps the encoder work small."""

import json
import re

import numpy as np
import pytest

from reasonact.config import CotFilterConfig, load_config
from reasonact.cot.filter import RULES, filter_chains, generate_cot, save_chains, word_count
from reasonact.cot.teacher import (
    Chain,
    ModelTeacher,
    TemplateTeacher,
    build_prompt,
    clip_id,
    frame_times,
    phase_frames,
)
from reasonact.data.manifest import write_manifest
from reasonact.library import load_library
from reasonact.rewards.basic import format_ok, is_correct
from reasonact.rewards.examples import mini_library, synthetic_record
from reasonact.rewards.parse import parse

N = 16


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return mini_library(tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="module")
def scorer(lib, tmp_path_factory):
    from reasonact.library.embeddings import build_index
    from reasonact.rewards.scorer import Scorer

    return Scorer(lib, build_index(lib, cache_dir=tmp_path_factory.mktemp("emb")))


def records(lib, per_class=3):
    out = []
    for i in range(per_class):
        for a in lib:
            r = synthetic_record(a, duration_s=2.0 + 0.4 * i, fps=12, jitter=0.4, seed=i)
            out.append({**r, "video": f"clips/{a.label}_{i:03d}.mp4", "split": "train"})
    return out


@pytest.fixture(scope="module")
def recs(lib):
    return records(lib)


def test_template_chains_are_correct(lib, recs):
    chains = TemplateTeacher(lib).generate(recs)
    assert [c.clip_id for c in chains] == [clip_id(r) for r in recs]
    for c, r in zip(chains, recs):
        p = parse(c.text)
        assert c.error is None and c.teacher == "template" and c.format == "plain"
        assert format_ok(c.text), c.text
        assert is_correct(p.answer, r["label"], r["dataset"], lib=lib)
        assert p.frame_refs and all(1 <= f.first <= f.last <= N for f in p.frame_refs)
        # one frame reference per phase, in temporal order
        firsts = [f.first for f in p.frame_refs]
        assert firsts == sorted(firsts) and len(firsts) == len(r["phases"])


def test_template_frames_follow_the_phase_windows(lib):
    from reasonact.data.synthact import render_clip

    _, rec = render_clip("jump", seed=7, level="easy", size=64)
    rec = {**rec, "video": "jump.mp4"}
    times = frame_times(rec, N)
    phases = phase_frames(rec, lib, N)
    assert [p["name"] for p in phases] == [p["name"] for p in rec["phases"]]
    for p, w in zip(phases, rec["phases"]):
        inside = [k + 1 for k, t in enumerate(times) if w["start_s"] <= t < w["end_s"]]
        assert (p["first"], p["last"]) == (min(inside), max(inside))
    text = TemplateTeacher(lib).write(rec)
    assert [(f.first, f.last) for f in parse(text).frame_refs] == [(p["first"], p["last"]) for p in phases]


def test_template_chains_vary_and_are_seeded(lib, recs):
    jumps = [r for r in recs if r["label"] == "jump"]
    many = [dict(r, video=f"clips/jump_{i:03d}.mp4") for i, r in enumerate(jumps * 4)]
    texts = [c.text for c in TemplateTeacher(lib).generate(many)]
    assert len(set(texts)) == len(texts)
    # the same sub-action is named in different words across clips
    knee = lib["hmdb51/jump"].phases[0].sub_actions[0].phrasings
    used = {p for t in texts for p in knee if p in t}
    assert len(used) >= 2
    # per-clip seeding: order does not matter, the teacher seed does
    again = TemplateTeacher(lib).generate(many[::-1])[::-1]
    assert [c.text for c in again] == texts
    assert [c.text for c in TemplateTeacher(lib, seed=1).generate(many)] != texts


def test_process_aware_format(lib, recs):
    chains = TemplateTeacher(lib, fmt="process").generate(recs)
    for c, r in zip(chains, recs):
        assert c.format == "process" and format_ok(c.text, process_aware=True) and not format_ok(c.text)
        p = parse(c.text)
        obs = p.region_text("observation")
        assert re.search(r"frames? \d", obs, re.I)  # perception cites frames
        conclusion = p.region_text("think").rsplit(". ", 1)[-1]
        assert r["label"] in conclusion and conclusion not in obs  # the observation stops short of the answer
        assert all(ph["name"].replace("_", " ") in p.region_text("think") for ph in r["phases"])


@pytest.mark.parametrize("fmt", ["plain", "process"])
def test_template_chains_pass_the_filter(lib, recs, scorer, fmt):
    chains = TemplateTeacher(lib, fmt=fmt).generate(recs)
    result = filter_chains(chains, CotFilterConfig(), N, scorer)
    assert result.counts()["kept"] == len(recs), [(r.rule, r.detail) for r in result.rejected]
    # ... and the rewards rank them as they should: correct, well-formed, sub-actions found
    comps = scorer.analyze(
        [c.text for c in chains],
        label=[r["label"] for r in recs],
        dataset=[r["dataset"] for r in recs],
        phases=[r["phases"] for r in recs],
        fps=[r["fps"] for r in recs],
        num_frames=[r["num_frames"] for r in recs],
        num_sampled_frames=[N] * len(recs),
    )
    assert all(a.components["accuracy"] == 1 and a.components["subaction"] > 0.8 for a in comps)


def test_each_rule_rejects_what_it_should(lib, recs, scorer):
    good = {c.record["label"]: c for c in TemplateTeacher(lib).generate(recs[:6])}
    jump = good["jump"]

    def variant(text, i, **kw):
        rec = dict(jump.record, video=f"clips/variant_{i}.mp4")
        return Chain(clip_id(rec), rec, text, kw.pop("fmt", "plain"), "test", **kw)

    think = parse(jump.text).region_text("think")
    sentences = re.split(r"(?<=\.) ", think)
    reversed_phases = " ".join(sentences[:-1][::-1])  # the phase sentences, last phase first
    cases = {
        "error": variant("", 1, error="HTTP 500: server error"),
        "format": variant(f"{think} So the answer is jump.", 2),
        "format_process": variant(jump.text, 3, fmt="process"),  # plain text where process is required
        "answer": variant(jump.text.replace("<answer>jump</answer>", "<answer>kick</answer>"), 4),
        "frames_outside": variant(
            jump.text.replace("Frames 1-", "Frames 0-")
            .replace("frames 1-", "frames 0-")
            .replace(re.findall(r"(\d+-16)", jump.text)[0], "13-17"),
            5,
        ),
        "frames_none": variant(re.sub(r"(?:In |During )?[Ff]rames? [\d-]+:?,?", "", jump.text), 6),
        "length_short": variant(
            "<think>Frames 1-16: he crouches, jumps and lands.</think><answer>jump</answer>", 7
        ),
        "length_long": variant(
            jump.text.replace("</think>", " " + " ".join(sentences[:-1]) * 3 + "</think>"), 8
        ),
        "phase_order": variant(f"<think>{reversed_phases}</think><answer>jump</answer>", 9),
        "phase_missing": variant(
            "<think>Frames 1-16: he moves around a lot in the room, the camera stays still, the "
            "background is dark and nothing else moves, so it looks like a jump to me overall."
            "</think><answer>jump</answer>",
            10,
        ),
        "duplicate": variant(jump.text, 11),
    }
    expected = {
        "format_process": "format",
        "frames_outside": "frames",
        "frames_none": "frames",
        "length_short": "length",
        "length_long": "length",
        "phase_missing": "phase_order",
    }
    result = filter_chains([jump, *cases.values()], CotFilterConfig(), N, scorer)
    got = {r.chain.record["video"]: (r.rule, r.detail) for r in result.rejected}
    for name, c in cases.items():
        assert got[c.record["video"]][0] == expected.get(name, name), (name, got[c.record["video"]], c.text)
    assert result.kept == [jump]
    counts = result.counts()
    assert counts["rejected"] == len(cases) and sum(counts["rejected_by_rule"].values()) == len(cases)
    assert set(counts["rejected_by_rule"]) == set(RULES)
    assert word_count(cases["length_long"].text) > CotFilterConfig().max_words


def test_save_chains(lib, recs, scorer, tmp_path):
    from datasets import load_from_disk

    chains = TemplateTeacher(lib).generate(recs[:6])
    chains.append(Chain("x", dict(recs[0], video="bad.mp4"), "", "plain", "template", error="boom"))
    paths = save_chains(filter_chains(chains, CotFilterConfig(), N, scorer), tmp_path, N)
    ds = load_from_disk(paths["dataset"])
    assert len(ds) == 6
    assert {
        "video",
        "label",
        "dataset",
        "phases",
        "num_frames",
        "num_sampled_frames",
        "chain",
        "format",
    } <= set(ds.column_names)
    row = ds[0]
    assert row["chain"] == chains[0].text and row["num_sampled_frames"] == N and row["format"] == "plain"
    assert row["phases"][0]["name"] == recs[0]["phases"][0]["name"]
    lines = [json.loads(ln) for ln in open(paths["jsonl"])]
    assert [ln["chain"] for ln in lines] == ds["chain"]
    rejected = [json.loads(ln) for ln in open(paths["rejected"])]
    assert [(r["rule"], r["error"]) for r in rejected] == [("error", "boom")]


def test_generate_cot_end_to_end(lib, recs, scorer, tmp_path):
    manifest = write_manifest(recs, tmp_path / "manifest_train.jsonl")
    summary = generate_cot(
        manifest, tmp_path / "cot", teacher="template", fmt="process", limit=12, scorer=scorer
    )
    assert summary["clips"] == 12 and summary["kept"] == 12 and summary["format"] == "process"
    assert summary["rejected_by_rule"] == {r: 0 for r in RULES} and summary["errors"] == 0
    assert sum(summary["kept_per_label"].values()) == 12 and summary["words"]["min"] >= 25
    assert json.loads((tmp_path / "cot" / "summary.json").read_text()) == summary
    rows = [json.loads(ln) for ln in open(summary["paths"]["jsonl"])]
    assert all(format_ok(r["chain"], process_aware=True) for r in rows)
    assert rows[0]["video"].endswith(recs[0]["video"])  # resolved against the manifest's folder


def test_prompt_asks_for_the_structure():
    p = build_prompt("plain", 16, ["jump", "sit_down"])
    assert '"frames a-b"' in p and "phases" in p and "sub-actions" in p and "<think></think>" in p
    assert "jump, sit down" in p and "<observation>" not in p
    assert "<observation></observation>" in build_prompt("process", 16)
    assert "The correct action is jump" in build_prompt("plain", 16, label="jump")
    with pytest.raises(ValueError):
        build_prompt("json")


def test_model_teacher_with_the_tiny_model(tiny_model_dir, tmp_path):
    from reasonact.config import parse_overrides
    from reasonact.data.synthact import render_clip
    from reasonact.video import write_video
    from reasonact.vlm import VISION_TOKENS

    recipe = load_config(
        "tiny", parse_overrides([f"model.name_or_path={tiny_model_dir}", "teacher.max_new_tokens=8"])
    )
    teacher = ModelTeacher.from_recipe(recipe)
    recs_ = []
    for i, label in enumerate(("jump", "wave")):
        frames, rec = render_clip(label, seed=i, level="easy", size=64)
        rec.pop("pose")
        recs_.append(
            {
                **rec,
                "video": str(write_video(tmp_path / f"{label}.mp4", frames, rec["fps"])),
                "split": "train",
            }
        )
    recs_.append({**recs_[0], "video": str(tmp_path / "missing.mp4")})
    chains = teacher.generate(recs_)
    assert [c.record["video"] for c in chains] == [r["video"] for r in recs_]
    assert chains[2].error and "not found" in chains[2].error
    for c in chains[:2]:
        assert c.error is None and c.teacher.startswith("model:") and isinstance(c.text, str)
        assert not any(t in c.text for t in VISION_TOKENS)
    assert np.isfinite(len(chains[0].text))


def test_concise_style_one_sentence_per_phase():
    """The tiny profile's teacher style: "Frames a-b: the person ... (phase)." per phase, then the answer."""
    lib = load_library()
    windows = [("crouch", 0, 0.5), ("takeoff", 0.5, 1), ("flight", 1, 1.5), ("landing", 1.5, 2)]
    phases = [{"name": n, "start_s": a, "end_s": b, "sub_actions": []} for n, a, b in windows]
    rec = {"video": "x.mp4", "label": "jump", "dataset": "synthact", "phases": phases}
    rec.update(fps=10, num_frames=20, duration_s=2.0)
    text = TemplateTeacher(lib, style="concise").write(rec)
    lines = re.findall(r"Frames (\d+)(?:-(\d+))?: the person [^()]+ \(([a-z ]+)\)\.", text)
    assert [name for *_, name in lines] == [p["name"].replace("_", " ") for p in phase_frames(rec, lib)]
    assert text.endswith("</think><answer>jump</answer>") and len(text.split()) < 80
    assert TemplateTeacher(lib, style="concise", fmt="process").write(rec).startswith("<observation>Frames 1")
    with pytest.raises(ValueError, match="style must be full or concise"):
        TemplateTeacher(lib, style="terse")
