"""Every stage of the GPU recipes through the ``reasonact`` CLI, on the 3B-shaped model (prints one JSON object).

    python bench/qwen3b_cli.py                                  # both recipes, a 480 x 360 clip (432 tokens)
    python bench/qwen3b_cli.py --profiles qwen2.5-vl-3b --clip 128x96

What a researcher runs on a GPU box (README, "On a GPU"), with two stand-ins. The model is
``reasonact.data.qwen.build_3b_shaped()``: Qwen2.5-VL-3B's widths with 2 text layers and 2 vision blocks,
random weights, the real Qwen2 tokenizer and processor. The run's inputs are small files written here in
the formats the stages read: FRE rows (``02_cot_generation/fre/fre.jsonl``, ``{"messages"}``), V-SFT
chains (``02_cot_generation/cot.jsonl``, ``{"video", "label", "chain"}``) and a clip manifest for T-GRPO
and evaluation (the evaluation's also lists a damaged file, which must be skipped and named). Each stage
is one process, in pipeline order, so V-SFT merges FRE's adapter and T-GRPO and eval merge both::

    reasonact train fre   --profile P --run R --set model.name_or_path=M --set model.dtype=float32 ...
    reasonact train vsft  ... --no-eval
    reasonact train tgrpo ... --set tgrpo.manifest=R/clips.jsonl
    reasonact eval        ... --stage tgrpo --manifest R/eval.jsonl --seeds 1 --no-compare-base

Everything else is the recipe's: LoRA r 64 on the language model (the ``-qlora`` recipe: bitsandbytes nf4
with double quantisation, here its CPU kernels), the vision tower frozen, gradient checkpointing, 16 frames
resized as qwen-vl-utils does within the 224 x 224 budget, T-GRPO's G = 8 plus G/2 completions on shuffled
frames, beta 0.05. CPU overrides (``CPU_OVERRIDES``): float32 (bf16 matmuls are slow on CPUs), one
optimiser step per stage with gradient accumulation 1, FRE / V-SFT batch 2, T-GRPO one prompt per step
(``steps_per_generation`` 1) and 8 completion tokens, evaluation 8 new tokens and one seed.

Reported per stage: ``wall_s`` (the process, model loading included), ``step_s`` (``seconds_per_step``
of the stage's metrics.json), ``peak_rss_mib`` (the process's peak resident memory, ``wait4``), and
what the stage wrote (loss, rewards, accuracy, skipped clips). CPU memory is not GPU memory: see
``bench/qwen3b_shaped.py`` for the per-token measurements and the full-3B prediction.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

PROFILES = ["qwen2.5-vl-3b", "qwen2.5-vl-3b-qlora"]
CPU_OVERRIDES = {
    "model.dtype": "float32",
    "fre.max_steps": 1,
    "fre.per_device_train_batch_size": 2,
    "fre.gradient_accumulation_steps": 1,
    "fre.logging_steps": 1,
    "vsft.max_steps": 1,
    "vsft.per_device_train_batch_size": 2,
    "vsft.gradient_accumulation_steps": 1,
    "vsft.logging_steps": 1,
    "tgrpo.max_steps": 1,
    "tgrpo.steps_per_generation": 1,
    "tgrpo.max_completion_length": 8,
    "tgrpo.logging_steps": 1,
    "tgrpo.report_to": "[]",
    "eval.max_new_tokens": 8,
}
LABELS = ["sit", "stand", "jump"]


def write_inputs(run: Path, clip: tuple[int, int]) -> dict:
    """The stand-in inputs of a run: three generated clips of ``clip`` = (width, height), FRE rows, V-SFT
    chains, a T-GRPO manifest and an evaluation manifest with one damaged file. Returns their paths."""
    import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
    from reasonact.data.manifest import write_manifest
    from reasonact.paths import write_jsonl
    from reasonact.video import write_video
    from tests.conftest import moving_square

    w, h = clip
    cot = run / "02_cot_generation"
    (cot / "fre").mkdir(parents=True, exist_ok=True)
    clips = [
        write_video(run / f"clip_{label}.mp4", moving_square(num_frames=24, h=h, w=w, seed=i), fps=12)
        for i, label in enumerate(LABELS)
    ]
    chain = "<think>Frames 1-8: the person bends. Frames 9-16: the person rises.</think><answer>{}</answer>"
    question = {"role": "user", "content": "A bag holds 3 red and 4 blue balls. How many balls?"}
    answer = {"role": "assistant", "content": "<think>3 + 4 = 7.</think><answer>7</answer>"}
    write_jsonl([{"messages": [question, answer]}] * 4, cot / "fre" / "fre.jsonl")
    chains = [{"video": str(c), "label": lb, "chain": chain.format(lb)} for c, lb in zip(clips, LABELS)]
    write_jsonl(chains, cot / "cot.jsonl")
    records = [
        {"video": str(c), "label": lb, "dataset": "synthact", "split": "test"} for c, lb in zip(clips, LABELS)
    ]
    damaged = run / "damaged.mp4"
    damaged.write_bytes(b"not a video")
    write_manifest(records, run / "clips.jsonl")
    write_manifest(records + [{**records[0], "video": str(damaged)}], run / "eval.jsonl")
    return {"clips": [str(c) for c in clips], "damaged": str(damaged)}


def stage_commands(profile: str, run: Path, model: Path, overrides: dict) -> dict[str, list[str]]:
    """The four CLI calls of a run, in order."""
    sets = [a for k, v in {"model.name_or_path": model, **overrides}.items() for a in ("--set", f"{k}={v}")]
    common = ["--profile", profile, "--run", str(run), *sets]
    return {
        "fre": ["train", "fre", *common],
        "vsft": ["train", "vsft", *common, "--no-eval"],
        "tgrpo": ["train", "tgrpo", *common, "--set", f"tgrpo.manifest={run / 'clips.jsonl'}"],
        "eval": ["eval", *common, "--stage", "tgrpo", "--manifest", str(run / "eval.jsonl"), "--seeds", "1",
                 "--no-compare-base"],
    }  # fmt: skip


def run_cli(args: list[str], log: Path) -> dict:
    """One ``reasonact`` process: exit status, wall seconds, peak RSS (MiB) and its console output."""
    cli = Path(sys.executable).with_name("reasonact")
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(cli), *args], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "rc": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024),
        "output": log.read_text(errors="replace"),
    }


def stage_summary(run: Path, stage: str) -> dict:
    """What a stage wrote, in a few numbers."""
    if stage == "eval":
        res = json.loads((run / "06_evaluation" / "tgrpo" / "results.json").read_text())
        r = res["results"]["eval"]
        keep = ("accuracy", "format", "temporal_consistency", "latency_s", "new_tokens")
        conditions = {c: {k: v.get(k) for k in keep} for c, v in r["conditions"].items()}
        return {"adapters": res["adapters"], "clips": r["clips"], "evaluated": r["evaluated"],
                "skipped": r["skipped"], "conditions": conditions}  # fmt: skip
    folder = {"fre": "03_fre", "vsft": "04_video_sft", "tgrpo": "05_tgrpo"}[stage]
    m = json.loads((run / folder / "metrics.json").read_text())
    keep = ["steps", "seconds_per_step", "train_loss_first", "merged_adapters", "parameters", "last_log"]
    return {k: m[k] for k in keep if k in m}


def run_profile(profile: str, run: Path, model: Path, clip=(128, 96), overrides=None) -> dict:
    """Write the inputs, run the four stages of ``profile`` in ``run``; stop at the first failure."""
    run = Path(run).resolve()  # the manifests hold absolute paths
    run.mkdir(parents=True, exist_ok=True)
    write_inputs(run, clip)
    result = {}
    for stage, args in stage_commands(profile, run, model, {**CPU_OVERRIDES, **(overrides or {})}).items():
        r = run_cli(args, run / f"{stage}.log")
        result[stage] = {k: v for k, v in r.items() if k != "output"}
        result[stage]["console_tail"] = r["output"][-1500:]
        if r["rc"] != 0:
            break
        result[stage].update(stage_summary(run, stage))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--profiles", nargs="+", default=PROFILES)
    p.add_argument("--clip", default="480x360", help="WxH of the generated clips (480x360: 432 video tokens)")
    p.add_argument("--out", default="runs/bench_qwen3b_cli")
    args = p.parse_args(argv)
    import reasonact  # noqa: F401
    from reasonact.data.qwen import build_3b_shaped

    model = build_3b_shaped()
    clip = tuple(int(x) for x in args.clip.split("x"))
    report = {
        "bench": "qwen3b_cli",
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "load_average_start": os.getloadavg(),
        "model": str(model),
        "clip": args.clip,
        "cpu_overrides": CPU_OVERRIDES,
        "profiles": {},
    }
    for profile in args.profiles:
        report["profiles"][profile] = run_profile(profile, Path(args.out) / profile, model, clip)
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1, default=str))
    ok = all(s.get("rc") == 0 for r in report["profiles"].values() for s in r.values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
