"""Learning check of T-GRPO on the tiny profile: mean total reward and accuracy before/after (prints JSON).

    python bench/tgrpo_learning.py --start-run runs/tiny --seeds 42 1 --steps 120 --clips 96
    python bench/tgrpo_learning.py ... --before-cache before.json --set tgrpo.learning_rate=1e-4   # one setting per call

For each training seed, ``train_tgrpo`` runs into ``<out>/seed<N>`` from the start model: the recipe's
base with the earlier adapters (FRE, V-SFT) of ``--start-run`` merged, when that run has them. Before
and after are scored on the SynthAct val clips (``--clips``, spread over the classes) with the paper's
decoding (``recipe.eval``: temperature 0.7, top-p 0.9), one sampled completion per clip for each of
``--eval-seeds``; every number is mean ± std over those sampling seeds. The components are the rewards
module's (``reward_components`` with the recipe's weights); ``total`` is their weighted sum (the
temporal bonus is not part of it: it needs a shuffled group). ``--before-cache FILE`` keeps the start's
scores between calls (reused when the start adapters, clips, sampling seeds and decoding are the same).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reasonact  # noqa: E402,F401  (torchvision fix first)

KEYS = ("total", "accuracy", "format", "subaction", "temporal_consistency")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--start-run", default="runs/tiny", help="run whose FRE/V-SFT adapters form the start")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 11])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--clips", type=int, default=36)
    ap.add_argument("--eval-seeds", type=int, nargs="+", default=[1, 11, 21])
    ap.add_argument("--out", default=None, help="folder for the runs (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument(
        "--before-cache", default=None, help="JSON file that keeps the start's scores between calls"
    )
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, e.g. tgrpo.learning_rate=1e-4")
    a = ap.parse_args()

    import numpy as np
    import torch

    from reasonact.config import load_config, parse_overrides
    from reasonact.paths import STAGES, prior_adapters
    from reasonact.train.base import ensure_model
    from reasonact.train.tgrpo_stage import eval_records, score_clips, train_tgrpo
    from reasonact.vlm import load_model

    if a.threads:
        torch.set_num_threads(a.threads)
    out = Path(a.out or tempfile.mkdtemp(prefix="tgrpo_learning_"))
    over = {"tgrpo.max_steps": a.steps, "tgrpo.eval_clips": 0, **parse_overrides(a.set)}
    recipe = load_config(a.profile, over)
    ensure_model(recipe)  # the tiny base (or random-init model) the recipe loads, built if missing
    start = prior_adapters(a.start_run, "tgrpo", recipe.profile)
    records = eval_records(recipe, a.clips)

    def score(adapters):
        model, processor = load_model(recipe, lora=False, adapters=adapters)
        runs = [score_clips(model, processor, recipe, records, s) for s in a.eval_seeds]
        return {k: [round(float(np.mean([r[k] for r in runs])), 4), round(float(np.std([r[k] for r in runs])), 4)]
                for k in KEYS}  # fmt: skip

    before_file = Path(a.before_cache) if a.before_cache else None
    key = {"start": [str(p) for p in start] or "base", "clips": [r.get("path", r.get("video")) for r in records],
           "eval_seeds": a.eval_seeds, "eval": str(recipe.eval)}  # fmt: skip
    cached = json.loads(before_file.read_text()) if before_file and before_file.is_file() else None
    if cached and cached.get("key") == json.loads(json.dumps(key, default=str)):
        before = cached["before"]
    else:
        before = score(start)
        if before_file:
            before_file.write_text(json.dumps({"key": key, "before": before}, default=str))
    result = {"profile": recipe.profile, "start": key["start"], "steps": a.steps, "set": a.set,
              "clips": len(records), "eval_seeds": a.eval_seeds, "before": before, "after": {}}  # fmt: skip
    for seed in a.seeds:
        run = out / f"seed{seed}"
        for stage in ("fre", "vsft"):  # the start model's adapters, seen by train_tgrpo as earlier stages
            src = Path(a.start_run) / STAGES[stage] / "adapter"
            dst = run / STAGES[stage] / "adapter"
            if src.is_dir() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                dst.symlink_to(src.resolve())
        t0 = time.time()
        recipe.tgrpo.seed = seed
        m = train_tgrpo(recipe, run=run, resume=False)
        last = m["last_log"]
        result["after"][str(seed)] = {
            **score(start + [run / STAGES["tgrpo"] / "adapter"]),
            "train_s": round(time.time() - t0, 1),
            "train_reward_first_last": [m["first_log"].get("reward"), last.get("reward")],
            "kl_last": last.get("kl"),
        }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
