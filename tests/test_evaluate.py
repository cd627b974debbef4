"""Evaluation: every metric against hand-computed values, resume, damaged clips, the real-layout
protocol end to end on the tiny model, and the `reasonact eval` command."""

import csv
import json
import math

import av
import numpy as np
import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from reasonact.config import EvalConfig
from reasonact.eval import metrics as em
from reasonact.eval.evaluate import (
    COMPLETIONS,
    EvalSettingsError,
    clip_id,
    evaluate,
    read_completions,
    shuffled,
)
from reasonact.video import Video
from reasonact.vlm import decoding_kwargs


def row(clip, seed, label, acc, pred, tp=None, fp=None, fn=None, cond="ordered", **kw):
    base = {k: 0.0 for k in em.SCALARS}
    base.update(clip=clip, seed=seed, condition=cond, label=label, accuracy=acc, predicted=pred,
                sub_tp=tp, sub_fp=fp, sub_fn=fn)  # fmt: skip
    base.update(kw)
    return base


# Two seeds, three clips (a1, a2 of class a; b1 of class b). Hand-computed values below.
ROWS = [
    row("a1", 1, "a", 1, "a", 2, 1, 2, format=1, temporal_consistency=0.5),
    row("a2", 1, "a", 0, "b", 0, 0, 4, format=0, temporal_consistency=0.2),
    row("b1", 1, "b", 1, "b", format=1, temporal_consistency=0.8),
    row("a1", 11, "a", 0, em.NO_ANSWER, 4, 0, 0, format=0, temporal_consistency=0.0),
    row("a2", 11, "a", 0, "b", 1, 1, 3, format=1, temporal_consistency=0.3),
    row("b1", 11, "b", 1, "b", format=1, temporal_consistency=0.6),
]


def test_mean_std_uses_ddof_1_and_ignores_missing():
    assert em.mean_std([1.0, 0.0, 0.5]) == {"mean": 0.5, "std": 0.5, "n": 3}
    assert em.mean_std([0.25, None]) == {"mean": 0.25, "std": 0.0, "n": 1}
    assert em.mean_std([]) == {"mean": None, "std": None, "n": 0}
    by_seed = em.mean_std({1: 0.5, 11: None})  # a mapping keeps its values
    assert by_seed == {"mean": 0.5, "std": 0.0, "n": 1, "per_seed": {1: 0.5, 11: None}}


def test_summarize_hand_computed():
    s = em.summarize(ROWS, seeds=[1, 11], classes=["a", "b"])
    # accuracy per seed: 2/3 and 1/3 -> mean 0.5, std sqrt(2 * (1/6)^2 / 1) = sqrt(1/18)
    assert s["accuracy"]["per_seed"] == pytest.approx({1: 2 / 3, 11: 1 / 3})
    assert s["accuracy"]["mean"] == pytest.approx(0.5)
    assert s["accuracy"]["std"] == pytest.approx(math.sqrt(1 / 18))
    # format rate: 2/3 and 2/3
    assert s["format"]["mean"] == pytest.approx(2 / 3) and s["format"]["std"] == pytest.approx(0.0)
    # temporal consistency: (0.5 + 0.2 + 0.8) / 3 = 0.5 and (0 + 0.3 + 0.6) / 3 = 0.3
    assert s["temporal_consistency"]["per_seed"] == pytest.approx({1: 0.5, 11: 0.3})
    assert s["temporal_consistency"]["mean"] == pytest.approx(0.4)
    # sub-action micro P/R (class b has no ground truth): seed 1 tp 2 fp 1 fn 6 -> P 2/3, R 2/8;
    # seed 11 tp 5 fp 1 fn 3 -> P 5/6, R 5/8
    assert s["subaction_precision"]["per_seed"] == pytest.approx({1: 2 / 3, 11: 5 / 6})
    assert s["subaction_recall"]["per_seed"] == pytest.approx({1: 0.25, 11: 0.625})
    assert s["subaction_precision"]["mean"] == pytest.approx(0.75)
    assert s["subaction_recall"]["mean"] == pytest.approx(0.4375)
    # per class: a = 0.5 (seed 1), 0 (seed 11); b = 1, 1
    assert s["per_class"]["a"]["mean"] == pytest.approx(0.25)
    assert s["per_class"]["a"]["std"] == pytest.approx(math.sqrt(0.125))
    assert s["per_class"]["b"] == {"mean": 1.0, "std": 0.0, "n": 2, "clips": 1}
    # confusion summed over seeds; columns: classes, then the extra predictions
    assert s["confusion"] == {"labels": ["a", "b"], "predicted": ["a", "b", em.NO_ANSWER],
                              "matrix": [[1, 2, 1], [0, 2, 0]]}  # fmt: skip
    assert s["clips"] == 3 and s["completions"] == 6


def test_precision_recall_undefined_without_ground_truth():
    s = em.summarize([row("b1", 1, "b", 1, "b")])
    undefined = {"mean": None, "std": None, "n": 0, "per_seed": {1: None}}
    assert s["subaction_precision"] == s["subaction_recall"] == undefined
    s = em.summarize([row("x", 1, "a", 1, "a", 0, 0, 3)])
    assert s["subaction_precision"]["per_seed"] == {1: None} and s["subaction_recall"]["per_seed"] == {1: 0.0}


def test_combine_splits_averages_folds_per_seed():
    def fold(acc1, acc11, matrix):
        rows = []
        for seed, acc in ((1, acc1), (11, acc11)):
            rows += [
                row(f"c{i}", seed, "a", float(i < acc * 4), "a" if i < acc * 4 else "b") for i in range(4)
            ]
        s = em.summarize(rows, [1, 11], ["a", "b"])
        assert s["confusion"]["matrix"] == matrix
        return {"conditions": {"ordered": s}}

    combined = em.combine_splits(
        {"split1": fold(0.5, 0.25, [[3, 5], [0, 0]]), "split2": fold(1.0, 0.75, [[7, 1], [0, 0]])}
    )
    # per seed: (0.5 + 1) / 2 = 0.75 and (0.25 + 0.75) / 2 = 0.5 -> mean 0.625, std sqrt(2 * 0.125^2)
    assert combined["accuracy"]["per_seed"] == pytest.approx({1: 0.75, 11: 0.5})
    assert combined["accuracy"]["mean"] == pytest.approx(0.625)
    assert combined["accuracy"]["std"] == pytest.approx(math.sqrt(2 * 0.125**2))
    assert combined["confusion"]["matrix"] == [[10, 6], [0, 0]]


def test_write_tables(tmp_path):
    summary = {"conditions": {"ordered": em.summarize(ROWS, [1, 11], ["a", "b"])}}
    paths = em.write_tables(summary, tmp_path)
    table = list(csv.DictReader(open(paths["csv"])))
    assert [r["seed"] for r in table] == ["1", "11", "mean", "std"]
    assert [float(r["accuracy"]) for r in table] == pytest.approx(
        [2 / 3, 1 / 3, 0.5, math.sqrt(1 / 18)], abs=1e-6
    )
    conf = list(csv.reader(open(paths["confusion_ordered"])))
    assert conf == [["true \\ predicted", "a", "b", em.NO_ANSWER], ["a", "1", "2", "1"], ["b", "0", "2", "0"]]
    per_class = [
        (r["label"], r["clips"], r["accuracy_mean"]) for r in csv.DictReader(open(paths["per_class"]))
    ]
    assert per_class == [("a", "2", "0.25"), ("b", "1", "1.0")]
    assert em.fmt_pm(summary["conditions"]["ordered"]["accuracy"]) == "50.0 ± 23.6"
    assert em.fmt_pm({"mean": 0.031, "std": None}, signed=True) == "+3.1 ± 0.0" and em.fmt_pm(None) == "–"


# ---- scoring with the real Scorer (six-class mini library) ----------------------------------------


def test_score_rows_accuracy_prediction_and_subaction_counts(scorer):
    from reasonact.rewards import examples

    lib = scorer.library
    jump, kick = lib.resolve("jump", "synthact"), lib.resolve("kick", "synthact")
    rec, krec = examples.synthetic_record(jump), examples.synthetic_record(kick)
    comps = [
        examples.example_completion(rec, jump, "good"),  # right answer, every sub-action
        examples.example_completion(krec, kick, "good"),  # a kick described on a jump clip
        "no tags at all",
        "<think>It moves.</think><answer>jumping</answer>",  # an alias of the label
        "<think>It moves.</think><answer>a dance</answer>",  # no class of the set
    ]
    rows = em.score_rows([{"completion": c} for c in comps], [rec] * 5, scorer, em.dataset_classes([rec]))
    good, other, none, alias, unknown = rows
    assert (good["accuracy"], good["format"], good["predicted"]) == (1.0, 1.0, "jump")
    # jump has 8 ground-truth sub-actions: all found, none wrong
    assert (good["sub_tp"], good["sub_fp"], good["sub_fn"]) == (8, 0, 0)
    assert (other["accuracy"], other["predicted"]) == (0.0, "kick")
    # the kick chain names kick's 8 sub-actions (false positives) and none of jump's
    assert (other["sub_tp"], other["sub_fp"], other["sub_fn"]) == (0, 8, 8)
    assert set(other["detected"]) == {s.name for s in kick.sub_actions}
    assert (none["format"], none["predicted"], none["sub_fn"]) == (0.0, em.NO_ANSWER, 8)
    assert (alias["accuracy"], alias["predicted"]) == (1.0, "jump")
    assert unknown["predicted"] == em.OTHER
    # real datasets have no phase ground truth: no precision / recall counts
    hm = em.score_rows([{"completion": comps[0]}], [{"label": "jump", "dataset": "hmdb51"}], scorer, ["jump"])
    assert hm[0]["sub_tp"] is None and hm[0]["accuracy"] == 1.0


# ---- pieces of the generation loop ------------------------------------------------------------------


def test_shuffled_frames_are_a_fixed_non_identity_permutation():
    frames = np.arange(16, dtype=np.uint8)[:, None, None, None] * np.ones((1, 4, 4, 3), np.uint8)
    v = Video(frames, list(range(0, 32, 2)), 10.0, 32, "x.mp4")
    a, b = shuffled(v, 1, "clip"), shuffled(v, 1, "clip")
    order = a.frames[:, 0, 0, 0].tolist()
    assert order == b.frames[:, 0, 0, 0].tolist() and sorted(order) == list(range(16))
    assert order != list(range(16)) and a.indices == v.indices
    assert shuffled(v, 11, "clip").frames[:, 0, 0, 0].tolist() != order


def test_clip_keys_do_not_depend_on_where_the_repository_lives(tmp_path):
    """The key seeds the clip's frame shuffle: a subset manifest in a run folder lists the repository's clips,
    whose key is then their path in the repository, not the clone's absolute path."""
    from reasonact.config import REPO_ROOT

    inside = REPO_ROOT / "data" / "synthact_easy" / "test" / "sit" / "sit_00000.mp4"
    assert clip_id({"video": str(inside)}, root=tmp_path) == "data/synthact_easy/test/sit/sit_00000.mp4"
    assert (
        clip_id({"video": str(tmp_path / "a" / "b.mp4")}, root=tmp_path) == "a/b.mp4"
    )  # the manifest's folder
    assert clip_id({"video": "/elsewhere/c.mp4"}, root=tmp_path) == "/elsewhere/c.mp4"


def test_decoding_kwargs(tiny):
    _, processor = tiny
    kw = decoding_kwargs(EvalConfig(), processor)
    (nucleus,) = kw["logits_processor"]  # temperature and top-p live in NucleusWarper; transformers' are off
    assert (nucleus.temperature, nucleus.top_p, nucleus.top_k, kw["max_new_tokens"]) == (0.7, 0.9, 0, 256)
    assert (kw["do_sample"], kw["temperature"], kw["top_p"], kw["top_k"]) == (True, 1.0, 1.0, 0)
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") in kw["suppress_tokens"]
    greedy = decoding_kwargs(EvalConfig(temperature=0), processor)
    assert greedy["do_sample"] is False and "temperature" not in greedy and "logits_processor" not in greedy


def test_read_completions_drops_torn_last_line_only(tmp_path):
    f = tmp_path / COMPLETIONS
    f.write_text('{"clip": "a"}\n{"clip": "b"}\n{"clip": "c", "compl')
    assert [r["clip"] for r in read_completions(f)] == ["a", "b"]
    assert f.read_text() == '{"clip": "a"}\n{"clip": "b"}\n'
    f.write_text('{"clip": "a"}\nnot json\n{"clip": "b"}\n')
    with pytest.raises(ValueError, match=f"{f}:2"):
        read_completions(f)


# ---- the tiny model on real files ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    return model.eval(), AutoProcessor.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def synthact(tmp_path_factory):
    """Jump, sit and stand (the order-only pair), one clip each, plus a truncated mp4."""
    from reasonact.data.manifest import read_manifest, write_manifest
    from reasonact.data.synthact import generate

    out = tmp_path_factory.mktemp("sa")
    summary = generate(out, 1, seed=0, level="easy", size=64, splits=(("test", 1.0),),
                       classes=["jump", "sit", "stand"], workers=1, progress=False)  # fmt: skip
    records = read_manifest(summary["manifests"]["test"], resolve_paths=False)
    good = out / records[0]["video"]
    (out / "broken.mp4").write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    records.insert(1, {**records[0], "video": "broken.mp4"})
    return write_manifest(records, out / "manifest_eval.jsonl")


CFG = EvalConfig(max_new_tokens=4, seeds=[1, 11], batch_size=2)


def _run(tiny, manifest, out, scorer, **kw):
    from reasonact.data.manifest import read_manifest

    model, processor = tiny
    return evaluate(model, processor, read_manifest(manifest), out, CFG, num_frames=16, size=56,
                    scorer=scorer, settings={"model": "tiny-test"}, root=manifest.parent, **kw)  # fmt: skip


def test_evaluate_end_to_end_resume_and_damaged_clip(tiny, synthact, scorer, tmp_path, monkeypatch):
    s = _run(tiny, synthact, tmp_path / "a", scorer)
    assert s["clips"] == 4 and s["evaluated"] == 3
    assert s["skipped"]["count"] == 1 and s["skipped"]["clips"][0]["clip"] == "broken.mp4"
    # 3 clips x 2 seeds ordered + sit, stand x 2 seeds shuffled
    assert s["generated_now"] == 10
    rows = read_completions(tmp_path / "a" / COMPLETIONS)
    assert sorted((r["condition"], r["label"]) for r in rows if r["seed"] == 1) == [
        ("ordered", "jump"), ("ordered", "sit"), ("ordered", "stand"), ("shuffled", "sit"), ("shuffled", "stand")]  # fmt: skip
    assert all(r["new_tokens"] <= 4 and r["latency_s"] > 0 for r in rows)
    assert s["order_only"]["labels"] == ["sit", "stand"]
    assert s["conditions"]["ordered"]["subaction_recall"]["n"] == 2  # SynthAct: ground truth known
    assert len(s["conditions"]["ordered"]["confusion"]["labels"]) == 12  # every SynthAct class
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert (
        on_disk["conditions"]["ordered"]["accuracy"]["mean"] == s["conditions"]["ordered"]["accuracy"]["mean"]
    )

    # Re-running generates nothing: every (clip, seed, condition) is already there.
    model = tiny[0]
    calls = []
    orig = model.generate
    monkeypatch.setattr(model, "generate", lambda *a, **k: calls.append(1) or orig(*a, **k))
    again = _run(tiny, synthact, tmp_path / "a", scorer)
    assert again["generated_now"] == 0 and not calls and again["skipped"]["count"] == 1
    assert len(read_completions(tmp_path / "a" / COMPLETIONS)) == 10
    assert again["conditions"] == s["conditions"]  # the same numbers, from the file alone

    # Interrupted after the first batch, then resumed: only the rest is generated, and the
    # completions are those of the uninterrupted run (seeds are per batch, not per process).
    part = _run(tiny, synthact, tmp_path / "b", scorer, limit=2)
    assert part["generated_now"] == 2
    rest = _run(tiny, synthact, tmp_path / "b", scorer)
    assert rest["generated_now"] == 8
    key = lambda r: (r["clip"], r["seed"], r["condition"])  # noqa: E731
    assert {key(r): r["completion"] for r in read_completions(tmp_path / "b" / COMPLETIONS)} == {
        key(r): r["completion"] for r in rows
    }


def test_resume_with_other_settings_is_an_error(tiny, synthact, scorer, tmp_path):
    _run(tiny, synthact, tmp_path, scorer, limit=1, seeds=[1])
    model, processor = tiny
    from reasonact.data.manifest import read_manifest

    with pytest.raises(EvalSettingsError, match="eval_settings.json.*temperature"):
        evaluate(model, processor, read_manifest(synthact), tmp_path, EvalConfig(temperature=1.0, seeds=[1]),
                 num_frames=16, size=56, scorer=scorer, settings={"model": "tiny-test"}, limit=1)  # fmt: skip


def write_avi(path, frames=20, size=(48, 64)):
    """A real AVI (MPEG-4 part 2), as HMDB51 / UCF-101 ship them: a square crossing the frame."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = size
    with av.open(str(path), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for t in range(frames):
            img = np.zeros((h, w, 3), np.uint8)
            x = int(t / (frames - 1) * (w - 12))
            img[h // 2 - 6 : h // 2 + 6, x : x + 12] = 200
            out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        out.mux(stream.encode())


@pytest.fixture
def hmdb(tmp_path):
    """HMDB51's official layout in miniature: two classes, three videos each, three split files."""
    root, splits = tmp_path / "hmdb51", tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    ids = {1: ["1", "2", "1"], 2: ["2", "1", "1"], 3: ["1", "1", "2"]}  # 2 = test in that fold
    for cls in ("jump", "kick"):
        videos = [f"{cls}_clip_u_nm_np1_fr_med_{i}" for i in range(3)]
        for k, fold_ids in ids.items():
            (splits / f"{cls}_test_split{k}.txt").write_text(
                "".join(f"{v}.avi {i} \n" for v, i in zip(videos, fold_ids))
            )
        for v in videos:
            write_avi(root / cls / f"{v}.avi")
    return root, splits


def test_cli_eval_hmdb51_protocol_three_splits(hmdb, tmp_path, capsys):
    from reasonact.cli import main

    root, splits = hmdb
    out = tmp_path / "ev"
    args = ["eval", "--profile", "tiny", "--protocol", "hmdb51", "--root", str(root), "--splits", str(splits),
            "--seeds", "1", "11", "--set", "eval.max_new_tokens=4", "--set", "eval.efficiency_clips=1",
            "--out", str(out), "--json"]  # fmt: skip
    assert main(args) == 0
    res = json.loads(capsys.readouterr().out)
    assert list(res["results"]) == ["hmdb51_split1", "hmdb51_split2", "hmdb51_split3"]
    for name, r in res["results"].items():
        assert (r["clips"], r["evaluated"], r["skipped"]["count"]) == (2, 2, 0)
        assert r["conditions"]["ordered"]["subaction_recall"]["mean"] is None  # no phase annotation
        assert (out / name / "results.csv").is_file()
    per_fold = [r["conditions"]["ordered"]["accuracy"]["per_seed"]["1"] for r in res["results"].values()]
    assert res["combined"]["accuracy"]["per_seed"]["1"] == pytest.approx(np.mean(per_fold))
    assert len(res["combined"]["confusion"]["labels"]) == 51
    eff = res["efficiency"]
    assert eff["evaluated"]["peak_memory_bytes"] > 0 and eff["latency_ratio"] == 1.0  # stage base = base
    assert json.loads((out / "results.json").read_text())["stage"] == "base"
    # Human-readable output, and a re-run that only reads what is there (efficiency included).
    measured = (out / "efficiency.json").stat().st_mtime_ns
    assert main(args[:-1]) == 0
    assert (out / "efficiency.json").stat().st_mtime_ns == measured
    text = capsys.readouterr().out
    assert "combined (mean over splits)" in text and "0 completions generated now" in text


def test_cli_eval_errors_name_the_file(tmp_path, capsys):
    from reasonact.cli import main

    missing = tmp_path / "nope.jsonl"
    assert main(["eval", "--profile", "tiny", "--manifest", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert str(missing) in capsys.readouterr().err
    run = tmp_path / "run"
    assert (
        main(["eval", "--profile", "tiny", "--run", str(run), "--stage", "vsft", "--manifest", str(missing)])
        == 2
    )
    assert str(run / "04_video_sft" / "adapter") in capsys.readouterr().err


def test_run_eval_stage_merges_adapters_and_compares_with_base(synthact, scorer, tmp_path):
    """A run with FRE and V-SFT adapters: stage vsft merges both (in order), --skip fre leaves FRE out,
    and latency / memory are measured for the merged model and for the base on the same clips."""
    import torch

    from reasonact.config import load_config, parse_overrides
    from reasonact.eval.protocols import run_eval, stage_adapters
    from reasonact.paths import adapter_dir
    from reasonact.vlm import load_model

    recipe = load_config("tiny", parse_overrides(["eval.max_new_tokens=4", "eval.efficiency_clips=2"]))
    run = tmp_path / "run"
    for stage, seed in (("fre", 0), ("vsft", 1)):
        model, _ = load_model(recipe, lora=True)
        torch.manual_seed(seed)
        for name, p in model.named_parameters():
            if "lora_B" in name:  # B starts at zero (a no-op adapter): give it weights
                torch.nn.init.normal_(p, std=0.5)
        model.save_pretrained(adapter_dir(run, stage))
    assert stage_adapters(run, "vsft") == [adapter_dir(run, "fre"), adapter_dir(run, "vsft")]
    assert stage_adapters(run, "vsft", skip=("fre",)) == [adapter_dir(run, "vsft")]
    assert stage_adapters(run, "base") == []
    res = run_eval(recipe, run=run, stage="vsft", manifests=[synthact], seeds=[1], limit=3, scorer=scorer)
    assert res["adapters"] == [str(adapter_dir(run, "fre")), str(adapter_dir(run, "vsft"))]
    assert res["out"] == str(run / "06_evaluation" / "vsft")
    r = res["results"]["manifest_eval"]
    assert (r["evaluated"], r["skipped"]["count"], r["generated_now"]) == (2, 1, 3)  # jump, sit (+ shuffled)
    eff = res["efficiency"]
    assert eff["evaluated"]["clips"] == eff["base"]["clips"] == 2
    assert eff["latency_ratio"] == pytest.approx(
        eff["evaluated"]["latency_s_per_clip"] / eff["base"]["latency_s_per_clip"]
    )
    settings = json.loads(
        (run / "06_evaluation" / "vsft" / "manifest_eval" / "eval_settings.json").read_text()
    )
    assert len(settings["adapter_fingerprints"]) == 2 and all(settings["adapter_fingerprints"])
    # the merged weights really differ from the base's (the adapters are not silently dropped)
    from reasonact.eval.protocols import load_eval_model

    merged, _ = load_eval_model(recipe, stage_adapters(run, "vsft"))
    base, _ = load_eval_model(recipe)
    name = next(n for n, _ in base.named_parameters() if n.endswith("layers.0.self_attn.q_proj.weight"))
    assert not torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])


def test_complete_clips_is_seeded_per_batch_and_leaves_the_caller_alone(tiny):
    """The quick checks' loop: same seed -> same samples, whatever ran before; the caller's random
    stream and the model's train/eval mode are as they were."""
    import torch

    from reasonact.vlm import complete_clips

    model, processor = tiny
    rng = np.random.default_rng(0)
    videos = [
        Video(rng.integers(0, 255, (16, 56, 56, 3), dtype=np.uint8), list(range(16)), 8.0, 16, "noise.mp4")
        for _ in range(3)
    ]
    cfg = EvalConfig(max_new_tokens=6, temperature=1.0, top_p=1.0)
    model.train()
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = complete_clips(model, processor, videos, cfg, seed=5, batch_size=2)
    assert torch.equal(torch.rand(1), expected_next)  # sampling did not consume the caller's stream
    assert model.training  # mode restored
    torch.manual_seed(999)  # a different outer state does not change the samples
    assert complete_clips(model, processor, videos, cfg, seed=5, batch_size=2) == a
    assert len(a) == 3 and complete_clips(model, processor, videos, cfg, seed=6, batch_size=2) != a
    model.eval()
