"""The ``reasonact`` command. Every stage is a function; this file only parses arguments and calls it.

reasonact run --profile tiny [--from 00] [--to 06] [--out runs/NAME]
reasonact data synthact --out DIR --clips-per-class N --seed S [--level easy|medium|hard]
reasonact data manifest {hmdb51,ucf101,kinetics400} --root DIR --splits PATH --fold K --subset S --out FILE
reasonact library validate|stats [--json]
reasonact rewards score --input completions.jsonl [--json]
reasonact cot generate --teacher template|openai|model --manifest M --out DIR [--format plain|process]
reasonact cot fre-data --profile tiny --out DIR
reasonact model build-tiny [--profile tiny] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys

import reasonact  # noqa: F401  (installs the CPU-torch torchvision fix before anything imports it)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2, default=str))


def cmd_run(args) -> int:
    from reasonact.runner import NotebookFailed, run_notebooks

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
    from reasonact.data.synthact import generate, parse_splits

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
    from reasonact.data.actions import build_manifest
    from reasonact.data.manifest import write_manifest

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
    from reasonact.config import load_config, parse_overrides
    from reasonact.models import build_tiny_model, count_parameters

    recipe = load_config(args.profile, parse_overrides(args.set))
    path = build_tiny_model(cfg=recipe.model.tiny, video_size=recipe.video.size, force=args.force)
    from transformers import AutoModelForImageTextToText

    n = count_parameters(AutoModelForImageTextToText.from_pretrained(path))
    info = {"path": str(path), "parameters": n["total"]}
    _print_json(info) if args.json else print(f"tiny model ({n['total'] / 1e6:.2f} M parameters): {path}")
    return 0


def cmd_library(args) -> int:
    from reasonact.library import coverage, load_library

    lib = load_library(args.dir) if args.dir else load_library()
    if args.library_command == "stats":
        stats = lib.stats()
        _print_json(stats) if args.json else print("\n".join(f"{k}: {v}" for k, v in stats.items()))
        return 0
    report = {"actions": len(lib), "coverage": coverage(lib)}
    missing = sum(len(c["missing"]) + len(c["alias_collisions"]) for c in report["coverage"].values())
    if not args.no_embed:
        from reasonact.embeddings import build_index, cohesion, near_duplicates, similar_decompositions

        index = build_index(lib)
        report["cohesion"] = cohesion(lib, index)
        report["near_duplicates"] = near_duplicates(index)
        report["similar_decompositions"] = similar_decompositions(lib)
    if args.json:
        _print_json(report)
    else:
        print(f"{len(lib)} actions load and pass the structural checks")
        for ds, c in report["coverage"].items():
            line = f"  {ds}: {c['classes'] - len(c['missing'])}/{c['classes']} classes resolve"
            print(line + (f"; missing: {', '.join(c['missing'][:10])}" if c["missing"] else ""))
            for col in c["alias_collisions"]:
                print(f"    ambiguous alias in {ds}: {col}")
        if "cohesion" in report:
            co = report["cohesion"]
            print(f"phrasing cohesion: {co['passed']}/{co['checked']} sub-actions ({co['share']:.1%})")
            print(
                f"near-duplicate sub-actions (cosine > 0.9, different names): {len(report['near_duplicates'])}"
            )
            print(
                f"similar decompositions flagged for review (Jaccard >= 0.8): {len(report['similar_decompositions'])}"
            )
    return 1 if missing else 0


def cmd_cot_generate(args) -> int:
    from reasonact.cot_filter import generate_cot

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
    from reasonact.config import load_config
    from reasonact.data.reasoning import build_fre_data

    summary = build_fre_data(load_config(args.profile), args.out)
    _print_json(summary) if args.json else print(f"FRE data -> {args.out}")
    return 0


def cmd_rewards_score(args) -> int:
    from reasonact.config import parse_overrides
    from reasonact.rewards.report import score_file

    weights = {k: float(v) for k, v in parse_overrides(args.weight).items()} or None
    rows = score_file(args.input, weights=weights)
    if args.json:
        _print_json(rows)
        return 0
    names = [k for k in rows[0] if k not in ("index", "label", "detections")] if rows else []
    print("\t".join(["#", "label", *names]))
    for r in rows:
        print(
            "\t".join(
                [
                    str(r["index"]),
                    str(r["label"]),
                    *(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in names),
                ]
            )
        )
    return 0


def cmd_base(args) -> int:
    from reasonact.base import build_base, commit_copy, evaluate_base, find_base
    from reasonact.config import load_config, parse_overrides

    recipe = load_config(args.profile, parse_overrides(args.set))
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
    sa = dsub.add_parser(
        "synthact", help="render SynthAct clips (mp4 + per-frame ground truth) and manifests"
    )
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
    sa.add_argument("--json", action="store_true")
    sa.set_defaults(func=cmd_data_synthact)

    m = dsub.add_parser(
        "manifest", help="manifest of HMDB51 / UCF-101 / Kinetics-400 from their official split files"
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
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_data_manifest)

    lb = sub.add_parser("library", help="the sub-action library: validate, statistics")
    lsub = lb.add_subparsers(dest="library_command", required=True)
    for name, text in [
        ("validate", "structure, coverage of all 552 classes, phrasing cohesion, duplicates"),
        ("stats", "phases, sub-actions, sharing across actions and datasets"),
    ]:
        q = lsub.add_parser(name, help=text)
        q.add_argument("--dir", default=None, help="library folder (default: data/library)")
        q.add_argument("--json", action="store_true")
        if name == "validate":
            q.add_argument(
                "--no-embed",
                action="store_true",
                help="skip the embedding checks (structure and coverage only)",
            )
        q.set_defaults(func=cmd_library)

    co = sub.add_parser("cot", help="chains of thought: teacher generation + quality filter; FRE text data")
    csub = co.add_subparsers(dest="cot_command", required=True)
    g = csub.add_parser("generate", help="teacher chains for every clip of a manifest, filtered and saved")
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
    g.add_argument("--json", action="store_true")
    g.set_defaults(func=cmd_cot_generate)
    fd = csub.add_parser("fre-data", help="the Stage 1 (FRE) text reasoning mixture of the profile")
    fd.add_argument("--profile", default="tiny")
    fd.add_argument("--out", required=True)
    fd.add_argument("--json", action="store_true")
    fd.set_defaults(func=cmd_fre_data)

    rw = sub.add_parser("rewards", help="score completions with every reward component")
    rsub = rw.add_subparsers(dest="rewards_command", required=True)
    sc = rsub.add_parser(
        "score", help="score a JSON-lines file of completions (+ label, dataset, phases, ...)"
    )
    sc.add_argument(
        "--input",
        required=True,
        help='JSON lines: {"completion": ..., "label": ..., "dataset": ..., "phases": ...}',
    )
    sc.add_argument(
        "--weight", action="append", default=[], metavar="NAME=W", help="component weight, e.g. subaction=0.5"
    )
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=cmd_rewards_score)

    ba = sub.add_parser(
        "base", help="the tiny profile's perception-pretrained base model (never sees action labels)"
    )
    bsub = ba.add_subparsers(dest="base_command", required=True)
    bb = bsub.add_parser("build", help="pretrain the tiny model on SynthAct perception (cached by recipe)")
    be = bsub.add_parser(
        "eval", help="perception accuracy (vs the wrong-video control), linear probe, zero-shot accuracy"
    )
    for q in (bb, be):
        q.add_argument("--profile", default="tiny")
        q.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="recipe override, e.g. base.max_steps=1000",
        )
        q.add_argument("--json", action="store_true")
        q.set_defaults(func=cmd_base)
    bb.add_argument("--force", action="store_true", help="rebuild even if cached")
    bb.add_argument(
        "--commit", action="store_true", help="also copy it to data/base/tiny-base (what CI reuses)"
    )
    be.add_argument("--path", default=None, help="base folder (default: the recipe's)")
    be.add_argument("--level", default="medium", choices=["easy", "medium", "hard"])
    be.add_argument("--per-class", type=int, default=8)

    mo = sub.add_parser("model", help="models: build the tiny Qwen2.5-VL")
    msub = mo.add_subparsers(dest="model_command", required=True)
    b = msub.add_parser("build-tiny", help="build (or find in the cache) the tiny random-init Qwen2.5-VL")
    b.add_argument("--profile", default="tiny")
    b.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="recipe override, e.g. model.tiny.seed=1",
    )
    b.add_argument("--force", action="store_true", help="rebuild even if cached")
    b.add_argument("--json", action="store_true")
    b.set_defaults(func=cmd_model_build_tiny)
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
