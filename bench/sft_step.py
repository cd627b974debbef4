"""FRE / V-SFT step time on the CPU: the stage as it runs, against the way it ran before (prints JSON).

    python bench/sft_step.py --run runs/tiny                       # V-SFT: current vs both old ways, x3
    python bench/sft_step.py --run runs/tiny --stage fre --variants current,fused-head

Trains ``--steps`` steps of the recipe's stage on the run's data (``02_cot_generation``, written by
notebook 02 / ``reasonact run``) from the recipe's base, into a temporary folder, without the stage's
evaluations; ``seconds_per_step`` is the training wall time over the steps (model loading excluded).
The variants run in turn, ``--repeats`` rounds, so a change in the machine's speed during the benchmark
hits every variant alike; ``ratio`` is each variant's time over ``current``'s in the same round.

Variants: ``current`` (what the stages do); ``fused-head``: the loss through TRL's fused LM head, which
TRL 1.16's SFTTrainer always uses (vocabulary tiles: Triton on a GPU, torch stand-ins on a CPU) and
``train_sft`` now uses on a GPU only; ``decode-every-step``: every example decodes its clip again, as V-SFT
did before ``clip_reader``; ``before``: both, the stage as it was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reasonact  # noqa: E402,F401  (torchvision fix first)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--run", default="runs/tiny", help="a run with 02_cot_generation (notebook 02's output)")
    ap.add_argument("--stage", choices=("fre", "vsft"), default="vsft")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--variants", default="current,before", help="comma-separated (docstring)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import functools
    import shutil
    import statistics

    import torch
    from trl import SFTTrainer

    import reasonact.train.sft as sft
    from reasonact.config import load_config
    from reasonact.train.base import ensure_model
    from reasonact.video import read_video

    if a.threads:
        torch.set_num_threads(a.threads)
    cot = Path(a.run) / "02_cot_generation"
    if not cot.is_dir():
        sys.exit(f"{cot}: missing; run notebooks 00-02 first (reasonact run --profile tiny --to 02)")
    own = {"cpu_sft_trainer": sft.cpu_sft_trainer, "clip_reader": sft.clip_reader}
    old = {"cpu_sft_trainer": lambda: SFTTrainer, "clip_reader": lambda f: functools.partial(read_video, **f)}
    patches = {
        "current": {},
        "fused-head": {"cpu_sft_trainer"},
        "decode-every-step": {"clip_reader"},
        "before": {"cpu_sft_trainer", "clip_reader"},
    }
    variants = a.variants.split(",")
    if unknown := sorted(set(variants) - set(patches)):
        sys.exit(f"unknown variant {unknown[0]!r}; choose from {', '.join(patches)}")
    knobs = {"max_steps": a.steps, "eval_steps": 0, "save_steps": 10**6}
    over = {f"{a.stage}.{k}": v for k, v in knobs.items()}
    recipe = load_config(a.profile, {**over, "vsft.from_fre": False})  # from the base: no FRE adapter needed
    ensure_model(recipe)
    load, runs = os.getloadavg()[0], []
    for r in range(a.repeats):
        for v in variants:
            for name, fn in own.items():
                setattr(sft, name, old[name] if name in patches[v] else fn)
            run = Path(tempfile.mkdtemp(prefix="sft_bench_"))
            shutil.copytree(cot, run / "02_cot_generation")
            m = sft.train_stage(recipe, a.stage, run=run)
            runs.append({"variant": v, "round": r, "seconds_per_step": m["seconds_per_step"],
                         "loss_first": m["train_loss_first"], "loss_last": m["train_loss_last"]})  # fmt: skip
            shutil.rmtree(run, ignore_errors=True)
    sec = {v: [x["seconds_per_step"] for x in runs if x["variant"] == v] for v in variants}
    base, ratio = sec.get("current"), None
    if base:
        ratio = {v: [round(t / c, 3) for t, c in zip(sec[v], base)] for v in variants if v != "current"}
    cfg = getattr(recipe, a.stage)
    print(json.dumps({
        "bench": "sft_step", "stage": a.stage, "profile": recipe.profile, "steps": a.steps,
        "batch": cfg.per_device_train_batch_size, "runs": runs,
        "median_seconds_per_step": {v: statistics.median(t) for v, t in sec.items()},
        "ratio_to_current": ratio,
        "device": f"cpu ({os.cpu_count()} cores)", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "load_avg_1min_start": round(load, 2),
        "load_avg_1min_end": round(os.getloadavg()[0], 2),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
