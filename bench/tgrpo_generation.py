"""T-GRPO's rollout generation on the CPU: one generate call against two, and the top-p samplers (prints JSON).

    python bench/tgrpo_generation.py --run runs/tiny          # after notebook 04 (merges FRE + V-SFT)
    python bench/tgrpo_generation.py --run runs/tiny --tokens 200 --repeats 5

One T-GRPO generation round of the recipe (``steps_per_generation x per_device_train_batch_size``
completions: the tiny recipe's 8 prompts x G 4 = 32 on ordered frames, plus G/2 = 2 per prompt on shuffled
frames = 16), sampled with the trainer's own generation config (temperature, top-p, vision tokens
suppressed) from the model the stage trains (base + the run's adapters + a fresh LoRA, train mode).
Every completion is forced to ``--tokens`` new tokens, so each variant does the same work.

Variants, run in turn for ``--repeats`` rounds (a change in machine speed hits all alike):
``two-calls``: the ordered batch, then the shuffled batch, transformers' top-p (how ``VideoGRPOTrainer``
generated before cbc599a); ``one-call``: both in one batch, transformers' top-p (cbc599a); ``one-call-nucleus``:
one batch, top-p by ``vlm.NucleusWarper`` (what the trainer does now); ``one-call-no-top-p``: one batch, top-p
off, the floor (transformers' TopPLogitsWarper sorts the whole vocabulary at every step). ``nucleus_ranked_all``
is the share of the warper's calls in which some row's nucleus reached past its candidates, so that it
ranked the whole vocabulary.
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
    ap.add_argument("--run", default="runs/tiny", help="merge this run's FRE/V-SFT adapters when present")
    ap.add_argument("--tokens", type=int, default=130, help="new tokens per completion (forced)")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()

    import copy
    import statistics
    import time

    import numpy as np
    import torch
    from transformers import LogitsProcessorList

    from reasonact.config import load_config
    from reasonact.prompts import encode_chats
    from reasonact.train.base import ensure_model
    from reasonact.train.tgrpo_stage import build_trainer
    from reasonact.video import read_video, shuffle_frames
    from reasonact.vlm import NucleusWarper, nucleus_sampling

    recipe = load_config(a.profile, {"tgrpo.max_steps": 1})
    ensure_model(recipe)
    trainer, info = build_trainer(recipe, tempfile.mkdtemp(prefix="tgrpo_gen_"), a.run, disable_tqdm=True)
    cfg, g, k = recipe.tgrpo, trainer.num_generations, trainer.shuffled_generations
    prompts = cfg.steps_per_generation * cfg.per_device_train_batch_size // g
    rows = info["rows"][:prompts]
    clips = [read_video(r["video"], **recipe.video.frames()) for r in rows]
    rng = np.random.default_rng(0)
    shuffled = [shuffle_frames(c, rng) for c in clips]
    ordered = [c for c in clips for _ in range(g)]
    on_shuffled = [c for c in shuffled for _ in range(k)]

    def encode(videos):
        return encode_chats(trainer.processing_class, [rows[0]["prompt"]] * len(videos), videos)

    batches = {
        "ordered": encode(ordered),
        "shuffled": encode(on_shuffled),
        "both": encode(ordered + on_shuffled),
    }
    config = copy.deepcopy(trainer.generation_config)
    config.min_new_tokens = config.max_new_tokens = a.tokens
    no_top_p, plain = copy.deepcopy(config), copy.deepcopy(config)
    no_top_p.top_p = 1.0
    settings = nucleus_sampling(trainer.temperature, trainer.top_p, trainer.top_k or 0)  # the trainer's
    settings.pop("logits_processor")  # replaced by the counting warper below
    plain.update(**settings)
    model = trainer.model.train()  # as in training: TRL generates with the model in train mode
    calls = {"all": 0, "ranked_all": 0}

    class Counting(NucleusWarper):  # counts the calls in which some row's nucleus is not in the candidates
        def __call__(self, input_ids, scores):
            s = scores / self.temperature
            mass = (s.topk(self.candidates, dim=-1).values.logsumexp(-1) - s.logsumexp(-1)).exp()
            calls["all"] += 1
            calls["ranked_all"] += bool((mass < self.top_p).any())
            return super().__call__(input_ids, scores)

    nucleus = LogitsProcessorList([Counting(trainer.temperature, trainer.top_p, trainer.top_k or 0)])

    def generate(names, cfg, **kw):
        t = time.perf_counter()
        with torch.no_grad():
            for name in names:
                model.generate(**batches[name], generation_config=cfg, **kw)
        return time.perf_counter() - t

    variants = {
        "two-calls": lambda: generate(("ordered", "shuffled"), config),
        "one-call": lambda: generate(("both",), config),
        "one-call-nucleus": lambda: generate(("both",), plain, logits_processor=nucleus),
        "one-call-no-top-p": lambda: generate(("both",), no_top_p),
    }
    for run in variants.values():  # warm-up
        run()
    load, seconds = os.getloadavg()[0], {v: [] for v in variants}
    for r in range(a.repeats):
        for v, run in variants.items():
            torch.manual_seed(r)
            seconds[v].append(round(run(), 3))
    two = seconds["two-calls"]
    print(json.dumps({
        "bench": "tgrpo_generation", "profile": recipe.profile, "merged_adapters": [str(p) for p in info["adapters"]],
        "completions": {"ordered": len(ordered), "shuffled": len(on_shuffled)}, "new_tokens": a.tokens,
        "seconds_per_round": seconds, "median": {v: statistics.median(s) for v, s in seconds.items()},
        "ratio_to_two_calls": {v: [round(x / t, 3) for x, t in zip(s, two)] for v, s in seconds.items() if v != "two-calls"},
        "ratio_to_one_call": {v: [round(x / t, 3) for x, t in zip(s, seconds["one-call"])] for v, s in seconds.items() if v.startswith("one-call-")},
        "nucleus_ranked_all": round(calls["ranked_all"] / max(calls["all"], 1), 3),
        "device": f"cpu ({os.cpu_count()} cores)", "threads": torch.get_num_threads(), "torch": torch.__version__,
        "python": platform.python_version(), "load_avg_1min_start": round(load, 2),
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
