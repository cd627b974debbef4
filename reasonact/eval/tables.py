"""The experiment tables' numbers, markdown and figure (``reasonact/eval/experiments.py`` runs the rows).

``bonus_share`` is read from training, not evaluation: the share of T-GRPO's prompt groups paid the
shuffled-frame bonus, averaged over the logged steps of the row's last stage (when it is T-GRPO), mean ± std
over its training seeds.

Per row, every metric is pooled over its runs' evaluation seeds (one run per training seed; one run
when the table has no training seeds): ``metrics.mean_std`` over the seeds. The difference from the
baseline row is *paired*: row minus baseline for the same evaluation seed (and training seed), then
mean ± std of those differences. Accuracy and rates are shown in percent, differences in points.

The sit/stand columns come from a run's ``order_eval`` (the order probe, ``experiments.py``) when it has one,
else from the order-only clips of its evaluation. Confidence intervals come from the completions themselves
(each run's ``completions.jsonl``): accuracy, the difference from the baseline and the order-only pair get a
95% interval from ``metrics.bootstrap_ci`` over clips and runs (paired for the difference, also between compared
rows). A difference is *resolved* when its interval excludes 0.
``summary_json`` is the table in a small, stable form (what ``results/<table>_<profile>.json`` holds).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from reasonact.eval.evaluate import COMPLETIONS, read_completions
from reasonact.eval.metrics import METRICS, bootstrap_ci, fmt_pm, mean_std
from reasonact.viz.plots import PHASE_COLOURS

COLUMNS = (  # (key in a table row, header, scale)
    ("accuracy", "Accuracy (%)", 100),
    ("delta", "Δ vs baseline (points, paired)", 100),
    ("format", "Format (%)", 100),
    ("subaction_precision", "Sub-action precision (%)", 100),
    ("subaction_recall", "Sub-action recall (%)", 100),
    ("c_bind", "C_bind (%)", 100),
    ("temporal_consistency", "C_tc (%)", 100),
    ("order_ordered", "sit/stand ordered (%)", 100),
    ("order_shuffled", "sit/stand shuffled (%)", 100),
    ("bonus_share", "T-GRPO groups paid the bonus (%)", 100),
)
ORDER_KEYS = (("order_ordered", "ordered"), ("order_shuffled", "shuffled"))
KEYS = [k for k, _, _ in COLUMNS if k not in ("delta", "bonus_share")]  # read from the runs' evaluations


def eval_metrics(summary: dict) -> dict:
    """The numbers a table needs from a ``run_eval`` summary (several manifests: their ``combined``)."""
    results = summary["results"]
    first = next(iter(results.values()))
    cond = summary["combined"] if "combined" in summary else first["conditions"]["ordered"]
    out = {k: cond[k] for k in METRICS if k in cond}
    out["clips"] = sum(r.get("evaluated", 0) for r in results.values())
    out["skipped"] = sum(r.get("skipped", {}).get("count", 0) for r in results.values())
    if "order_only" in first and len(results) == 1:
        out["order_only"] = {k: first["order_only"][k] for k in ("labels", "ordered", "shuffled")}
    eff = summary.get("efficiency", {}).get("evaluated")
    if eff:
        out["latency_s_per_clip_batch1"] = eff.get("latency_s_per_clip")
    out["eval_dir"] = summary.get("out")
    return out


def order_source(run: dict) -> dict:
    """The run with its order probe's evaluation in place of its evaluation (the sit/stand columns)."""
    return {**run, "eval": run["order_eval"]} if run.get("order_eval") else run


def seed_values(results: list[dict]) -> pd.DataFrame:
    """One line per run and evaluation seed: its ``row``, ``train`` seed and the KEYS' values, indexed by
    seed (``train/eval`` with training seeds, else the evaluation seed; a string either way)."""
    lines: dict[tuple, dict] = {}
    for r in results:
        t, m, o = r["train_seed"], r["eval"]["metrics"], order_source(r)["eval"]["metrics"]
        for key in KEYS:
            stat = o.get("order_only", {}).get(key[6:]) if key.startswith("order_") else m.get(key)
            for s, v in ((stat or {}).get("per_seed") or {}).items():
                seed = str(s) if t is None else f"{t}/{s}"
                lines.setdefault((r["row"], seed), {"row": r["row"], "train": t, "seed": seed})[key] = v
    df = pd.DataFrame(list(lines.values()), columns=["row", "train", "seed", *KEYS])
    return df.astype(dict.fromkeys(KEYS, float)).set_index("seed")


def clip_scores(
    runs: list[dict], condition: str = "ordered", labels=None, key: str = "accuracy"
) -> pd.DataFrame:
    """Clips x runs (``train/eval`` seed) of ``key`` for one row's runs, read from their completions
    (``labels``: only clips of these labels). Empty when the evaluations kept no completions. A clip is its
    dataset, label and file name, not its path: evaluations made in another checkout still pair."""
    cols = {}
    for r in runs:
        t = r["train_seed"]
        folder = Path(r["eval"]["metrics"].get("eval_dir") or "")
        for path in sorted(folder.glob(f"*/{COMPLETIONS}")) if folder.parts else []:
            for c in read_completions(path):
                if c["condition"] == condition and (labels is None or c["label"] in labels):
                    run = f"{c['seed']}" if t is None else f"{t}/{c['seed']}"
                    clip = f"{path.parent.name}/{c['label']}/{Path(c['clip']).name}"
                    cols.setdefault(run, {})[clip] = float(c.get(key) or 0.0)
    return pd.DataFrame(cols).sort_index()


def with_ci(stat: dict, ci: dict | None) -> dict:
    return {**stat, "ci95": ci["ci95"] if ci else None}


def build_table(spec, rows, results: list[dict]) -> dict:
    """The table's rows (in ``rows`` order) from the runs in ``results`` (row, train_seed, stages, eval)."""
    values = seed_values(results)
    base = values.loc[values["row"] == spec.baseline, "accuracy"]
    base_scores = clip_scores([r for r in results if r["row"] == spec.baseline])
    out = []
    for row in rows:
        runs = [r for r in results if r["row"] == row.name]
        v = values[values["row"] == row.name]
        entry = {k: getattr(row, k) for k in ("name", "label", "group", "paper", "note")}
        entry["stages"], entry["runs"] = [s.stage for s in row.stages], len(runs)
        entry["keys"] = [[st["key"] for st in r["stages"]] + [r["eval"]["key"]] for r in runs]
        train = sum(st.get("seconds", 0) for r in runs for st in r["stages"])
        evals = sum(r["eval"].get("seconds", 0) for r in runs)
        entry["seconds"] = {"train": round(train, 1), "eval": round(evals, 1)}
        entry |= {key: mean_std(v[key].dropna()) for key in KEYS}
        paired = (v["accuracy"] - base).dropna()  # same training and evaluation seed as the baseline's
        entry["delta"] = mean_std(paired if row.name != spec.baseline else {})
        scores = clip_scores(runs)
        entry["accuracy"] = with_ci(entry["accuracy"], bootstrap_ci(scores))
        if row.name != spec.baseline:
            entry["delta"] = with_ci(entry["delta"], bootstrap_ci(scores, base_scores))
        order = [order_source(r) for r in runs]
        pair = next((o.get("labels") for r in order if (o := r["eval"]["metrics"].get("order_only"))), None)
        for key, cond in ORDER_KEYS:
            entry[key] = with_ci(entry[key], bootstrap_ci(clip_scores(order, cond, pair)) if pair else None)
        other = [r for r in results if r["row"] == row.compare]
        if other:  # this row minus the row it is compared with, same training and evaluation seeds
            w = values[values["row"] == row.compare]
            diff = with_ci(
                mean_std((v["accuracy"] - w["accuracy"]).dropna()), bootstrap_ci(scores, clip_scores(other))
            )
            entry["vs"] = {"row": row.compare, "delta": diff}
            theirs = [order_source(r) for r in other]
            for key, cond in ORDER_KEYS if pair else ():  # the same on the order-only pair, both conditions
                ci = bootstrap_ci(clip_scores(order, cond, pair), clip_scores(theirs, cond, pair))
                entry["vs"][key] = with_ci(mean_std((v[key] - w[key]).dropna()), ci)
        entry["order_clips"] = sorted(
            {r["order_eval"]["metrics"]["clips"] for r in runs if r.get("order_eval")}
        )
        entry["bonus_share"] = mean_std([r["bonus_share"] for r in runs if r.get("bonus_share") is not None])
        entry["train_seeds"] = sorted({r["train_seed"] for r in runs if r["train_seed"] is not None})
        if v["train"].nunique() > 1:
            entry["train_seed_std"] = mean_std(v.groupby("train")["accuracy"].mean().to_numpy())["std"]
        entry["clips"] = sorted({r["eval"]["metrics"].get("clips") for r in runs})
        out.append(entry)
    distinct = {st["key"]: st.get("seconds", 0) for r in results for st in r["stages"]}
    distinct.update({r["eval"]["key"]: r["eval"].get("seconds", 0) for r in results})
    head = {k: getattr(spec, k) for k in ("name", "title", "description", "baseline", "paper_columns")}
    return {**head, "compute_seconds": round(sum(distinct.values()), 1), "rows": out}


def summary_json(table: dict, commit: str | None, level: str | None) -> dict:
    """The table in the committed form: percentages (0-100), each with its 95% interval."""

    def pct(stat):
        if not stat or stat.get("mean") is None:
            return None
        ci = stat.get("ci95")
        return {"mean": round(stat["mean"] * 100, 2), "ci95": [round(c * 100, 2) for c in ci] if ci else None}

    rows = {}
    for r in table["rows"]:
        rows[r["name"]] = {
            "accuracy": pct(r["accuracy"]),
            "delta_vs_baseline": pct(r.get("delta")),
            "delta_vs": _delta_vs(r["vs"], pct) if r.get("vs") else None,
            "sit_stand_ordered": pct(r.get("order_ordered")),
            "sit_stand_shuffled": pct(r.get("order_shuffled")),
            "format": pct(r.get("format")),
            **{
                k: pct(r.get(k)) for k in ("subaction_precision", "subaction_recall", "c_bind", "bonus_share")
            },
            "train_seeds": r.get("train_seeds", []),
        }
    clips = sorted({c for r in table["rows"] for c in r.get("clips", []) if c is not None})
    order = sorted({c for r in table["rows"] for c in r.get("order_clips", []) if c is not None})
    return {
        "table": table["name"],
        "commit": commit,
        "level": level,
        "clips": clips,
        "order_clips": order,
        "baseline": table["baseline"],
        "rows": rows,
    }


def _delta_vs(vs: dict, pct) -> dict:
    out = {"row": vs["row"], **pct(vs["delta"])}
    for key, name in (("order_ordered", "sit_stand_ordered"), ("order_shuffled", "sit_stand_shuffled")):
        if key in vs:
            out[name] = pct(vs[key])
    return out


def _resolved(stat: dict | None) -> str:
    ci = (stat or {}).get("ci95")
    return "–" if not ci else "yes" if ci[0] > 0 or ci[1] < 0 else "no"


def _md_table(header: list, rows: list[list]) -> list[str]:
    """A markdown table's lines (``tabulate``, which ``DataFrame.to_markdown`` needs, is no dependency)."""
    return [f"| {' | '.join(map(str, r))} |" for r in [header, ["---"] * len(header), *rows]]


def _cell(stat: dict | None, scale: float, signed: bool = False) -> str:
    """mean ± std, and the 95% interval in brackets when there is one."""
    ci = (stat or {}).get("ci95")
    return fmt_pm(stat, scale, signed=signed) + (f" [{ci[0] * scale:.1f}, {ci[1] * scale:.1f}]" if ci else "")


def _signed(stat: dict | None) -> str:
    return _cell(stat, 100, signed=True)


def _subset(n) -> str:
    return f"the first {n} clips of each class" if n else "all clips"


def _order_source(meta: dict) -> str:
    n = meta.get("order_clips_per_class")
    if not n:
        return "the order-only clips among the test clips above, ordered and shuffled"
    labels = " and ".join(meta.get("order_labels") or ["sit", "stand"])
    return f"the order probe, {n} freshly rendered clips each of {labels} (SynthAct split `order`), ordered and shuffled"


def _seed_order(s) -> tuple:
    return tuple(float(x) for x in str(s).split("/"))


def _paper(row: dict, base: list | None) -> str:
    p = row.get("paper")
    if not p:
        return "–"
    text = " / ".join(f"{v:.1f}" for v in p)
    if base:
        text += f" ({p[0] - base[0]:+.1f})"
    return text


def render_markdown(table: dict) -> str:
    """The table as markdown: the main table, per-seed accuracy, and how it was made."""
    meta = table.get("meta", {})
    rows = table["rows"]
    base_row = next((r for r in rows if r["name"] == table["baseline"]), None)
    base_paper = base_row.get("paper") if base_row else None
    cols = table["paper_columns"]
    paper_head = f"Paper: {' / '.join(cols)} (Δ {cols[0]})" if cols else "Paper"
    heads = ["Configuration"] + [h for _, h, _ in COLUMNS] + [paper_head]
    profile = f" ({meta['profile']} profile)" if meta.get("profile") else ""
    lines = [f"# {table['title'] or table['name']}{profile}", ""]
    if table.get("description"):
        lines += [table["description"], ""]
    cells, group = [], None
    for r in rows:
        if r.get("group") and r["group"] != group:
            group = r["group"]
            cells.append([f"*{group}*"] + [""] * (len(heads) - 1))
        cells.append(
            [r["label"] + (f" ({r['note']})" if r.get("note") else "")]
            + [_cell(r.get(k), s, signed=(k == "delta")) for k, _, s in COLUMNS]
            + [_paper(r, None if r is base_row else base_paper)]
        )
    lines += _md_table(heads, cells)
    if any((r.get("accuracy") or {}).get("ci95") for r in rows):
        lines += [
            "",
            "mean ± std over the seeds; in brackets the 95% interval (bootstrap over clips and runs,"
            " paired for Δ). A Δ is resolved when its interval excludes 0.",
        ]
    compared = [r for r in rows if r.get("vs")]
    if compared:
        label = {r["name"]: r["label"] for r in rows}
        lines += [
            "",
            "Paired differences between rows (points; the row minus the one it is compared with, same"
            " training and evaluation seeds; 95% interval as above; resolved: the interval excludes 0), in"
            " accuracy and on the sit/stand pair with ordered and with shuffled frames:",
            "",
        ]
        cells = []
        for r in compared:
            vs = r["vs"]
            cells.append(
                [r["label"], label[vs["row"]]]
                + [f(vs.get(k)) for k in ("delta", *dict(ORDER_KEYS)) for f in (_signed, _resolved)]
            )
        heads = ["Row", "compared with", "Δ accuracy", "resolved", "Δ sit/stand ordered", "resolved"]
        lines += _md_table([*heads, "Δ sit/stand shuffled", "resolved"], cells)
    seeds = sorted({s for r in rows for s in r["accuracy"]["per_seed"]}, key=_seed_order)
    if seeds:
        pairs = " (training seed / evaluation seed)" if "/" in str(seeds[0]) else ""
        head = f"Accuracy (%) per evaluation seed{pairs}; in brackets the paired difference from the baseline"
        lines += ["", head + " (points):", ""]
        cells = []
        for r in rows:
            acc = r["accuracy"]["per_seed"]
            d = {s: f" ({v * 100:+.1f})" for s, v in r["delta"]["per_seed"].items()}
            cells.append(
                [r["label"]] + [f"{acc[s] * 100:.1f}{d.get(s, '')}" if s in acc else "–" for s in seeds]
            )
        lines += _md_table(["Configuration", *seeds], cells)
    if meta:
        steps = ", ".join(f"{k} {v}" for k, v in meta.get("steps", {}).items())
        clips = sorted({c for r in rows for c in r.get("clips", []) if c is not None})
        overrides = f" with overrides `{meta['overrides']}`" if meta.get("overrides") else ""
        lines += [
            "",
            "How it was made:",
            "",
            f"- command: `{meta.get('command')}`; table config `{meta.get('config')}`;"
            f" recipe `{meta.get('recipe')}`{overrides}",
            f"- evaluation: SynthAct test split ({_subset(meta.get('clips_per_class'))};"
            f" evaluated per row: {', '.join(map(str, clips)) or '–'}), seeds {meta.get('eval_seeds')},"
            f" decoding {meta.get('decoding')}; mean ± std over the seeds (ddof 1)",
            f"- sit/stand columns: {_order_source(meta)}",
            f"- training: max_steps {steps}; training seeds {meta.get('train_seeds')}",
            f"- stages trained or reused and evaluations: `{meta.get('root')}`; wall time of this invocation"
            f" {meta.get('wall_seconds')} s; compute of the distinct stages and evaluations"
            f" {table.get('compute_seconds')} s (when they were made); per row (a shared stage counts in"
            " every row that uses it):",
        ]
        lines += [
            f"  - {r['name']}: stages {r['stages'] or '(base)'}, keys {r['keys']}, "
            f"{r['seconds']['train']} s train + {r['seconds']['eval']} s eval"
            for r in rows
        ]
    return "\n".join(lines) + "\n"


def accuracy_figure(table: dict, chance: float | None = None):
    """Left, bars: accuracy mean ± std per row (colour = group), dashed: chance and the baseline. Right, when
    the rows have the order-only pair: its accuracy with ordered and with shuffled frames, 95% intervals."""
    from matplotlib.figure import Figure

    rows = table["rows"]
    pair = any((r.get("order_ordered") or {}).get("mean") is not None for r in rows)
    groups = list(dict.fromkeys(r.get("group") for r in rows))
    width = max(5.0, 0.85 * len(rows) + 1.5)
    fig = Figure(figsize=(width * (1.9 if pair else 1.0), 3.8), layout="constrained")
    axes = fig.subplots(1, 2 if pair else 1, squeeze=False)[0]
    ax, x = axes[0], list(range(len(rows)))
    means = [(r["accuracy"]["mean"] or 0.0) * 100 for r in rows]
    stds = [(r["accuracy"]["std"] or 0.0) * 100 for r in rows]
    colours = [PHASE_COLOURS[groups.index(r.get("group")) % len(PHASE_COLOURS)] for r in rows]
    ax.bar(x, means, yerr=stds, capsize=3, color=colours, edgecolor="black", lw=0.5)
    for i, (m, s) in enumerate(zip(means, stds)):
        ax.text(i, m + s + 0.5, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
    if chance:
        ax.axhline(chance * 100, ls=":", color="grey", lw=1, label=f"chance ({chance * 100:.1f}%)")
    base = next((r for r in rows if r["name"] == table["baseline"]), None)
    if base and base["accuracy"]["mean"] is not None:
        ax.axhline(base["accuracy"]["mean"] * 100, ls="--", color="black", lw=0.8, label="baseline")
    ax.set_ylabel("accuracy (%), mean ± std over seeds")
    ax.set_title(table.get("title") or table["name"], fontsize=9)
    if pair:
        ax = axes[1]
        for k, (key, cond) in enumerate(ORDER_KEYS):
            stats = [r.get(key) or {} for r in rows]
            m = [(st.get("mean") or 0.0) * 100 for st in stats]
            ci = [[c * 100 for c in st.get("ci95") or [st.get("mean") or 0.0] * 2] for st in stats]
            # the interval's ends (0 where the seeds' mean lies outside the interval of the clips' bootstrap)
            err = [
                [max(mi - lo, 0) for mi, (lo, _) in zip(m, ci)],
                [max(hi - mi, 0) for mi, (_, hi) in zip(m, ci)],
            ]
            xs = [i + (k - 0.5) * 0.38 for i in x]
            ax.bar(
                xs,
                m,
                0.38,
                yerr=err,
                capsize=2,
                color=PHASE_COLOURS[(k + 4) % len(PHASE_COLOURS)],
                edgecolor="black",
                lw=0.5,
                label=cond,
            )
        ax.axhline(50, ls=":", color="grey", lw=1, label="chance for the pair (50%)")
        ax.set_ylabel("sit/stand accuracy (%), 95% interval")
        ax.set_title("the order-only pair: frames in order vs shuffled", fontsize=9)
    for ax in axes:  # each legend in a band above the bars, clear of their value labels
        ax.set_xticks(x)
        ax.set_xticklabels([r["label"] for r in rows], rotation=30, ha="right", fontsize=7)
        ax.set_ylim(0, 118)  # the whole scale: small differences look small
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    return fig


def write_outputs(table: dict, out: str | Path) -> dict[str, str]:
    """``table.md``, ``results.json`` and ``accuracy.png`` in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / "table.md", "json": out / "results.json", "figure": out / "accuracy.png"}
    paths["markdown"].write_text(render_markdown(table), encoding="utf-8")
    fig = accuracy_figure(table, table.get("meta", {}).get("chance"))
    fig.savefig(paths["figure"], dpi=120, bbox_inches="tight")
    files = {k: str(v) for k, v in paths.items()}
    paths["json"].write_text(
        json.dumps({**table, "files": files}, indent=1, default=str) + "\n", encoding="utf-8"
    )
    return files
