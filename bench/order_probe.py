"""Where does the tiny model lose the order of events? Probes on SynthAct's order-only pair (prints one JSON object).

    python bench/order_probe.py --run runs/NAME [--pairs 40] [--stages base,fre,vsft,tgrpo]

sit and stand rendered from the same seed are the same frames in reverse order, so on these clips any
difference a model makes between the two labels comes from the order of the frames. For ``--pairs`` seeds
(SynthAct split "probe", which no stage trains or evaluates on) both clips are rendered at the profile's
level and size and sampled like ``read_video`` (16 frames, 56 px). Each model (the perception base, then
the base with the run's adapters merged up to each stage, as ``reasonact eval`` loads them) is scored
teacher-forced, so sampling noise plays no part:

- ``chain_choice``: the template teacher's chain of the clip's own label against the chain it writes for
  the paired clip of the other label (same seed, reversed), both as the assistant's answer to the action
  question; right when the clip's own chain has the higher log-likelihood (summed over its tokens).
  ``ordered``: the clip's frames; ``shuffled``: ``video.shuffle_frames`` (the evaluation's shuffled
  condition). An order-blind model scores 0.5 on both; one that uses the order, well above 0.5 ordered
  and 0.5 shuffled.
- ``perception``: the base's own task ("Describe the body in frames 5-6.", one range at a time), accuracy
  of the ``height`` field at the first two and last two ranges (where sit and stand differ: upright vs
  seated) and over all fields and ranges, with ordered frames and with the frames shuffled while the
  question still names the original positions: the gap is how much the answer depends on *where* a pose is.

Accuracies come with a 95% bootstrap interval over clips (``eval.metrics.bootstrap_ci``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

import reasonact  # noqa: E402,F401  (first: the CPU-torch torchvision fix)
from reasonact.config import load_config, parse_overrides  # noqa: E402
from reasonact.cot.teacher import TemplateTeacher  # noqa: E402
from reasonact.data.perception import render_example  # noqa: E402
from reasonact.data.synthact import clip_seed  # noqa: E402
from reasonact.eval.metrics import bootstrap_ci  # noqa: E402
from reasonact.library import load_library  # noqa: E402
from reasonact.paths import adapter_dir, prior_adapters  # noqa: E402
from reasonact.prompts import encode_videos, format_hint  # noqa: E402
from reasonact.train.base import ensure_model, perception_accuracy  # noqa: E402
from reasonact.train.sft import VideoCollator  # noqa: E402
from reasonact.video import Video, shuffle_frames  # noqa: E402
from reasonact.vlm import load_model  # noqa: E402

PAIR = ("sit", "stand")


def render_pairs(recipe, n: int, seed: int = 0) -> list[dict]:
    """``n`` (sit, stand) pairs from the same seeds, sampled as the model sees them (``base.render_example``),
    each with the template teacher's chain."""
    teacher = TemplateTeacher(load_library(), style=recipe.teacher.style, seed=recipe.teacher.seed)
    args = (recipe.data.synthact_level, recipe.data.synthact_size, recipe.video.size, recipe.video.num_frames)
    clips = []
    for i in range(n):
        s = clip_seed(seed, "probe", "pair", i)
        for label in PAIR:
            it = render_example(label, s, *args)
            rec = {**it["record"], "video": f"probe_{label}_{i}.mp4", "split": "probe"}
            video = Video(it["frames"], it["indices"], it["fps"], it["total_frames"], rec["video"])
            clips.append({"pair": i, "label": label, "seed": s, "video": video, "fields": it["fields"],
                          "chain": teacher.write(rec)})  # fmt: skip
    return clips


@torch.no_grad()
def chain_loglik(model, processor, videos: list[Video], chains: list[str], batch_size: int = 8) -> np.ndarray:
    """Summed log-likelihood of each chain as the answer to the action question about its video."""
    collator, out = VideoCollator(processor), []
    model.eval()
    for s in range(0, len(videos), batch_size):
        batch = encode_videos(processor, videos[s : s + batch_size], answers=chains[s : s + batch_size],
                              hint=format_hint("plain"))  # fmt: skip
        labels = collator.labels(batch["input_ids"], batch["attention_mask"])
        logits = model(**batch).logits[:, :-1].float()
        target = labels[:, 1:]
        logp = torch.log_softmax(logits, -1).gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        out += (logp * (target != -100)).sum(1).tolist()
    return np.array(out)


def ci(hits) -> dict:
    """Mean and bootstrap 95% CI of per-clip 0/1 scores, in percent."""
    r = bootstrap_ci(pd.DataFrame({"run": np.asarray(hits, float) * 100}))
    return {"mean": round(r["mean"], 1), "ci95": [round(x, 1) for x in r["ci95"]], "clips": r["clips"]}


def chain_choice(model, processor, clips: list[dict], shuffled: bool) -> dict:
    rng = np.random.default_rng(0)
    videos = [shuffle_frames(c["video"], rng) if shuffled else c["video"] for c in clips]
    other = {(c["pair"], c["label"]): c["chain"] for c in clips}
    own = chain_loglik(model, processor, videos, [c["chain"] for c in clips])
    swap = [other[(c["pair"], PAIR[1 - PAIR.index(c["label"])])] for c in clips]
    alt = chain_loglik(model, processor, videos, swap)
    return ci(own > alt)


def perception(model, processor, clips: list[dict], shuffled: bool) -> dict:
    """Teacher-forced per-range accuracy (the base's task), ``height`` at the ends and all fields."""
    rng = np.random.default_rng(1)
    items = []
    for c in clips:
        v = shuffle_frames(c["video"], rng) if shuffled else c["video"]
        items.append({"frames": v.frames, "indices": v.indices, "fps": v.fps, "total_frames": v.total_frames,
                      "seed": c["seed"], "fields": c["fields"]})  # fmt: skip
    acc = perception_accuracy(model, processor, items, ranges_per_example=1, per_range=True)
    return {"all_fields": round(100 * acc["mean"], 1),
            "height_ends": round(100 * float(np.mean([acc["per_range"]["height"][r] for r in (0, 1, 6, 7)])), 1),
            "height_middle": round(100 * float(np.mean([acc["per_range"]["height"][r] for r in (2, 3, 4, 5)])), 1)}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", required=True, help="a tiny-profile run folder (reasonact run / make pipeline)")
    p.add_argument("--profile", default="tiny")
    p.add_argument("--pairs", type=int, default=40)
    p.add_argument("--stages", default="base,fre,vsft,tgrpo")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="recipe override (the run's)"
    )
    args = p.parse_args(argv)
    recipe = load_config(args.profile, parse_overrides(args.set))
    ensure_model(recipe)
    t0 = time.time()
    clips = render_pairs(recipe, args.pairs)
    report = {"bench": "order_probe", "run": args.run, "pairs": args.pairs, "level": recipe.data.synthact_level,
              "overrides": args.set, "base": str(ensure_model(recipe)),
              "load_average_start": os.getloadavg(), "stages": {}}  # fmt: skip
    for stage in args.stages.split(","):
        if stage == "base":
            adapters = []
        else:
            own = adapter_dir(args.run, stage, recipe.profile)
            if not (own / "adapter_config.json").is_file():
                report["stages"][stage] = "no adapter in the run"
                continue
            adapters = prior_adapters(args.run, stage, recipe.profile) + [own]
        model, processor = load_model(recipe, lora=False, adapters=adapters)
        report["stages"][stage] = {
            "adapters": [str(a) for a in adapters],
            "chain_choice": {c: chain_choice(model, processor, clips, c == "shuffled") for c in ("ordered", "shuffled")},
            "perception": {c: perception(model, processor, clips, c == "shuffled") for c in ("ordered", "shuffled")},
        }  # fmt: skip
        print(stage, json.dumps(report["stages"][stage]), file=sys.stderr, flush=True)
    report["seconds"] = round(time.time() - t0, 1)
    report["load_average_end"] = os.getloadavg()
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
