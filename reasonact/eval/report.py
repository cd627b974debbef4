"""What notebook 06 shows: a run's evaluation (loaded, or made on a small subset), its tables and
figures, examples of right and wrong reasoning with their rewards, and the experiment tables.

    stage = latest_stage(RUN)                                   # tgrpo > vsft > fre > base
    result, folder, how = load_or_evaluate(recipe, RUN, stage, clips_per_class=1)
    metrics_table(result); per_class_figure(result); confusion_figure(result); order_only_figure(result)
    pick_examples(read_completions(folder / "completions.jsonl"), recipe.tgrpo.weights)

``result`` is the per-manifest summary of ``evaluate`` (``conditions``, ``order_only``, ...) for the
SynthAct test manifest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from reasonact.data.manifest import read_manifest
from reasonact.eval.evaluate import RESULTS, STAGE_FOLDER, clip_id
from reasonact.eval.experiments import DEFAULT_ROOT, subset_manifest
from reasonact.eval.metrics import fmt_pm
from reasonact.eval.protocols import run_eval
from reasonact.paths import STAGES, adapter_dir, run_dir
from reasonact.rewards.functions import weighted_total

NAME = "synthact_test"  # run_eval's name for the profile's test split
COMPONENTS = ("accuracy", "format", "subaction", "temporal_consistency", "c_seq", "c_cross", "c_bind")
SHOWN = (
    *COMPONENTS[:3],
    "subaction_precision",
    "subaction_recall",
    *COMPONENTS[3:],
    "new_tokens",
    "latency_s",
)


def latest_stage(run=None, profile: str = "tiny") -> str:
    """The last stage of the curriculum with an adapter in the run; ``base`` when there is none."""

    done = [s for s in STAGES if (adapter_dir(run, s, profile) / "adapter_config.json").is_file()]
    return done[-1] if done else "base"


def load_or_evaluate(recipe, run, stage: str, clips_per_class: int | None = 1, progress: bool = False):
    """``(result, folder, how)``: the results of ``reasonact eval --run RUN --stage STAGE`` when its default
    folder has them (``how = "loaded"``), else an evaluation made here, resumable, on the first
    ``clips_per_class`` test clips of each class (``None``: all) in ``06_evaluation/<stage>_<n>-per-class``."""

    base = run_dir(run, recipe.profile) / STAGE_FOLDER
    full = base / stage / NAME / RESULTS
    if full.is_file():
        result = json.loads(full.read_text())
        top = full.parent.parent / RESULTS  # run_eval's summary: latency / memory against the base
        result["efficiency"] = json.loads(top.read_text()).get("efficiency") if top.is_file() else None
        return result, full.parent, "loaded"
    out = base / (f"{stage}_{clips_per_class}-per-class" if clips_per_class else stage)
    manifests = {NAME: str(subset_manifest(recipe, clips_per_class, out))} if clips_per_class else None
    summary = run_eval(recipe, run=run, stage=stage, manifests=manifests, out=out, progress=progress)
    result = json.loads((out / NAME / RESULTS).read_text())
    result["efficiency"] = summary.get("efficiency")
    return result, out / NAME, "evaluated here"


def metrics_table(result: dict) -> pd.DataFrame:
    """One row per metric, mean ± std over the seeds, per condition (percent for rates)."""
    fmt = {k: (1.0, 2) if k in ("new_tokens", "latency_s") else (100.0, 1) for k in SHOWN}
    cols = {f"{c} ({s['clips']} clips)": s for c, s in result["conditions"].items()}
    return pd.DataFrame({c: {k: fmt_pm(s.get(k), *fmt[k]) for k in SHOWN} for c, s in cols.items()})


def per_seed_table(result: dict, keys=("accuracy", "format", "subaction_recall", "temporal_consistency")):
    """The ordered condition's ``keys`` per evaluation seed."""
    s = result["conditions"]["ordered"]
    return pd.DataFrame(
        {k: {str(seed): v for seed, v in s[k]["per_seed"].items()} for k in keys}
    ).rename_axis("seed")


def _bars(ax, labels, means, stds, colour="#0072B2", width=0.8, offset=0.0, label=None):
    x = np.arange(len(labels)) + offset
    heights, errors = [100 * (m or 0) for m in means], [100 * (s or 0) for s in stds]
    ax.bar(x, heights, width, yerr=errors, capsize=3, color=colour, edgecolor="black", lw=0.5, label=label)
    return x


def per_class_figure(result: dict, condition: str = "ordered") -> Figure:
    pc = result["conditions"][condition]["per_class"]
    labels = list(pc)
    fig = Figure(figsize=(max(5, 0.6 * len(labels) + 1), 3.2), layout="constrained")
    ax = fig.add_subplot()
    _bars(ax, labels, [pc[k]["mean"] for k in labels], [pc[k]["std"] for k in labels])
    ax.set_xticks(range(len(labels)), labels, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (%), mean ± std over seeds")
    ax.set_ylim(0, 105)
    ax.set_title(
        f"per-class accuracy ({condition} frames, {result['conditions'][condition]['clips']} clips)",
        fontsize=9,
    )
    return fig


def confusion_figure(result: dict, condition: str = "ordered") -> Figure:
    c = result["conditions"][condition]["confusion"]
    m = np.asarray(c["matrix"])
    fig = Figure(
        figsize=(0.42 * len(c["predicted"]) + 2.5, 0.4 * len(c["labels"]) + 1.8), layout="constrained"
    )
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(
                j,
                i,
                str(v),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > m.max() / 2 else "black",
            )
    ax.set_xticks(range(len(c["predicted"])), c["predicted"], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(c["labels"])), c["labels"], fontsize=7)
    ax.set_xlabel("predicted (summed over seeds)")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, shrink=0.7)
    return fig


def order_only_figure(result: dict) -> Figure | None:
    """Accuracy on the order-only pair (sit / stand) with ordered and with shuffled frames."""
    o = result.get("order_only")
    if not o:
        return None
    labels = [*o["per_class"], "both"]
    pairs = [*o["per_class"].values(), {"ordered": o["ordered"], "shuffled": o["shuffled"]}]
    fig = Figure(figsize=(4.5, 3), layout="constrained")
    ax = fig.add_subplot()
    for i, (cond, colour) in enumerate((("ordered", "#0072B2"), ("shuffled", "#E69F00"))):
        stats = [p.get(cond) or {} for p in pairs]
        means, stds = [s.get("mean") for s in stats], [s.get("std") for s in stats]
        _bars(ax, labels, means, stds, colour, 0.38, (i - 0.5) * 0.4, cond)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylabel("accuracy (%), mean ± std")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=8)
    ax.set_title("order-only pair: frames in order vs shuffled in time", fontsize=9)
    return fig


def pick_examples(rows: list[dict], weights: dict, per_kind: int = 1) -> list[dict]:
    """Examples among the ordered completions: the best-rewarded right ones (``right``), the best-rewarded
    wrong ones (fluent but wrong: ``wrong``) and the worst-rewarded ones (``worst``), with their total."""
    ordered = [
        {**r, "total": round(weighted_total(r, weights), 4)}
        for r in rows
        if r.get("condition", "ordered") == "ordered"
    ]
    ordered.sort(key=lambda r: (-r["total"], r["clip"], r["seed"]))
    right = [r for r in ordered if r["accuracy"] == 1][:per_kind]
    wrong = [r for r in ordered if r["accuracy"] != 1][:per_kind]
    worst = [r for r in reversed(ordered) if r not in right + wrong][:per_kind]
    return [
        {**r, "kind": k} for k, group in (("right", right), ("wrong", wrong), ("worst", worst)) for r in group
    ]


def examples_table(examples: list[dict]) -> pd.DataFrame:
    cols = ["kind", "label", "predicted", "seed", "total", *COMPONENTS, "new_tokens"]
    return pd.DataFrame([{k: e.get(k) for k in cols} for e in examples])


def experiment_tables(root=None) -> list[dict]:
    """The tables written by ``reasonact experiments`` under ``root`` (default ``runs/experiments``); each with
    its ``markdown`` text, headings moved two levels down so that a table's title is not a notebook title."""

    root = Path(root) if root else DEFAULT_ROOT
    out = []
    for path in sorted(root.glob("*/results.json")) if root.is_dir() else []:
        table = json.loads(path.read_text())
        if "rows" in table:
            md = path.parent / "table.md"
            text = re.sub(r"^(#+) ", r"\1## ", md.read_text(), flags=re.M) if md.is_file() else ""
            figure = path.parent / "accuracy.png"
            out.append({"name": path.parent.name, "table": table, "markdown": text, "figure": figure})
    return out


def clip_records(folder: str | Path) -> dict[str, dict]:
    """Manifest records by clip id (as in ``completions.jsonl``) for an evaluation folder of ``run_eval``."""

    folder = Path(folder)
    manifest = Path(json.loads((folder.parent / RESULTS).read_text())["manifests"][folder.name])
    return {clip_id(rec, manifest.parent): rec for rec in read_manifest(manifest)}
