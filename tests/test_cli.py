"""The `reasonact` command: each subcommand wired to its stage function, errors as `error: ...` + exit 2."""

import json

import pytest

from reasonact.cli import main


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for cmd in ("run", "data", "library", "rewards", "cot", "base", "model"):
        assert cmd in out


def test_library_validate_and_stats(capsys):
    assert main(["library", "validate", "--no-embed", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["actions"] == 552
    assert all(not c["missing"] and not c["alias_collisions"] for c in report["coverage"].values())
    assert main(["library", "stats", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["unique_sub_actions"] > 1000


def test_data_synthact_writes_manifests(tmp_path, capsys):
    out = tmp_path / "sa"
    args = ["data", "synthact", "--out", str(out), "--clips-per-class", "2", "--seed", "3", "--size", "64",
            "--splits", "train=0.5,test=0.5", "--workers", "1", "--json"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["num_clips"] == 2 * len(summary["classes"])
    assert (out / "manifest_train.jsonl").is_file() and (out / "manifest_test.jsonl").is_file()


def test_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["data", "synthact", "--out", str(tmp_path), "--clips-per-class", "0", "--seed", "0"]) == 2
    assert "clips_per_class" in capsys.readouterr().err
    bad = tmp_path / "lib"
    bad.mkdir()
    (bad / "x.yaml").write_text("dataset: nope\nactions: {}\n")
    assert main(["library", "validate", "--dir", str(bad), "--no-embed"]) == 2
    assert str(bad / "x.yaml") in capsys.readouterr().err


def test_rewards_score(tmp_path, capsys):
    from reasonact.data.synthact import render_clip
    from reasonact.library import load_library
    from reasonact.rewards.examples import example_completion

    _, rec = render_clip("jump", 3, "easy", 64)
    action = load_library().resolve("jump", "synthact")
    cols = {k: rec[k] for k in ("label", "dataset", "phases", "fps", "num_frames", "duration_s")}
    lines = [{"completion": example_completion(rec, action, kind), **cols} for kind in ("good", "wrong")]
    f = tmp_path / "c.jsonl"
    f.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["rewards", "score", "--input", str(f), "--json"]) == 0
    good, wrong = json.loads(capsys.readouterr().out)
    assert good["accuracy"] == 1.0 and wrong["accuracy"] == 0.0 and good["total"] > wrong["total"]


def test_ensure_dataset_reuses_then_regenerates(tmp_path):
    from reasonact.config import load_config, parse_overrides
    from reasonact.data.synthact import ensure_dataset

    recipe = load_config(
        "tiny", parse_overrides(["data.synthact_clips_per_class=2", "data.synthact_size=64"])
    )
    first = ensure_dataset(recipe, out_dir=tmp_path / "sa")
    marker = tmp_path / "sa" / "marker"
    marker.write_text("x")
    assert ensure_dataset(recipe, out_dir=tmp_path / "sa") == first and marker.exists()  # reused
    recipe.data.synthact_clips_per_class = 3
    again = ensure_dataset(recipe, out_dir=tmp_path / "sa")
    assert again["num_clips"] > first["num_clips"] and not marker.exists()  # settings changed: regenerated


def test_eval_prints_each_skipped_clip_with_its_cause(monkeypatch, capsys):
    """The console names the first 20 skipped clips and their causes, then the count of the rest."""
    import reasonact.cli as cli

    metric = {"mean": 0.5, "std": 0.1}
    cond = {k: metric for k in ("accuracy", "format", "subaction_precision", "subaction_recall")}
    cond["temporal_consistency"] = metric
    skipped = [{"clip": f"c{i}", "video": f"/data/c{i}.avi", "cause": f"cause {i}"} for i in range(23)]
    result = {"stage": "vsft", "adapters": [], "out": "runs/x", "efficiency": {},
              "results": {"hmdb51_test1": {"clips": 30, "evaluated": 7, "generated_now": 7,
                                           "skipped": {"count": 23, "clips": skipped},
                                           "conditions": {"ordered": cond},
                                           "files": {"json": "runs/x/results.json"}}}}  # fmt: skip
    monkeypatch.setattr(cli, "ensure_model", lambda *a, **k: None)
    monkeypatch.setattr(cli, "run_eval", lambda *a, **k: result)
    assert main(["eval", "--stage", "vsft"]) == 0
    out = capsys.readouterr().out
    assert "7/30 clips evaluated, 23 damaged clips skipped" in out
    assert "skipped /data/c0.avi: cause 0" in out and "skipped /data/c19.avi: cause 19" in out
    assert "/data/c20.avi" not in out and "... and 3 more (all in runs/x/results.json)" in out
