"""Notebook 06's helpers (reasonact/eval/report.py) on hand-made evaluation results."""

import json

import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from reasonact.eval import metrics as em
from reasonact.eval import report as er
from reasonact.rewards.functions import weighted_total

W = {"accuracy": 1.0, "subaction": 0.5, "format": 0.25, "temporal_consistency": 0.5}


def row(clip, seed, acc, sub=0.0, fmt=0.0, tc=0.0, cond="ordered", label="sit"):
    r = {k: 0.0 for k in em.SCALARS}
    r.update(clip=clip, seed=seed, condition=cond, label=label, accuracy=acc, subaction=sub, format=fmt,
             temporal_consistency=tc, predicted=label if acc else "stand", completion=f"{clip}/{seed}")  # fmt: skip
    return r


def test_total_and_pick_examples():
    rows = [
        row("a", 1, 1, sub=1.0, fmt=1.0, tc=1.0),  # right, total 2.25
        row("b", 1, 1, fmt=1.0),  # right, total 1.25
        row("c", 1, 0, sub=1.0, fmt=1.0, tc=0.5),  # wrong but fluent, total 1.0
        row("d", 1, 0),  # wrong, total 0
        row("e", 1, 0, sub=1.0, fmt=1.0, tc=1.0, cond="shuffled"),  # not an ordered completion
    ]
    assert (
        weighted_total(rows[0], W) == pytest.approx(2.25)
        and weighted_total(rows[2], {"acc": 1, "sub": 2}) == 2.0
    )
    ex = er.pick_examples(rows, W)
    assert [(e["kind"], e["clip"], e["total"]) for e in ex] == [("right", "a", 2.25), ("wrong", "c", 1.0),
                                                               ("worst", "d", 0.0)]  # fmt: skip
    none_right = er.pick_examples([r for r in rows if not r["accuracy"]], W, per_kind=2)
    assert [e["kind"] for e in none_right] == ["wrong", "wrong"]  # c, d (the shuffled one is never shown)
    table = er.examples_table(ex)
    assert list(table["kind"]) == ["right", "wrong", "worst"] and table.loc[0, "total"] == 2.25


def test_tables_and_figures_from_a_summary(tmp_path):
    rows = [row("a", 1, 1), row("b", 1, 0, label="stand"), row("a", 11, 0), row("b", 11, 1, label="stand"),
            row("a", 1, 0, cond="shuffled"), row("b", 1, 0, cond="shuffled", label="stand"),
            row("a", 11, 1, cond="shuffled"), row("b", 11, 0, cond="shuffled", label="stand")]  # fmt: skip
    ordered = em.summarize([r for r in rows if r["condition"] == "ordered"], [1, 11], ["sit", "stand"])
    shuffled = em.summarize([r for r in rows if r["condition"] == "shuffled"], [1, 11], ["sit", "stand"])
    result = {"conditions": {"ordered": ordered, "shuffled": shuffled},
              "order_only": {"labels": ["sit", "stand"], "ordered": ordered["accuracy"], "shuffled": shuffled["accuracy"],
                             "per_class": {k: {"ordered": ordered["per_class"][k], "shuffled": shuffled["per_class"][k]}
                                           for k in ("sit", "stand")}}}  # fmt: skip
    table = er.metrics_table(result)
    assert table.loc["accuracy", "ordered (2 clips)"] == "50.0 ± 0.0"
    assert table.loc["accuracy", "shuffled (2 clips)"] == "25.0 ± 35.4"
    assert er.per_seed_table(result)["accuracy"].to_dict() == {"1": 0.5, "11": 0.5}
    for fig in (er.per_class_figure(result), er.confusion_figure(result), er.order_only_figure(result)):
        fig.savefig(tmp_path / "f.png")
    assert er.order_only_figure({"conditions": {}}) is None


def test_latest_stage_and_experiment_tables(tmp_path):
    from reasonact.paths import adapter_dir

    assert er.latest_stage(tmp_path) == "base"
    for stage in ("fre", "vsft"):
        adapter_dir(tmp_path, stage).mkdir(parents=True)
        (adapter_dir(tmp_path, stage) / "adapter_config.json").write_text("{}")
    assert er.latest_stage(tmp_path) == "vsft"
    (tmp_path / "xp" / "t1_tiny").mkdir(parents=True)
    (tmp_path / "xp" / "t1_tiny" / "results.json").write_text(json.dumps({"rows": []}))
    (tmp_path / "xp" / "_evals" / "e").mkdir(parents=True)
    (tmp_path / "xp" / "_evals" / "e" / "results.json").write_text(json.dumps({"stage": "base"}))
    (tmp_path / "xp" / "t1_tiny" / "table.md").write_text("# Table 1\n\n## Rows\n| a |\n")
    (table,) = er.experiment_tables(tmp_path / "xp")
    assert table["name"] == "t1_tiny"
    assert table["markdown"] == "### Table 1\n\n#### Rows\n| a |\n"  # never a second notebook title
    assert er.experiment_tables(tmp_path / "none") == []
