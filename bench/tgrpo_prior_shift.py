"""How fast T-GRPO moves the answer prior: reward = 1 when the answer is ``--target``, whatever the clip
(prints one JSON object).

    python bench/tgrpo_prior_shift.py --start-run runs/tiny --target sit --steps 60 \
        --set tgrpo.per_device_train_batch_size=4 tgrpo.temperature=1.0 tgrpo.top_p=1.0

A diagnostic, not a result: it shows how strongly one update pushes every answer toward the class it
rewards. With one prompt per update (the old tiny recipe) each real T-GRPO update is such a push toward
the clip's class, which is why the recipe takes 4 prompts per update (BENCHMARKS.md, T-GRPO). The run
starts from ``--start-run``'s FRE / V-SFT adapters (linked into ``--out``); ``first`` / ``last`` are the
mean share of ``--target`` answers in the first / last quarter of the logged rollouts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    ap.add_argument("--start-run", default="runs/tiny", help="run whose FRE/V-SFT adapters form the start")
    ap.add_argument("--target", default="sit", help="the answer that is rewarded")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--out", default=None, help="run folder (default: a temp folder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, e.g. tgrpo.temperature=1.0")
    a = ap.parse_args()

    import numpy as np
    import torch

    import reasonact.train.tgrpo_stage as tgrpo_stage
    from reasonact.config import load_config, parse_overrides
    from reasonact.paths import STAGES
    from reasonact.rewards.parse import parse
    from reasonact.train.base import ensure_model
    from reasonact.train.tgrpo_stage import build_trainer

    torch.set_num_threads(a.threads)
    target = a.target.strip().lower().replace(" ", "_")

    def answer_is_target(completions=(), **kw):
        out = []
        for c in completions:
            answer = parse(c[0]["content"] if isinstance(c, list) else c).answer
            out.append(float(answer is not None and re.sub(r"\s+", "_", answer.strip().lower()) == target))
        return out

    tgrpo_stage.reward_setup = lambda cfg, scorer=None: (
        [answer_is_target],
        [1.0],
    )  # the name build_trainer calls
    recipe = load_config(
        a.profile, {"tgrpo.max_steps": a.steps, "tgrpo.eval_clips": 0, **parse_overrides(a.set)}
    )
    ensure_model(recipe)  # the tiny base (or random-init model) the recipe loads, built if missing
    run = Path(a.out or tempfile.mkdtemp(prefix="tgrpo_prior_shift_"))
    for stage in ("fre", "vsft"):
        src, dst = Path(a.start_run) / STAGES[stage] / "adapter", run / STAGES[stage] / "adapter"
        if src.is_dir() and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.symlink_to(src.resolve())
    trainer, info = build_trainer(recipe, run / STAGES["tgrpo"] / "checkpoints", run, disable_tqdm=True)
    trainer.train()
    share = [h["reward"] for h in trainer.state.log_history if "reward" in h]
    q = max(1, len(share) // 4)
    print(json.dumps({"target": target, "steps": a.steps, "set": a.set, "start": [str(p) for p in info["adapters"]],
                      "first": float(np.mean(share[:q])), "last": float(np.mean(share[-q:])), "curve": share}))  # fmt: skip


if __name__ == "__main__":
    main()
