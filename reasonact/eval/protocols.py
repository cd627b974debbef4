"""The paper's protocols and the model of a run's stage: what ``reasonact eval`` calls.

    result = run_eval(recipe, run="runs/tiny", stage="vsft")                    # SynthAct test split
    result = run_eval(recipe, protocol="hmdb51", root="/data/hmdb51", splits="/data/splits")

- ``synthact``: the profile's SynthAct test split (generated once, ``data.synthact_*``); its order-only
  pair (``eval.shuffle_labels``) is scored with ordered and with shuffled frames.
- ``hmdb51`` / ``ucf101``: the test lists of the three official splits, each evaluated on its own and
  averaged per seed (``combined``), as the paper reports them.
- ``kinetics400``: the official validation set.

The model is the recipe's base with the run's adapters merged up to the stage (``stage_adapters``);
latency and peak memory are measured for it and for the base model on the same clips (kept in
``efficiency.json`` and reused by a re-run with the same model, clips and decoding).
"""

from __future__ import annotations

import gc
import json
from itertools import islice
from pathlib import Path

from reasonact.data.benchmarks import build_manifest, write_manifest
from reasonact.data.manifest import read_manifest
from reasonact.data.synthact import ensure_dataset
from reasonact.eval import metrics as em
from reasonact.eval.evaluate import RESULTS, STAGE_FOLDER, evaluate, fingerprint, measure_efficiency
from reasonact.paths import STAGES, adapter_dir, prior_adapters, run_dir, write_metrics
from reasonact.rewards import scorer_for
from reasonact.video import iter_videos
from reasonact.vlm import load_model, model_path

EFFICIENCY = "efficiency.json"


def stage_adapters(run, stage: str, profile: str = "tiny", skip=()) -> list[Path]:
    """Adapters merged for ``stage``: none for ``base``; else the run's earlier stages (those present,
    minus ``skip``) and the stage's own adapter, which must exist."""

    if stage == "base":
        return []
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose base, {', '.join(STAGES)}")
    own = adapter_dir(run, stage, profile)
    if not (own / "adapter_config.json").is_file():
        raise FileNotFoundError(
            f"{own}: no adapter for stage {stage!r} in this run (train it first: reasonact train {stage})"
        )
    return prior_adapters(run, stage, profile, skip) + [own]


def load_eval_model(recipe, adapters=()):
    """The recipe's model with ``adapters`` merged, no new LoRA, on the GPU when there is one."""
    import torch

    model, processor = load_model(recipe, lora=False, adapters=list(adapters))
    if torch.cuda.is_available() and model.device.type == "cpu" and not recipe.model.load_in_4bit:
        model = model.to("cuda")
    return model.eval(), processor


def protocol_manifests(
    protocol: str, out_dir: str | Path, recipe=None, root=None, splits=None, pattern=None
) -> tuple[dict[str, str], dict]:
    """The paper's protocol as manifests ``{name: path}`` plus reports: ``synthact`` (the profile's
    test split), ``hmdb51`` / ``ucf101`` (test lists of the three official splits), ``kinetics400``
    (the validation set). Real datasets need ``root`` (videos) and ``splits`` (official lists)."""

    if protocol == "synthact":
        return {"synthact_test": ensure_dataset(recipe)["manifests"]["test"]}, {}
    if protocol not in ("hmdb51", "ucf101", "kinetics400"):
        raise ValueError(f"unknown protocol {protocol!r}; choose synthact, hmdb51, ucf101 or kinetics400")
    if root is None:
        raise ValueError(f"protocol {protocol} needs --root (the videos) and --splits (the official lists)")
    folds = [("val", 1)] if protocol == "kinetics400" else [("test", k) for k in (1, 2, 3)]
    manifests, reports = {}, {}
    for subset, fold in folds:
        name = f"{protocol}_{subset}" if protocol == "kinetics400" else f"{protocol}_split{fold}"
        records, reports[name] = build_manifest(
            protocol, root, splits, fold=fold, subset=subset, pattern=pattern
        )
        if not records:
            raise ValueError(f"{root}: no video of {protocol} {subset} (split {fold}) was found")
        manifests[name] = str(write_manifest(records, Path(out_dir) / "manifests" / f"{name}.jsonl"))
    return manifests, reports


def run_eval(
    recipe,
    run=None,
    stage: str = "base",
    manifests=None,
    protocol: str | None = None,
    root=None,
    splits=None,
    pattern=None,
    seeds=None,
    limit: int | None = None,
    out=None,
    compare_base=None,
    skip=(),
    scorer=None,
    progress: bool = False,
) -> dict:
    """Evaluate a run's model at ``stage`` (the base plus the run's adapters up to it) on ``manifests``
    (paths, or ``{name: path}``) or a ``protocol``; default: the profile's SynthAct test split. Several
    manifests (the folds of a protocol) are also averaged per seed (``combined``). Writes
    ``<out>/<name>/`` per manifest and ``<out>/results.json``; default ``out``:
    ``runs/<run>/06_evaluation/<stage>``."""

    cfg = recipe.eval
    out = Path(out) if out else run_dir(run, recipe.profile) / STAGE_FOLDER / stage
    adapters = stage_adapters(run, stage, recipe.profile, skip)
    reports = {}
    if manifests:
        manifests = manifests if isinstance(manifests, dict) else {Path(m).stem: str(m) for m in manifests}
    else:
        manifests, reports = protocol_manifests(protocol or "synthact", out, recipe, root, splits, pattern)
    loaded = {name: read_manifest(path) for name, path in manifests.items()}  # bad manifests fail first
    model, processor = load_eval_model(recipe, adapters)
    src = model_path(recipe)
    settings = {
        "model": src,
        "model_fingerprint": fingerprint(src),
        "adapters": [str(a) for a in adapters],
        "adapter_fingerprints": [fingerprint(a) for a in adapters],
    }
    # the sub-action scores depend on the encoder (absent: the default MiniLM, as before the option existed)
    if recipe.data.embedding_model:
        settings["embedding_model"] = recipe.data.embedding_model
    scorer = scorer or scorer_for(recipe.data.embedding_model)
    common = dict(
        **recipe.video.frames(),
        fmt=recipe.teacher.format,
        seeds=seeds,
        limit=limit,
        scorer=scorer,
        settings=settings,
        progress=progress,
    )
    results = {}
    for name, records in loaded.items():
        results[name] = evaluate(
            model, processor, records, out / name, cfg, root=Path(manifests[name]).parent, name=name, **common
        )
    keep = ("clips", "evaluated", "skipped", "generated_now", "conditions", "order_only", "files")
    summary = {
        "stage": stage,
        "profile": recipe.profile,
        "model": src,
        "adapters": settings["adapters"],
        "decoding": {k: getattr(cfg, k) for k in ("temperature", "top_p", "max_new_tokens")},
        "manifests": dict(manifests),
        "manifest_reports": reports,
        "results": {n: {k: r[k] for k in keep if k in r} for n, r in results.items()},
    }
    if len(results) > 1:
        summary["combined"] = em.combine_splits(results)
    compare = cfg.compare_base if compare_base is None else compare_base
    # the first efficiency_clips clips of the first manifest that decode (damaged ones are passed over)
    decoded = iter_videos(next(iter(loaded.values())), **recipe.video.frames())
    videos = [v for _, v in islice(decoded, max(1, cfg.efficiency_clips))]
    if videos:
        seed = int((seeds or cfg.seeds)[0])
        key = {
            **settings,
            "clips": [v.path for v in videos],
            "seed": seed,
            "compare_base": compare,
            "decoding": summary["decoding"],
            "device": str(model.device),
        }
        eff = _cached_efficiency(out, key)
        if eff is None:
            eff = {
                "evaluated": measure_efficiency(model, processor, videos, cfg, recipe.teacher.format, seed)
            }
            del model  # the base is measured without the evaluated model in memory
            gc.collect()
            eff = _compare_with_base(recipe, eff, videos, seed, compare, adapters)
            out.mkdir(parents=True, exist_ok=True)
            (out / EFFICIENCY).write_text(json.dumps({"key": key, "efficiency": eff}, indent=2) + "\n")
        summary["efficiency"] = eff
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(out, summary, RESULTS)
    summary["out"] = str(out)
    return summary


def _cached_efficiency(out: Path, key: dict) -> dict | None:
    """The measurement in ``<out>/efficiency.json`` when it was made with the same key (model,
    adapters, clips, decoding, device); None otherwise."""
    path = out / EFFICIENCY
    if path.is_file():
        old = json.loads(path.read_text())
        if old.get("key") == json.loads(json.dumps(key)):
            return old["efficiency"]
    return None


def _compare_with_base(recipe, eff: dict, videos, seed: int, compare: bool, adapters) -> dict:
    """Add the base model's latency / peak memory on the same clips, and the ratios."""
    if compare and adapters:
        base, processor = load_eval_model(recipe, ())
        eff["base"] = measure_efficiency(base, processor, videos, recipe.eval, recipe.teacher.format, seed)
        del base
        gc.collect()
    elif compare:
        eff["base"] = eff["evaluated"]  # the evaluated model is the base
    if "base" in eff:
        e, b = eff["evaluated"], eff["base"]
        eff["latency_ratio"] = e["latency_s_per_clip"] / max(b["latency_s_per_clip"], 1e-12)
        eff["memory_ratio"] = e["peak_memory_bytes"] / max(b["peak_memory_bytes"], 1)
    return eff


def summary_lines(result: dict) -> list[str]:
    """What ``reasonact eval`` prints for a ``run_eval`` result: every split and condition (mean ± std over
    the seeds), the order-only pair, each skipped clip with its cause (the first 20, then a count; all of
    them are in results.json) and the efficiency comparison."""
    pm = em.fmt_pm
    out = [f"stage {result['stage']} ({len(result['adapters'])} adapters merged) -> {result['out']}"]
    blocks = dict(result["results"])
    if "combined" in result:
        blocks["combined (mean over splits)"] = {"conditions": {"ordered": result["combined"]}}
    for name, r in blocks.items():
        for cond, m in r["conditions"].items():
            out.append(
                f"  {name} [{cond}]: accuracy {pm(m['accuracy'])}  format {pm(m['format'])}  sub-action P/R "
                f"{pm(m['subaction_precision'])} / {pm(m['subaction_recall'])}  "
                f"temporal consistency {pm(m['temporal_consistency'])}"
            )
        if "order_only" in r:
            o = r["order_only"]
            out.append(
                f"  {name} order-only pair {'/'.join(o['labels'])}: accuracy {pm(o['ordered'])} ordered, "
                f"{pm(o['shuffled'])} with shuffled frames"
            )
        if "skipped" in r:
            skipped = r["skipped"]["clips"]
            out.append(
                f"  {name}: {r['evaluated']}/{r['clips']} clips evaluated, {len(skipped)} damaged clips "
                f"skipped, {r['generated_now']} completions generated now"
            )
            out += [f"    skipped {clip['video']}: {clip['cause']}" for clip in skipped[:20]]
            if len(skipped) > 20:
                out.append(f"    ... and {len(skipped) - 20} more (all in {r['files']['json']})")
    eff = result.get("efficiency", {})
    for who in ("evaluated", "base"):
        if who in eff:
            e = eff[who]
            out.append(
                f"  {who}: {e['latency_s_per_clip']:.3f} s/clip (batch 1), {e['new_tokens_per_clip']:.1f} "
                f"tokens/clip, peak memory {e['peak_memory_bytes'] / 2**20:.0f} MiB ({e['memory_kind']})"
            )
    if "latency_ratio" in eff:
        out.append(f"  vs base: latency x{eff['latency_ratio']:.2f}, memory x{eff['memory_ratio']:.2f}")
    return out
