"""The paper's tables as experiments: config parsing and its errors, stage sharing and resume with a fake
trainer / evaluator (seconds), the markdown table against hand-made results, and the real wiring
(SFT + T-GRPO + run_eval on the tiny model) on a few steps."""

import json
import math
from pathlib import Path

import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from reasonact.config import REPO_ROOT
from reasonact.eval import tables as xt
from reasonact.eval.experiments import Experiment, ExperimentConfigError, load_table, subset_manifest
from reasonact.eval.metrics import mean_std
from reasonact.paths import STAGES, prior_adapters

TABLE = """
title: Test table
baseline: base
paper_columns: [HMDB51]
rows:
  - {name: base, label: Base, stages: [], paper: [50.0]}
  - {name: sft, label: FRE + V-SFT, stages: [fre, vsft], paper: [60.0]}
  - {name: full, label: Full, stages: [fre, vsft, tgrpo], compare: sft}
  - name: nofmt
    label: No format
    stages: [fre, vsft, {stage: tgrpo, set: {tgrpo.weights.format: 0.0}}]
  - {name: again, label: Full again, stages: [fre, vsft, tgrpo]}
  - {name: direct, label: Direct V-SFT, stages: [vsft]}
"""


def write(tmp_path, text, name="t.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# ---- parsing -------------------------------------------------------------------------------------------


def test_shipped_tables_parse_and_share_stages(tmp_path):
    t1, t2 = load_table("table1"), load_table("table2")
    assert [r.name for r in t1.select()] == ["baseline", "fre", "vsft", "tgrpo", "full"]  # video_r1: optional
    assert [r.name for r in t1.select(["video_r1"])] == ["video_r1"]
    assert len(t2.select()) == 15 and t2.baseline == "baseline"
    plan1 = {p["row"]: p for p in Experiment(t1, "tiny", root=tmp_path).plan()}
    plan2 = {p["row"]: p for p in Experiment(t2, "tiny", root=tmp_path).plan()}
    keys = lambda p: [s["key"] for s in p["stages"]]  # noqa: E731
    # One FRE -> V-SFT under every T-GRPO row; the rows the paper lists with the same numbers are one chain.
    prefix = keys(plan2["fre_vsft"])
    assert all(
        keys(plan2[r])[:2] == prefix for r in ("complete", "no_temporal", "no_subaction", "library_25")
    )
    assert plan2["complete"]["eval"] == plan2["full_reward"]["eval"] == plan2["library_100"]["eval"]
    assert keys(plan1["tgrpo"]) == keys(plan2["no_subaction"])
    assert keys(plan1["full"]) == keys(plan2["complete"])
    assert (
        plan1["full"]["eval"] == plan2["complete"]["eval"]
    )  # same model, same clips: evaluated once for both
    assert keys(plan2["direct_vsft"])[0] != prefix[1] and len(keys(plan2["direct_tgrpo"])) == 1
    distinct = {k for p in plan2.values() for k in keys(p)}
    assert len(distinct) == 2 + 1 + 1 + 9  # fre, vsft; direct vsft; direct tgrpo; 9 tgrpo variants
    assert plan1["full"]["order_eval"] == plan2["complete"]["order_eval"]  # one order probe per model too
    assert plan2["baseline"]["stages"] == [] and not plan2["baseline"]["eval_done"]
    # the baseline row is always evaluated (the paired differences need it)
    assert [p["row"] for p in Experiment(t1, "tiny", root=tmp_path).plan(["full"])] == [
        "baseline",
        "full",
    ] * 3
    assert t1.train_seeds == t2.train_seeds == [1, 2, 3]  # the committed tables' seeds are the tables' own


def test_the_room_table_shares_fre_and_trains_a_shorter_vsft(tmp_path):
    """table2_room: the easy clips with a 200-step V-SFT (T-GRPO has room), all test clips evaluated."""
    room, t2 = load_table("table2_room"), load_table("table2")
    assert [r.name for r in room.select()] == [
        "fre_vsft",
        "full_reward",
        "no_bonus",
        "no_tc",
        "no_subaction",
        "no_temporal",
        "no_format",
    ]
    exp = Experiment(room, "tiny", root=tmp_path)
    assert exp.recipe.vsft.max_steps == 200 and exp.clips_per_class is None and exp.order_clips == 25
    plan = {p["row"]: [s["key"] for s in p["stages"]] for p in exp.plan()}
    easy = {p["row"]: [s["key"] for s in p["stages"]] for p in Experiment(t2, "tiny", root=tmp_path).plan()}
    assert all(keys[:2] == plan["fre_vsft"] for keys in plan.values())  # one FRE -> V-SFT under every row
    assert plan["fre_vsft"][0] == easy["fre_vsft"][0] and plan["fre_vsft"][1] != easy["fre_vsft"][1]
    assert len({keys[2] for row, keys in plan.items() if row != "fre_vsft"}) == 6


@pytest.mark.parametrize(
    "rows, message",
    [
        ("- {name: a, stages: [sft]}", "row 'a' (#1): unknown stage 'sft'"),
        (
            "- {name: a, stages: [vsft, fre]}",
            "row 'a' (#1): stages ['vsft', 'fre'] must be in curriculum order",
        ),
        (
            "- {name: a, stages: [fre, fre]}",
            "row 'a' (#1): stages ['fre', 'fre'] must be in curriculum order",
        ),
        (
            "- {name: a, stages: [{stage: tgrpo, set: {vsft.max_steps: 3}}]}",
            "row 'a' (#1), stage tgrpo: 'vsft.max_steps' is not in the tgrpo",
        ),
        (
            "- {name: a, stages: [{stage: tgrpo, set: {tgrpo.max_stepz: 3}}]}",
            "row 'a' (#1), stage tgrpo: unknown recipe key 'tgrpo.max_stepz'",
        ),
        (
            "- {name: a, stages: [{stage: tgrpo, set: {tgrpo.weights.speed: 1}}]}",
            "row 'a' (#1), stage tgrpo: 'tgrpo.weights.speed': unknown reward component",
        ),
        (
            "- {name: a, stages: [{stage: vsft, set: {vsft.from_fre: false}}]}",
            "row 'a' (#1), stage vsft: 'vsft.from_fre' may not be set",
        ),
        (
            "- {name: a, stages: [{stage: fre, library_fraction: 0.5}]}",
            "row 'a' (#1): library_fraction applies to the T-GRPO",
        ),
        (
            "- {name: a, stages: [{stage: tgrpo, library_fraction: 0}]}",
            "row 'a' (#1): library_fraction must be in",
        ),
        ("- {name: a, stages: [{stage: tgrpo, lr: 1}]}", "row 'a' (#1): unknown key 'lr'"),
        ("- {name: a, stage: [fre]}", "row 'a' (#1): unknown key 'stage'"),
        ("- {name: a}", "row 'a' (#1): 'stages' is required"),
        ("- {label: x, stages: []}", "row #1: 'name' is required"),
        ("- {name: a, stages: []}\n  - {name: a, stages: [fre]}", "row 'a' (#2): the name is used twice"),
        ("- {name: a, stages: [], paper: [x]}", "row 'a' (#1): 'paper' must be float, got 'x'"),
        ("- {name: a, stages: [], compare: z}", "row 'a' (#1): compare must name another row, got 'z'"),
        ("- {name: a, stages: [], compare: a}", "row 'a' (#1): compare must name another row, got 'a'"),
    ],
)
def test_bad_row_names_file_and_row(tmp_path, rows, message):
    path = write(tmp_path, "rows:\n  " + rows + "\n")
    with pytest.raises(ExperimentConfigError) as e:
        load_table(path)
    assert str(e.value).startswith(f"{path}: ") and message in str(e.value), str(e.value)


def test_bad_table_level_settings(tmp_path):
    for text, msg in [
        ("set: {eval.seeds: [1]}\nrows: [{name: a, stages: []}]", "'eval.seeds' may not be set"),
        (
            "set: {eval.tempreature: 0}\nrows: [{name: a, stages: []}]",
            "unknown recipe key 'eval.tempreature'",
        ),
        ("baseline: b\nrows: [{name: a, stages: []}]", "no row 'b'"),
        ("eval: {seeds: [1]}\nrows: [{name: a, stages: []}]", "unknown key 'eval.seeds'"),
        (
            "eval: {clips_per_class: 0}\nrows: [{name: a, stages: []}]",
            "eval.clips_per_class must be a positive",
        ),
        (
            "eval: {order_clips_per_class: 0}\nrows: [{name: a, stages: []}]",
            "eval.order_clips_per_class must be a positive",
        ),
        ("rows: []", "'rows' must be a non-empty list"),
        ("train_seeds: [1, x]\nrows: [{name: a, stages: []}]", "'train_seeds' must be int, got 'x'"),
        ("train_seeds: []\nrows: [{name: a, stages: []}]", "train_seeds must be a non-empty list"),
        ("colour: red\nrows: [{name: a, stages: []}]", "unknown key 'colour'"),
    ]:
        path = write(tmp_path, text)
        with pytest.raises(ExperimentConfigError, match=msg):
            load_table(path)
    with pytest.raises(ExperimentConfigError, match="table9.yaml: experiment table not found"):
        load_table("table9")
    with pytest.raises(ExperimentConfigError, match="no row 'nope'"):
        load_table("table1").select(["nope"])


def test_stage_overrides_keep_the_other_reward_weights(tmp_path):
    exp = Experiment(load_table(write(tmp_path, TABLE)), "tiny", root=tmp_path)
    node = exp.chain(exp.spec.row("nofmt"))
    assert node.recipe.tgrpo.weights == {**exp.recipe.tgrpo.weights, "format": 0.0}
    assert node.parent.recipe.tgrpo.weights == exp.recipe.tgrpo.weights  # only the stage's own recipe changes
    assert [n.stage for n in node.lineage()] == ["fre", "vsft", "tgrpo"]
    sft = exp.chain(exp.spec.row("sft"))
    quiet = Experiment(
        exp.spec, "tiny", {"vsft.logging_steps": 1, "vsft.eval_steps": 7, "vsft.save_steps": 3}
    )
    assert (
        quiet.chain(exp.spec.row("sft")).key == sft.key
    )  # logging and checkpoints do not change the weights
    other = Experiment(exp.spec, "tiny", {"vsft.learning_rate": 1e-4}).chain(exp.spec.row("sft"))
    assert other.key != sft.key and other.parent.key == sft.parent.key  # FRE is still shared
    seeded = exp.chain(exp.spec.row("full"), train_seed=7)
    assert seeded.recipe.tgrpo.seed == 7 and seeded.key != exp.chain(exp.spec.row("full")).key


# ---- the runner with a fake trainer and evaluator -------------------------------------------------------


class Fakes:
    """Trainer: writes the stage's adapter and records what the run folder holds from earlier stages.
    Evaluator: accuracy per seed = 0.1 x (adapters merged) + 0.01 x seed index (hand-computable)."""

    def __init__(self, fail_on=None):
        self.trained, self.evaluated, self.manifests, self.fail_on = [], [], [], fail_on

    def train(self, stage, recipe, run, **kw):
        if stage == self.fail_on:
            raise RuntimeError(f"{stage} interrupted")
        self.trained.append({"stage": stage, "run": run.name, "format_weight": recipe.tgrpo.weights["format"],
                             "earlier": [p.parent.name for p in prior_adapters(run, stage)]})  # fmt: skip
        adapter = run / STAGES[stage] / "adapter"
        adapter.mkdir(parents=True)
        (adapter / "adapter_config.json").write_text("{}")
        if stage == "tgrpo":  # the logged bonus share: 0.25 then 0.75 (0.1 each without the format reward)
            shares = [0.25, 0.75] if recipe.tgrpo.weights["format"] else [0.1, 0.1]
            curve = [{"step": i, "tgrpo/bonus_group_share": v} for i, v in enumerate(shares)] + [{"step": 9}]
            (run / STAGES[stage] / "metrics.json").write_text(json.dumps({"curve": curve}))
        return {"steps": 3, "train_seconds": 0.1}

    def evaluate(self, recipe, run, stage, out, manifest, progress):
        self.manifests.append(manifest)
        from reasonact.eval.protocols import stage_adapters

        n = len(stage_adapters(run, stage))
        self.evaluated.append((stage, n))
        acc = {s: 0.1 * n + 0.01 * i for i, s in enumerate(recipe.eval.seeds)}
        stat = mean_std(acc)
        cond = {"accuracy": stat, "format": stat, "subaction_recall": stat, "temporal_consistency": stat}
        order = {
            "labels": ["sit", "stand"],
            "ordered": stat,
            "shuffled": {**stat, "per_seed": {s: 0.5 for s in acc}},
        }
        # the completions behind those numbers: 100 clips per seed, the first round(100 * acc) right
        rows = [{"clip": f"c{c:02d}", "seed": s, "condition": "ordered", "label": "sit" if c < 10 else "jump",
                 "accuracy": float(c < round(100 * a))} for s, a in acc.items() for c in range(100)]  # fmt: skip
        rows += [{**r, "condition": "shuffled", "accuracy": float(int(r["clip"][1:]) % 2)} for r in rows[:10]]
        (Path(out) / "synthact_test").mkdir(parents=True, exist_ok=True)
        (Path(out) / "synthact_test" / "completions.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
        return {"results": {"synthact_test": {"evaluated": 4, "skipped": {"count": 0}, "conditions": {"ordered": cond},
                                              "order_only": order}}, "out": str(out)}  # fmt: skip


def experiment(tmp_path, fakes, **kw):
    return Experiment(load_table(write(tmp_path, TABLE)), "tiny", root=tmp_path / "xp", train=fakes.train,
                      evaluate=fakes.evaluate, log=None, **kw)  # fmt: skip


def test_shared_prefixes_are_trained_once_and_chains_merge_their_adapters(tmp_path):
    fakes = Fakes()
    table = experiment(tmp_path, fakes).run()
    stages = [(t["stage"], t["earlier"]) for t in fakes.trained]
    assert stages == [
        ("fre", []),
        ("vsft", ["03_fre"]),
        ("tgrpo", ["03_fre", "04_video_sft"]),  # the links to the shared folders are merged
        ("tgrpo", ["03_fre", "04_video_sft"]),  # nofmt: another key, same prefix
        ("vsft", []),  # direct V-SFT: no FRE in its chain
    ]
    assert [t["format_weight"] for t in fakes.trained if t["stage"] == "tgrpo"] == [0.25, 0.0]
    # full and again are the same chain: one evaluation; base, sft, full, nofmt, direct -> 5
    assert sorted(fakes.evaluated) == [("base", 0), ("tgrpo", 3), ("tgrpo", 3), ("vsft", 1), ("vsft", 2)]
    rows = {r["name"]: r for r in table["rows"]}
    assert rows["again"]["keys"] == rows["full"]["keys"]
    assert rows["full"]["accuracy"]["mean"] == pytest.approx(0.32)  # 0.3 + mean(0, .01, .02, .03, .04)
    assert rows["full"]["delta"]["mean"] == pytest.approx(0.3) and rows["full"]["delta"][
        "std"
    ] == pytest.approx(0)
    assert rows["direct"]["delta"]["mean"] == pytest.approx(0.1)
    assert fakes.manifests == [None] * 5  # the whole test split (the protocol's default)
    out = tmp_path / "xp" / "t_tiny"
    assert {p.name for p in out.iterdir()} == {"table.md", "results.json", "accuracy.png", "summary.json"}
    assert json.loads((out / "results.json").read_text())["rows"][2]["accuracy"]["mean"] == pytest.approx(
        0.32
    )


def test_resume_skips_finished_rows_and_finishes_interrupted_ones(tmp_path):
    broken = Fakes(fail_on="tgrpo")
    with pytest.raises(RuntimeError, match="tgrpo interrupted"):
        experiment(tmp_path, broken).run()
    assert [t["stage"] for t in broken.trained] == ["fre", "vsft"] and len(broken.evaluated) == 2  # base, sft
    fakes = Fakes()
    first = experiment(tmp_path, fakes).run()
    assert [t["stage"] for t in fakes.trained] == ["tgrpo", "tgrpo", "vsft"]  # only what was missing
    assert len(fakes.evaluated) == 3
    again = Fakes()
    second = experiment(tmp_path, again).run()
    assert again.trained == [] and again.evaluated == []  # nothing is retrained or re-evaluated
    assert [r["accuracy"] for r in second["rows"]] == [r["accuracy"] for r in first["rows"]]
    assert all(s["done"] for p in experiment(tmp_path, again).plan() for s in p["stages"])


def test_clips_per_class_evaluates_a_stratified_subset(tmp_path):
    from reasonact.data.manifest import read_manifest, write_manifest

    fakes = Fakes()
    whole = experiment(tmp_path, fakes).plan(["base"])[0]["eval"]
    exp = experiment(tmp_path, fakes, clips_per_class=2)
    assert exp.plan(["base"])[0]["eval"] != whole  # another evaluation, never mixed with the full one
    exp.run(rows=["base"])
    records = read_manifest(fakes.manifests[0])
    labels = [r["label"] for r in records]
    assert len(set(labels)) == 12 and all(labels.count(x) == 2 for x in set(labels))
    assert {"sit", "stand"} <= set(labels)
    again = Fakes()
    experiment(tmp_path, again, clips_per_class=2).run(rows=["base"])
    assert again.evaluated == []  # the subset's evaluation is reused too
    # a list another checkout wrote (a copied --root) points at that checkout's clips: written again
    path = Path(fakes.manifests[0])
    write_manifest([{**r, "video": f"/another/checkout/{Path(r['video']).name}"} for r in records], path)
    assert subset_manifest(exp.recipe, 2, path.parent) == path and read_manifest(path) == records


class ProbeFakes(Fakes):
    """The order probe's evaluations: every ordered clip right, shuffled ones right at odd clip numbers."""

    def evaluate(self, recipe, run, stage, out, manifest, progress):
        if manifest is None or not Path(manifest).name.startswith("synthact_order"):
            return super().evaluate(recipe, run, stage, out, manifest, progress)
        from reasonact.data.manifest import read_manifest

        self.manifests.append(manifest)
        clips = read_manifest(manifest)
        rows = [{"clip": Path(c["video"]).stem, "seed": s, "condition": cond, "label": c["label"],
                 "accuracy": float(cond == "ordered" or i % 2)}
                for s in recipe.eval.seeds for i, c in enumerate(clips) for cond in ("ordered", "shuffled")]  # fmt: skip
        (Path(out) / "synthact_order").mkdir(parents=True, exist_ok=True)
        (Path(out) / "synthact_order" / "completions.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in rows)
        )
        one, half = (
            mean_std(dict.fromkeys(recipe.eval.seeds, 1.0)),
            mean_std(dict.fromkeys(recipe.eval.seeds, 0.5)),
        )
        order = {"labels": ["sit", "stand"], "ordered": one, "shuffled": half}
        cond = {"accuracy": half}  # not what the table reads from a probe
        return {"results": {"synthact_order": {"evaluated": len(clips), "conditions": {"ordered": cond},
                                               "order_only": order}}, "out": str(out)}  # fmt: skip


def test_the_order_probe_renders_its_own_clips_and_feeds_the_sit_stand_columns(tmp_path):
    """eval.order_clips_per_class: N new clips of each order-only label, disjoint from the test split,
    rendered once; the sit/stand columns (and their intervals) come from the probe, accuracy does not."""
    from reasonact.data.manifest import read_manifest
    from reasonact.data.synthact import ensure_dataset

    fakes = ProbeFakes()
    exp = experiment(tmp_path, fakes, order_clips=4)
    plan = exp.plan(["base"])[0]
    assert plan["order_eval"] and plan["order_eval"] != plan["eval"] and not plan["eval_done"]
    table = exp.run(rows=["base", "full"])
    probes = [m for m in fakes.manifests if m and Path(m).name.startswith("synthact_order")]
    assert len(probes) == 2 and len(set(probes)) == 1  # one clip set, one probe per model
    clips = read_manifest(probes[0])
    assert sorted(c["label"] for c in clips) == ["sit"] * 4 + ["stand"] * 4 and {
        c["split"] for c in clips
    } == {"order"}
    test = read_manifest(ensure_dataset(exp.recipe)["manifests"]["test"])
    assert not {c["seed"] for c in clips} & {c["seed"] for c in test}  # never a test clip again
    full = {r["name"]: r for r in table["rows"]}["full"]
    assert full["order_ordered"]["mean"] == 1.0 and full["order_ordered"]["ci95"] == [1.0, 1.0]
    assert full["order_shuffled"]["mean"] == 0.5 and full["order_shuffled"]["ci95"][0] < 0.5
    assert full["accuracy"]["mean"] == pytest.approx(0.32) and full["order_clips"] == [8]
    summary = json.loads((tmp_path / "xp" / "t_tiny" / "summary.json").read_text())
    assert summary["order_clips"] == [8] and summary["rows"]["full"]["sit_stand_shuffled"]["mean"] == 50.0
    assert (
        "the order probe, 4 freshly rendered clips each of sit and stand"
        in (tmp_path / "xp" / "t_tiny" / "table.md").read_text()
    )
    assert len(xt.accuracy_figure(table).axes) == 2  # accuracy, and the pair ordered vs shuffled
    no_pair = {**table, "rows": [{**r, "order_ordered": None, "order_shuffled": None} for r in table["rows"]]}
    assert len(xt.accuracy_figure(no_pair).axes) == 1
    again = ProbeFakes()
    experiment(tmp_path, again, order_clips=4).run(rows=["base", "full"])
    assert again.evaluated == [] and again.manifests == []  # probes are reused like evaluations
    off = experiment(tmp_path, ProbeFakes(), order_clips=0)
    assert off.plan(["base"])[0]["order_eval"] is None and off.plan(["base"])[0]["eval_done"]


def test_training_seeds_pair_each_run_with_the_baseline(tmp_path):
    fakes = Fakes()
    table = experiment(tmp_path, fakes, train_seeds=[1, 2]).run(rows=["base", "sft"])
    assert [t["stage"] for t in fakes.trained] == ["fre", "vsft", "fre", "vsft"]
    assert len(fakes.evaluated) == 3  # the base is the same model for both training seeds
    sft = table["rows"][1]
    assert len(sft["accuracy"]["per_seed"]) == 10 and "1/1" in sft["accuracy"]["per_seed"]
    assert sft["delta"]["mean"] == pytest.approx(0.2) and sft["train_seed_std"] == pytest.approx(0)


class TimedFakes(Fakes):
    """Fakes whose training takes 0.5 s and appends [stage, start, end] to the file ``spans``: picklable,
    so that the processes of ``jobs=2`` can run it (what they record in memory stays there)."""

    def __init__(self, spans, fail_on=None):
        super().__init__(fail_on)
        self.spans = str(spans)

    def train(self, stage, recipe, run, **kw):
        import time

        start = time.time()
        time.sleep(0.5)
        out = super().train(stage, recipe, run, **kw)
        with open(self.spans, "a") as f:
            f.write(json.dumps([stage, start, time.time()]) + "\n")
        return out


def test_jobs_side_by_side_give_the_serial_table(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    serial = experiment(tmp_path / "a", TimedFakes(tmp_path / "a.log")).run()
    both = experiment(tmp_path / "b", TimedFakes(tmp_path / "b.log"), jobs=2).run()
    keep = ("name", "keys", "accuracy", "delta", "order_shuffled")
    assert [{k: r[k] for k in keep} for r in both["rows"]] == [
        {k: r[k] for k in keep} for r in serial["rows"]
    ]
    spans = [json.loads(line) for line in (tmp_path / "b.log").read_text().splitlines()]
    assert sorted(s[0] for s in spans) == ["fre", "tgrpo", "tgrpo", "vsft", "vsft"]  # each stage once
    # stages that need nothing from each other (FRE, the direct V-SFT; later the T-GRPO pair) overlap in time
    assert any(a[1] < b[2] and b[1] < a[2] for a in spans for b in spans if a is not b), spans


def test_a_failing_job_names_the_error_and_keeps_what_finished(tmp_path):
    with pytest.raises(RuntimeError, match="failed: tgrpo interrupted"):
        experiment(tmp_path, TimedFakes(tmp_path / "spans", fail_on="tgrpo"), jobs=2).run()
    done = {s["stage"] for p in experiment(tmp_path, Fakes()).plan() for s in p["stages"] if s["done"]}
    assert done == {"fre", "vsft"}  # a rerun trains only the T-GRPO stages


def test_jobs_refuse_unknown_dependencies_and_cycles():
    from reasonact.eval.parallel import run_jobs

    with pytest.raises(ValueError, match="unknown jobs: \\['c'\\]"):
        run_jobs({"a": (print,)}, {"a": ["c"]}, workers=2)
    with pytest.raises(ValueError, match="can never start"):
        run_jobs({"a": (print,), "b": (print,)}, {"a": ["b"], "b": ["a"]}, workers=2)


def test_jobs_start_the_longest_waiting_chain_first():
    from reasonact.eval.parallel import run_jobs

    started = []
    jobs = {name: (abs, 1) for name in ["eval1", "eval2", "fre", "vsft", "eval3"]}
    run_jobs(jobs, {"vsft": ["fre"], "eval3": ["vsft"]}, workers=1, log=started.append)
    # in the given order the evaluations would go first and the training chain would run last, alone
    names = [s.split(":")[0].removeprefix("[jobs] ") for s in started]
    assert names == ["fre", "vsft", "eval1", "eval2", "eval3"]


def test_the_schedule_replay_reads_each_jobs_time_from_its_folder(tmp_path):
    """bench/schedule.py on a finished run: every stage and evaluation of the table has its recorded time, and
    ``since`` keeps only the jobs finished after that moment."""
    import time

    from bench.schedule import job_seconds
    from reasonact.eval.parallel import experiment_jobs

    exp = experiment(tmp_path, Fakes(), order_clips=4)
    exp.run()
    jobs, after = experiment_jobs(exp, exp.rows(None), skip_done=False)
    assert experiment_jobs(exp, exp.rows(None)) == ({}, {})  # everything done
    seconds, unmeasured = job_seconds(exp, jobs)
    assert set(seconds) == set(jobs) and not unmeasured and all(s >= 0 for s in seconds.values())
    assert any(n.startswith("eval-") for n in seconds) and any(n.startswith("tgrpo-") for n in seconds)
    assert job_seconds(exp, jobs, since=time.time() + 60) == ({}, [])


def test_a_job_prints_to_stderr(capfd):
    """A worker's stdout is its stderr, so a `--json` command's stdout stays one JSON object (capfd sees the
    spawned process's file descriptors, which it inherits)."""
    from reasonact.eval.parallel import run_jobs

    run_jobs({"a": (print, "a trainer's log line")}, {}, workers=1, log=lambda *a: None)
    out, err = capfd.readouterr()
    assert "a trainer's log line" in err and "a trainer's log line" not in out


def _hold_lock(target, spans):
    import time

    from reasonact.paths import locked

    with locked(target):
        start = time.time()
        time.sleep(0.3)
        with open(spans, "a") as f:
            f.write(json.dumps([start, time.time()]) + "\n")


def test_one_process_at_a_time_holds_a_lock(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hold_lock, args=(tmp_path / "data", tmp_path / "spans")) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    spans = sorted(json.loads(line) for line in (tmp_path / "spans").read_text().splitlines())
    assert len(spans) == 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no two overlap


def test_a_trainer_that_writes_no_adapter_is_an_error(tmp_path):
    fakes = Fakes()
    fakes.train = lambda stage, recipe, run, **kw: {}
    with pytest.raises(RuntimeError, match="03_fre/adapter/adapter_config.json"):
        experiment(tmp_path, fakes).run(rows=["sft"])


# ---- the markdown table from hand-made results ----------------------------------------------------------


def _run(row, accs, shuffled=None):
    stat = lambda v: {"per_seed": dict(zip(["1", "11", "21"], v))}  # noqa: E731
    metrics = {
        "accuracy": stat(accs),
        "format": stat([1.0, 1.0, 0.5]),
        "c_bind": stat([0.2, 0.4, 0.6]),
        "clips": 36,
    }
    if shuffled:
        metrics["order_only"] = {"ordered": stat(accs), "shuffled": stat(shuffled)}
    return {"row": row, "train_seed": None, "stages": [{"key": f"k-{row}", "seconds": 10.0}],
            "eval": {"key": f"e-{row}", "seconds": 5.0, "metrics": metrics}}  # fmt: skip


def test_markdown_table_against_hand_made_results(tmp_path):
    spec = load_table(write(tmp_path, """
title: Hand-made
paper_columns: [HMDB51, UCF-101]
rows:
  - {name: b, group: Paradigm, label: Baseline, stages: [], paper: [49.3, 78.3]}
  - {name: s, group: Paradigm, label: SFT, stages: [vsft], paper: [53.1, 82.5]}
  - {name: t, group: Rewards, label: RL, stages: [tgrpo], compare: s}
"""))  # fmt: skip
    results = [
        _run("b", [0.5, 0.6, 0.4], [0.5, 0.5, 0.5]),
        _run("s", [0.7, 0.6, 0.8]),
        _run("t", [0.5, 0.9, 0.4]),
    ]
    table = xt.build_table(spec, spec.select(), results)
    text = xt.render_markdown(table)
    lines = text.splitlines()
    assert lines[0] == "# Hand-made"
    assert "| Configuration | Accuracy (%) | Δ vs baseline (points, paired) | Format (%) |" in text
    assert "| *Paradigm* |" in text and "| *Rewards* |" in text
    # baseline: mean 50.0, std 10.0 (ddof 1); format mean 5/6
    assert (
        "| Baseline | 50.0 ± 10.0 | – | 83.3 ± 28.9 | – | – | 40.0 ± 20.0 | – | 50.0 ± 10.0 | 50.0 ± 0.0 | – | 49.3 / 78.3 |"
        in lines
    )
    # SFT: 70.0 ± 10.0; paired differences +20, 0, +40 -> +20.0 ± 20.0
    assert (
        "| SFT | 70.0 ± 10.0 | +20.0 ± 20.0 | 83.3 ± 28.9 | – | – | 40.0 ± 20.0 | – | – | – | – | 53.1 / 82.5 (+3.8) |"
        in lines
    )
    # RL: 60.0 ± 26.5; differences 0, +30, 0 -> +10.0 ± 17.3; no paper numbers
    assert (
        "| RL | 60.0 ± 26.5 | +10.0 ± 17.3 | 83.3 ± 28.9 | – | – | 40.0 ± 20.0 | – | – | – | – | – |" in lines
    )
    # RL minus SFT, paired by seed: -20, +30, -40 -> -10.0 ± 36.1; no completions, so no interval
    assert "| RL | SFT | -10.0 ± 36.1 | – | – | – | – | – |" in lines  # no order-only pair either
    assert "| Configuration | 1 | 11 | 21 |" in text
    assert "| SFT | 70.0 (+20.0) | 60.0 (+0.0) | 80.0 (+40.0) |" in lines
    assert table["rows"][2]["accuracy"]["std"] == pytest.approx(math.sqrt(((0.1) ** 2 + 0.3**2 + 0.2**2) / 2))
    assert table["compute_seconds"] == 3 * 10.0 + 3 * 5.0  # three stages, three evaluations
    files = xt.write_outputs(table, tmp_path / "out")
    assert (tmp_path / "out" / "table.md").read_text() == text and files["figure"].endswith("accuracy.png")


# ---- the CLI -----------------------------------------------------------------------------------------


def test_cli_dry_run_and_errors(tmp_path, capsys):
    from reasonact.cli import main

    assert main(["experiments", "table2", "--dry-run", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 15 * 3 and out[0].startswith("baseline: base | eval-")  # 3 training seeds
    assert all(" + order probe eval-" in line for line in out)  # the shipped tables' order probe
    assert (
        main(["experiments", "table2", "--dry-run", "--root", str(tmp_path), "--order-clips-per-class", "0"])
        == 0
    )
    assert not any("order probe" in line for line in capsys.readouterr().out.splitlines())  # 0: off
    bad = write(tmp_path, "rows:\n  - {name: oops, stages: [fre, fre]}\n")
    assert main(["experiments", str(bad), "--dry-run"]) == 2
    assert f"{bad}: row 'oops' (#1)" in capsys.readouterr().err
    assert main(["experiments", "table1", "--rows", "nope", "--dry-run"]) == 2
    assert "no row 'nope'" in capsys.readouterr().err


# ---- the real trainers and evaluation, a few steps -----------------------------------------------------


@pytest.mark.slow
def test_real_stages_end_to_end(tmp_path, capsys):
    """FRE (2 steps on hand-written rows) -> T-GRPO (1 step) on the tiny model, evaluated with run_eval on
    one test clip per class: the CLI writes the table, and a second invocation reuses everything."""
    from reasonact.cli import main

    fre = tmp_path / "fre.jsonl"
    fre.write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": f"What is {i} + {i}?"},
        {"role": "assistant", "content": f"<think>{i} and {i} make {2 * i}.</think><answer>{2 * i}</answer>"}]}) + "\n"
        for i in range(8)))  # fmt: skip
    table = write(tmp_path, "rows:\n  - {name: base, stages: []}\n  - {name: fre, stages: [fre]}\n"
                            "  - {name: rl, stages: [fre, tgrpo]}\n")  # fmt: skip
    args = ["experiments", str(table), "--root", str(tmp_path / "xp"), "--clips-per-class", "1", "--json",
            "--set", f"fre.data={fre}", "--set", "fre.max_steps=2", "--set", "fre.per_device_train_batch_size=2",
            "--set", "tgrpo.max_steps=1", "--set", "tgrpo.max_completion_length=8", "--set", "tgrpo.eval_clips=0",
            "--set", "eval.max_new_tokens=8", "--set", "eval.seeds=[1, 11]", "--set", "eval.efficiency_clips=1"]  # fmt: skip
    assert main([*args, "--jobs", "2"]) == 0  # two processes (spawned: the real stages, pickled)
    result = json.loads(capsys.readouterr().out)
    rows = {r["name"]: r for r in result["rows"]}
    assert rows["base"]["clips"] == [12] and set(rows["base"]["accuracy"]["per_seed"]) == {"1", "11"}
    assert rows["base"]["order_shuffled"]["mean"] is not None  # sit and stand are among the clips
    lo, hi = rows["base"]["accuracy"]["ci95"]  # bootstrapped from the real completions (12 clips x 2 seeds)
    assert 0 <= lo <= rows["base"]["accuracy"]["mean"] <= hi <= 1
    assert (tmp_path / "xp" / "t_tiny" / "table.md").read_text().startswith("# t (tiny profile)")
    stages = tmp_path / "xp" / "_stages"
    rl = stages / rows["rl"]["keys"][0][1]
    assert (rl / "03_fre").is_symlink() and (rl / "05_tgrpo" / "adapter" / "adapter_config.json").is_file()
    settings = json.loads(next((tmp_path / "xp" / "_evals").glob(f"{rows['rl']['keys'][0][2]}/*/eval_settings.json"))
                          .read_text())  # fmt: skip
    assert [a.split("/")[-2] for a in settings["adapters"]] == ["03_fre", "05_tgrpo"]
    assert len(list(stages.iterdir())) == 2  # fre (shared by two rows) and tgrpo
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "trained before, reused" in err and "training" not in err and "evaluated before" in err


def test_rows_carry_bootstrap_intervals_and_the_summary_json(tmp_path):
    """Every row's accuracy and paired difference get a 95% interval from the completions; summary.json
    holds the table in percent (the form committed under results/)."""
    table = experiment(tmp_path, Fakes()).run()
    rows = {r["name"]: r for r in table["rows"]}
    lo, hi = rows["full"]["accuracy"]["ci95"]
    assert lo < 0.32 < hi and hi - lo < 0.2
    dlo, dhi = rows["full"]["delta"]["ci95"]  # every clip-run pair differs by the same 0.3 on average
    assert 0 < dlo <= 0.3 <= dhi and dhi - dlo < hi - lo  # paired: narrower than the row's own interval
    assert rows["base"]["delta"].get("ci95") is None  # the baseline has no difference from itself
    assert rows["full"]["order_shuffled"]["ci95"][0] < 0.5 < rows["full"]["order_shuffled"]["ci95"][1]
    summary = json.loads((tmp_path / "xp" / "t_tiny" / "summary.json").read_text())
    assert summary["level"] == "easy" and summary["baseline"] == "base"
    full = summary["rows"]["full"]
    assert full["accuracy"]["mean"] == pytest.approx(32.0) and full["accuracy"]["ci95"][0] < 32.0
    assert set(full) == {"accuracy", "delta_vs_baseline", "delta_vs", "sit_stand_ordered", "sit_stand_shuffled",
                         "format", "subaction_precision", "subaction_recall", "c_bind", "bonus_share", "train_seeds"}  # fmt: skip
    # full minus sft: one more adapter, +0.1 at every seed; 10 more clips right per seed, paired
    vlo, vhi = rows["full"]["vs"]["delta"]["ci95"]
    assert rows["full"]["vs"]["row"] == "sft" and 0 < vlo <= 0.1 <= vhi < 0.2
    assert full["delta_vs"]["row"] == "sft" and full["delta_vs"]["mean"] == pytest.approx(10.0)
    assert summary["rows"]["sft"]["delta_vs"] is None
    # the bonus share comes from each T-GRPO stage's training log; rows that end before T-GRPO have none
    assert rows["full"]["bonus_share"]["mean"] == pytest.approx(0.5) and rows["nofmt"]["bonus_share"][
        "mean"
    ] == pytest.approx(0.1)
    assert rows["sft"]["bonus_share"]["mean"] is None and full["bonus_share"]["mean"] == pytest.approx(50.0)
    text = (tmp_path / "xp" / "t_tiny" / "table.md").read_text()
    line = next(x for x in text.splitlines() if x.startswith("| Full | FRE + V-SFT | +10.0 ± 0.0 ["))
    cells = [c.strip() for c in line.strip("|").split("|")]
    # sit/stand: the same clips right in both rows' completions (the fakes' per-seed means differ; the interval
    # comes from the completions)
    assert cells[3] == "yes" and cells[4].endswith("[0.0, 0.0]") and cells[6] == "+0.0 ± 0.0 [0.0, 0.0]"
    assert cells[5] == cells[7] == "no"
    assert full["delta_vs"]["sit_stand_shuffled"] == {"mean": 0.0, "ci95": [0.0, 0.0]}
    assert not (REPO_ROOT / "results" / "t_tiny.json").exists()  # a table outside configs/experiments


def test_bootstrap_ci_known_cases():
    import numpy as np
    import pandas as pd

    from reasonact.eval.metrics import bootstrap_ci

    ones = pd.DataFrame(np.ones((50, 3)))
    assert bootstrap_ci(ones) == {"mean": 1.0, "ci95": [1.0, 1.0], "clips": 50, "runs": 3}
    rng = np.random.default_rng(0)
    coin = pd.DataFrame((rng.random((400, 5)) < 0.5).astype(float))
    ci = bootstrap_ci(coin)["ci95"]
    assert ci[0] < 0.5 < ci[1] and 0.03 < (ci[1] - ci[0]) / 2 < 0.08  # ~1.96 * sqrt(0.25 / 400) per run
    better = coin.copy()
    better.iloc[:40] = 1.0  # the same clips and runs, 40 of 400 clips forced right
    paired = bootstrap_ci(better, coin)
    assert paired["ci95"][0] > 0 and paired["ci95"][1] - paired["ci95"][0] < ci[1] - ci[0]
    assert bootstrap_ci(pd.DataFrame()) is None


def test_evaluations_made_in_another_checkout_still_pair(tmp_path):
    """Completions name their clip by path; two evaluations of the same clips, one with repository-relative
    paths and one made where the manifest held absolute paths of another checkout, pair clip by clip."""
    from reasonact.eval.metrics import bootstrap_ci
    from reasonact.eval.tables import clip_scores

    runs = []
    for name, prefix, right in [
        ("a", "data/synthact_easy/test", 1.0),
        ("b", "/elsewhere/data/synthact_easy/test", 0.0),
    ]:
        folder = tmp_path / name / "synthact_test"
        folder.mkdir(parents=True)
        lines = [{"clip": f"{prefix}/{label}/{label}_0000{i}.mp4", "label": label, "seed": 1, "condition": "ordered",
                  "accuracy": right} for label in ("sit", "stand") for i in range(3)]  # fmt: skip
        (folder / "completions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in lines))
        runs.append([{"train_seed": 1, "eval": {"metrics": {"eval_dir": str(tmp_path / name)}}}])
    a, b = clip_scores(runs[0]), clip_scores(runs[1])
    assert a.shape == b.shape == (6, 1) and list(a.index) == list(b.index)
    assert bootstrap_ci(a, b)["ci95"] == [1.0, 1.0]  # every clip right in one, wrong in the other


@pytest.mark.parametrize("level, name", [(None, "t_tiny.json"), ("medium", "t_tiny_medium.json")])
def test_a_whole_table_of_the_experiments_folder_is_written_to_results(tmp_path, monkeypatch, level, name):
    """A whole run of a table in configs/experiments also writes results/<table>_<profile>[_<level>].json,
    the file committed with the table, stamped with the commit it ran at."""
    import re

    from reasonact.eval import experiments as xp

    monkeypatch.setattr(xp, "TABLE_DIR", tmp_path)  # where write() puts the table file
    monkeypatch.setattr(xp, "RESULTS_DIR", tmp_path / "results")
    over = {"data.synthact_level": level} if level else None
    table = experiment(tmp_path, Fakes(), overrides=over).run()
    written = tmp_path / "results" / name
    assert str(written) in table["files"]["summary"] and len(list((tmp_path / "results").iterdir())) == 1
    summary = json.loads(written.read_text())
    assert summary["level"] == (level or "easy") and summary["table"] == "t"
    assert re.fullmatch(r"[0-9a-f]{12}(-dirty)?", summary["commit"])  # git describe of this checkout
    assert summary == json.loads((tmp_path / "xp" / "t_tiny" / "summary.json").read_text())
    partial = experiment(tmp_path, Fakes(), overrides=over).run(rows=["base", "full"])
    assert str(written) not in partial["files"]["summary"]  # only whole tables are committed
    # a whole table run with other steps or clips is not the table: the committed file stays as it was
    written.unlink()
    for kw in [
        {"overrides": {**(over or {}), "fre.max_steps": 3}},
        {"overrides": over, "clips_per_class": 1},
        {"overrides": over, "train_seeds": [5]},
    ]:
        assert str(written) not in experiment(tmp_path, Fakes(), **kw).run()["files"]["summary"]
    assert not written.exists()


def test_the_committed_tables_hold_what_they_claim():
    """results/*.json (written by `reasonact experiments`, never by hand): the issue-17 schema, percentages in
    0-100, every interval around its mean, at least 3 training seeds per trained row, and each compared row's
    difference consistent with the two rows' means."""
    files = sorted((REPO_ROOT / "results").glob("table*_tiny*.json"))
    assert REPO_ROOT / "results" / "table1_tiny.json" in files
    for path in files:
        t = json.loads(path.read_text())
        assert {"commit", "level", "clips", "rows"} <= set(t) and t["rows"], path
        for name, row in t["rows"].items():
            where = f"{path.name}: {name}"
            assert {"accuracy", "sit_stand_ordered", "sit_stand_shuffled", "format", "train_seeds"} <= set(
                row
            )
            acc = row["accuracy"]
            lo, hi = acc["ci95"]
            assert 0 <= lo <= acc["mean"] <= hi <= 100, where
            if name != t["baseline"]:
                assert len(row["train_seeds"]) >= 3, where
            if row.get("delta_vs"):
                other = t["rows"][row["delta_vs"]["row"]]["accuracy"]["mean"]
                assert row["delta_vs"]["mean"] == pytest.approx(acc["mean"] - other, abs=0.02), where
