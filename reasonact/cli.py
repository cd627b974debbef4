"""The ``reasonact`` command. Every stage is a function; this file only parses arguments and calls it.

reasonact run --profile tiny [--from 00] [--to 06] [--out runs/NAME]
reasonact data synthact --out DIR --clips-per-class N --seed S [--level easy|medium|hard]
reasonact data manifest {hmdb51,ucf101,kinetics400} --root DIR --splits PATH --fold K --subset S --out FILE
reasonact library validate|stats [--json]
reasonact rewards score --input completions.jsonl [--json]
reasonact cot generate --teacher template|openai|model --manifest M --out DIR [--format plain|process]
reasonact cot fre-data --profile tiny --out DIR
reasonact model build-tiny [--profile tiny] [--json]
reasonact train fre|vsft|tgrpo [--profile tiny | --config F] [--run R] [--set k=v]
reasonact eval --profile tiny [--run R] [--stage base|fre|vsft|tgrpo] [--manifest M | --protocol P] [--seeds ...]
reasonact experiments table1|table2|table2_room --profile tiny [--rows a,b] [--clips-per-class N] [--order-clips-per-class N] [--jobs N]
                     [--out DIR] [--dry-run] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import reasonact  # noqa: F401  (installs the CPU-torch torchvision fix before anything imports it)
from reasonact.config import load_config, parse_overrides
from reasonact.cot.filter import generate_cot
from reasonact.cot.reasoning import build_fre_data
from reasonact.data.benchmarks import build_manifest
from reasonact.data.manifest import write_manifest
from reasonact.data.synthact import generate, parse_splits
from reasonact.data.tiny import build_tiny_model
from reasonact.eval.experiments import Experiment, load_table
from reasonact.eval.parallel import stderr_log
from reasonact.eval.protocols import run_eval, summary_lines
from reasonact.library import load_library
from reasonact.library.embeddings import validation_lines, validation_report
from reasonact.notebooks import NotebookFailed, run_notebooks
from reasonact.rewards.report import score_file
from reasonact.train.base import build_base, commit_copy, ensure_model, evaluate_base
from reasonact.train.sft import accuracy_eval, train_stage
from reasonact.train.tgrpo_stage import train_tgrpo
from reasonact.vlm import count_parameters, find_base


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_run(args) -> int:
    params = {"SEED": args.seed}
    try:
        results = run_notebooks(
            profile=args.profile, run=args.out, start=args.start, end=args.end, seed=args.seed, params=params
        )
    except NotebookFailed as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if args.json:
        _print_json(results)
    return 0


def cmd_data_synthact(args) -> int:
    summary = generate(
        args.out,
        args.clips_per_class,
        seed=args.seed,
        level=args.level,
        size=args.size,
        splits=parse_splits(args.splits),
        workers=args.workers,
        progress=not args.json,
    )
    if args.json:
        _print_json(summary)
    else:
        print(f"{summary['num_clips']} clips ({summary['clips_per_s']} clips/s) -> {summary['out_dir']}")
        for split, path in summary["manifests"].items():
            print(f"  {split}: {summary['counts'][split]} clips, {path}")
    return 0


def cmd_data_manifest(args) -> int:
    records, report = build_manifest(
        args.dataset,
        args.root,
        splits=args.splits,
        fold=args.fold,
        subset=args.subset,
        strict=args.strict,
        pattern=args.pattern,
    )
    write_manifest(records, args.out)
    report["manifest"] = str(args.out)
    if args.json:
        _print_json(report)
    else:
        print(
            f"{args.dataset} {args.subset} fold {args.fold}: {report['found']}/{report['listed']} clips found, "
            f"{report['missing']} missing -> {args.out}"
        )
        for path in report.get("missing_videos", [])[:10]:
            print(f"  missing: {path}")
    return 0


def cmd_model_build_tiny(args) -> int:
    recipe = _recipe(args)
    path = build_tiny_model(cfg=recipe.model.tiny, video_size=recipe.video.size, force=args.force)
    from transformers import AutoModelForImageTextToText

    n = count_parameters(AutoModelForImageTextToText.from_pretrained(path))
    info = {"path": str(path), "parameters": n["total"]}
    _print_json(info) if args.json else print(f"tiny model ({n['total'] / 1e6:.2f} M parameters): {path}")
    return 0


def cmd_library(args) -> int:
    lib = load_library(args.dir) if args.dir else load_library()
    if args.library_command == "stats":
        stats = lib.stats()
        _print_json(stats) if args.json else print("\n".join(f"{k}: {v}" for k, v in stats.items()))
        return 0
    report = validation_report(lib, embed=not args.no_embed)
    _print_json(report) if args.json else print("\n".join(validation_lines(report)))
    return 1 if report["unresolved"] else 0


def cmd_cot_generate(args) -> int:
    if args.teacher == "model":
        ensure_model(load_config(args.profile), progress=not args.json)
    summary = generate_cot(
        args.manifest,
        args.out,
        teacher=args.teacher,
        fmt=args.format,
        profile=args.profile,
        limit=args.limit,
        progress=not args.json,
    )
    if args.json:
        _print_json(summary)
    else:
        print(f"{summary['kept']}/{summary['clips']} chains kept -> {summary['paths']['jsonl']}")
        print("rejected by rule: " + ", ".join(f"{k} {v}" for k, v in summary["rejected_by_rule"].items()))
    return 0


def cmd_fre_data(args) -> int:
    summary = build_fre_data(load_config(args.profile), args.out)
    _print_json(summary) if args.json else print(f"FRE data -> {args.out}")
    return 0


def cmd_rewards_score(args) -> int:
    weights = {k: float(v) for k, v in parse_overrides(args.weight).items()} or None
    rows = score_file(args.input, weights=weights)
    if args.json:
        _print_json(rows)
        return 0
    import pandas as pd

    table = pd.DataFrame(rows).drop(columns=["detections", "detected"], errors="ignore").set_index("index")
    print(table.to_string(float_format="{:.3f}".format))
    return 0


def cmd_eval(args) -> int:
    recipe = _recipe(args)
    ensure_model(recipe, progress=not args.json)
    result = run_eval(
        recipe,
        run=args.run,
        stage=args.stage,
        manifests=args.manifest or None,
        protocol=args.protocol,
        root=args.root,
        splits=args.splits,
        pattern=args.pattern,
        seeds=args.seeds,
        limit=args.limit,
        out=args.out,
        compare_base=False if args.no_compare_base else None,
        skip=tuple(args.skip),
        progress=not args.json,
    )
    if args.json:
        _print_json(result)
        return 0
    print("\n".join(summary_lines(result)))
    return 0


def cmd_train(args) -> int:
    recipe = _recipe(args)
    ensure_model(recipe, progress=not args.json)
    kw = dict(resume=not args.no_resume)
    if args.stage == "tgrpo":
        metrics = train_tgrpo(recipe, run=args.run, **kw)
    else:
        cfg = getattr(recipe, args.stage)
        eval_fn = (
            accuracy_eval(recipe, clips=cfg.eval_clips) if args.stage == "vsft" and not args.no_eval else None
        )
        metrics = train_stage(recipe, args.stage, run=args.run, eval_fn=eval_fn, progress=not args.json, **kw)
    if os.environ.get("RANK", "0") != "0":  # `accelerate launch` / torchrun: rank 0 alone reports
        return 0
    if args.json:
        _print_json(metrics)
    else:
        acc = (
            f", val accuracy {metrics['before'].get('accuracy')} -> {metrics['after'].get('accuracy')}"
            if metrics.get("after")
            else ""
        )
        print(
            f"{args.stage}: {metrics['steps']} steps in {metrics.get('train_seconds')} s, loss "
            f"{metrics.get('train_loss_first')} -> {metrics.get('train_loss_last')}{acc}"
        )
    return 0


def cmd_experiments(args) -> int:
    log = stderr_log if args.json else print
    rows = [r for item in args.rows or [] for r in item.split(",") if r]
    command = "reasonact " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["experiments"] else None
    exp = Experiment(
        load_table(args.table),
        args.config or args.profile,
        parse_overrides(args.set),
        args.root,
        args.clips_per_class,
        args.train_seeds,
        log=log,
        progress=not args.json,
        command=command,
        order_clips=args.order_clips_per_class,
        jobs=args.jobs,
    )
    if args.dry_run:
        plan = exp.plan(rows)
        if args.json:
            _print_json(plan)
        for p in [] if args.json else plan:
            chain = " -> ".join(
                f"{s['stage']} {s['key']}" + (" (done)" if s["done"] else "") for s in p["stages"]
            )
            probe, done = f" + order probe {p['order_eval']}" if p["order_eval"] else "", p["eval_done"]
            print(f"{p['row']}: {chain or 'base'} | {p['eval']}{probe}" + (" (done)" if done else ""))
        return 0
    import contextlib

    # --json: stdout is the JSON only (the trainers print their logs to stdout)
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        table = exp.run(rows, args.out)
    if args.json:
        _print_json(table)
    else:
        from pathlib import Path

        print(Path(table["files"]["markdown"]).read_text())
        print(f"-> {table['files']['markdown']}, {table['files']['figure']}")
    return 0


def cmd_base(args) -> int:
    recipe = _recipe(args)
    if args.base_command == "build":
        path = build_base(recipe, force=args.force, progress=not args.json)
        if args.commit:
            path = commit_copy(path)
        card = json.loads((path / "base_card.json").read_text())
        info = {"path": str(path), **{k: card.get(k) for k in ("key", "steps", "wall_s", "final_perception")}}
        _print_json(info) if args.json else print(
            f"tiny base ({card['steps']} steps, {card['wall_s']} s): {path}"
        )
        return 0
    path = args.path or find_base(recipe)
    if path is None:
        raise FileNotFoundError("no base checkpoint for this recipe: run `reasonact base build` first")
    result = evaluate_base(path, recipe, per_class=args.per_class, level=args.level)
    _print_json(result)
    return 0


def _recipe_options(p: argparse.ArgumentParser, example: str) -> None:
    """The recipe options of every command that loads one: --profile or --config, and repeatable --set."""
    p.add_argument("--profile", default="tiny", help="tiny | qwen2.5-vl-3b | qwen2.5-vl-3b-qlora")
    p.add_argument("--config", default=None, help="recipe YAML file (instead of --profile)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help=f"recipe override, e.g. {example}"
    )


def _recipe(args):
    return load_config(args.config or args.profile, parse_overrides(args.set))


def _command(subparsers, func, name: str, text: str) -> argparse.ArgumentParser:
    """A subcommand that runs ``func(args)`` and has ``--json`` (machine-readable output)."""
    p = subparsers.add_parser(name, help=text)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reasonact", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="execute the numbered notebooks with papermill")
    r.add_argument(
        "--profile", default="tiny", help="tiny | qwen2.5-vl-3b | qwen2.5-vl-3b-qlora (default: tiny)"
    )
    r.add_argument("--from", dest="start", default=None, help="first notebook number, e.g. 03")
    r.add_argument("--to", dest="end", default=None, help="last notebook number, e.g. 05")
    r.add_argument("--out", default=None, help="run folder (default: runs/<profile>)")
    r.add_argument("--seed", type=int, default=42)
    r.add_argument("--json", action="store_true", help="print per-notebook timings as JSON")
    r.set_defaults(func=cmd_run)

    d = sub.add_parser("data", help="datasets: SynthAct generation, manifests of the real benchmarks")
    dsub = d.add_subparsers(dest="data_command", required=True)
    sa = _command(dsub, cmd_data_synthact, "synthact", "render SynthAct clips, ground truth and manifests")
    sa.add_argument("--out", required=True, help="output folder")
    sa.add_argument(
        "--clips-per-class", type=int, required=True, help="clips per class, divided between the splits"
    )
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--level", default="medium", choices=["easy", "medium", "hard"])
    sa.add_argument("--size", type=int, default=112, help="frame side in pixels (even)")
    sa.add_argument(
        "--splits", default="train=0.7,val=0.15,test=0.15", help="name=fraction,... (fractions sum to 1)"
    )
    sa.add_argument("--workers", type=int, default=2)

    m = _command(
        dsub,
        cmd_data_manifest,
        "manifest",
        "manifest of HMDB51 / UCF-101 / Kinetics-400 from official splits",
    )
    m.add_argument("dataset", choices=["hmdb51", "ucf101", "kinetics400"])
    m.add_argument("--root", required=True, help="folder with the videos")
    m.add_argument(
        "--splits", default=None, help="split files (HMDB51/UCF-101 folder) or the Kinetics csv folder"
    )
    m.add_argument("--fold", type=int, default=1, help="1-3 for HMDB51 and UCF-101")
    m.add_argument(
        "--subset", default="train", help="train | test (HMDB51, UCF-101); train | val (Kinetics-400)"
    )
    m.add_argument(
        "--pattern",
        default=None,
        help="file-name pattern, e.g. '{split}/{label}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4'",
    )
    m.add_argument("--strict", action="store_true", help="fail if any listed video is missing")
    m.add_argument("--out", required=True, help="manifest .jsonl to write")

    lb = sub.add_parser("library", help="the sub-action library: validate, statistics")
    lsub = lb.add_subparsers(dest="library_command", required=True)
    for name, text in [
        ("validate", "structure, coverage of all 552 classes, phrasing cohesion, duplicates"),
        ("stats", "phases, sub-actions, sharing across actions and datasets"),
    ]:
        q = _command(lsub, cmd_library, name, text)
        q.add_argument("--dir", default=None, help="library folder (default: data/library)")
        if name == "validate":
            q.add_argument(
                "--no-embed",
                action="store_true",
                help="skip the embedding checks (structure and coverage only)",
            )

    co = sub.add_parser("cot", help="chains of thought: teacher generation + quality filter; FRE text data")
    csub = co.add_subparsers(dest="cot_command", required=True)
    g = _command(csub, cmd_cot_generate, "generate", "teacher chains for a manifest, filtered and saved")
    g.add_argument("--teacher", default="template", choices=["template", "openai", "model"])
    g.add_argument("--manifest", required=True)
    g.add_argument(
        "--out", required=True, help="output folder (cot.jsonl, cot_dataset/, rejected.jsonl, summary.json)"
    )
    g.add_argument(
        "--format", default=None, choices=["plain", "process"], help="default: the recipe's teacher.format"
    )
    g.add_argument("--profile", default="tiny")
    g.add_argument("--limit", type=int, default=None, help="only the first N clips")
    fd = _command(csub, cmd_fre_data, "fre-data", "the Stage 1 (FRE) text reasoning mixture of the profile")
    fd.add_argument("--profile", default="tiny")
    fd.add_argument("--out", required=True)

    rw = sub.add_parser("rewards", help="score completions with every reward component")
    rsub = rw.add_subparsers(dest="rewards_command", required=True)
    sc = _command(rsub, cmd_rewards_score, "score", "score a JSON-lines file of completions")
    sc.add_argument(
        "--input",
        required=True,
        help='JSON lines: {"completion": ..., "label": ..., "dataset": ..., "phases": ...}',
    )
    sc.add_argument(
        "--weight", action="append", default=[], metavar="NAME=W", help="component weight, e.g. subaction=0.5"
    )

    tr = _command(sub, cmd_train, "train", "train a stage: fre, vsft or tgrpo")
    tr.add_argument("stage", choices=["fre", "vsft", "tgrpo"])
    _recipe_options(tr, "vsft.max_steps=20")
    tr.add_argument(
        "--run", default=None, help="run folder (default: runs/<profile>); reads 02_cot_generation"
    )
    tr.add_argument("--no-resume", action="store_true", help="start over even if the stage has checkpoints")
    tr.add_argument("--no-eval", action="store_true", help="vsft: skip the validation accuracy before/after")

    ev = _command(sub, cmd_eval, "eval", "evaluate a run's model (base + adapters up to --stage)")
    _recipe_options(ev, "eval.temperature=0")
    ev.add_argument("--run", default=None, help="run folder (default: runs/<profile>)")
    ev.add_argument("--stage", default="base", choices=["base", "fre", "vsft", "tgrpo"])
    ev.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["fre", "vsft"],
        help="leave an earlier stage's adapter out",
    )
    ev.add_argument(
        "--manifest", action="append", default=[], help="manifest .jsonl (repeat: splits, averaged per seed)"
    )
    ev.add_argument(
        "--protocol",
        default=None,
        choices=["synthact", "hmdb51", "ucf101", "kinetics400"],
        help="the paper's protocol (default without --manifest: synthact, the profile's test split)",
    )
    ev.add_argument("--root", default=None, help="videos of a real dataset (with --protocol)")
    ev.add_argument("--splits", default=None, help="official split lists / Kinetics csv (with --protocol)")
    ev.add_argument("--pattern", default=None, help="file-name pattern under --root (see data manifest)")
    ev.add_argument("--seeds", type=int, nargs="+", default=None, help="default: eval.seeds (1 11 21 31 41)")
    ev.add_argument("--limit", type=int, default=None, help="only the first N clips of each manifest")
    ev.add_argument("--out", default=None, help="output folder (default: <run>/06_evaluation/<stage>)")
    ev.add_argument("--no-compare-base", action="store_true", help="skip the base model's latency/memory")

    xp = _command(
        sub, cmd_experiments, "experiments", "the paper's Table 1 / Table 2: train every row, evaluate"
    )
    xp.add_argument("table", help="table1 | table2 | table2_room (configs/experiments/) or a table YAML file")
    _recipe_options(xp, "tgrpo.max_steps=20 (for every row)")
    xp.add_argument(
        "--rows", action="append", default=[], help="comma-separated row names (default: all but optional)"
    )
    xp.add_argument(
        "--clips-per-class",
        type=int,
        default=None,
        help="evaluate N test clips of each class (default: the table's; 0: all)",
    )
    xp.add_argument("--order-clips-per-class", type=int, help="order probe: N new sit, N stand clips; 0: off")
    xp.add_argument("--train-seeds", type=int, nargs="+", default=None, help="train every row once per seed")
    xp.add_argument("--root", default=None, help="trained stages and evaluations (default: runs/experiments)")
    xp.add_argument("--out", default=None, help="table folder (default: <root>/<table>_<profile>)")
    xp.add_argument("--dry-run", action="store_true", help="show which stages would be trained or reused")
    xp.add_argument("--jobs", type=int, default=1, help="stages and evaluations side by side in N processes")

    ba = sub.add_parser(
        "base", help="the tiny profile's perception-pretrained base model (never sees action labels)"
    )
    bsub = ba.add_subparsers(dest="base_command", required=True)
    bb = _command(bsub, cmd_base, "build", "pretrain the tiny model on SynthAct perception")
    be = _command(bsub, cmd_base, "eval", "perception accuracy, linear probe, zero-shot accuracy")
    for q in (bb, be):
        _recipe_options(q, "base.max_steps=1000")
    bb.add_argument("--force", action="store_true", help="rebuild even if cached")
    bb.add_argument(
        "--commit", action="store_true", help="also copy it to data/base/tiny-base (what CI reuses)"
    )
    be.add_argument("--path", default=None, help="base folder (default: the recipe's)")
    be.add_argument("--level", default="medium", choices=["easy", "medium", "hard"])
    be.add_argument("--per-class", type=int, default=8)

    mo = sub.add_parser("model", help="models: build the tiny Qwen2.5-VL")
    msub = mo.add_subparsers(dest="model_command", required=True)
    b = _command(msub, cmd_model_build_tiny, "build-tiny", "build (or reuse) the tiny random-init Qwen2.5-VL")
    _recipe_options(b, "model.tiny.seed=1")
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as e:  # our errors name the file and the field
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
