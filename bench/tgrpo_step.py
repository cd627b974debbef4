"""T-GRPO step time, split into generation, rewards, loss forward and backward
(prints one JSON object).

    python bench/tgrpo_step.py                       # tiny profile, the run's earlier adapters merged
    python bench/tgrpo_step.py --steps 8 --threads 1 --run runs/tiny
    python bench/tgrpo_step.py --gpu-3b lora         # CUDA only: a 3B-shaped random-init model
    python bench/tgrpo_step.py --gpu-3b qlora        #   (same, 4-bit nf4 base) -> peak memory too

The trainer times its own parts (``time/*`` metrics, logged every step): per *generation round*
(one every ``steps_per_generation`` updates) the generation (the ordered and the shuffled-frame
completions, one generate call) and the rewards (both groups' scoring included); per *update* the loss forward and the
backward. ``step_s`` is the wall time of a whole optimizer step averaged over the timed steps (the
first step, which loads the sentence encoder and warms up, is left out); it is TRL's
``step_time``: generation, rewards, forward and backward, without the optimizer update. Generation
time is dominated by completion length, so ``mean_completion_tokens`` is reported with it; the tiny
base stops after ~20 tokens, a V-SFT model writes ~180-token chains: ``--min-new-tokens 180``
forces that length.

``--gpu-3b``: Qwen2.5-VL-3B's shapes (36 layers, hidden 2048, vision depth 32, vocab 151,936) with
random weights, the tiny tokenizer and a 224 px processor (512 video tokens per clip), LoRA r 64 or
QLoRA, G 8, 256 new tokens. Random weights never emit the end token, so every completion runs to
256 tokens: the worst case. Needs a GPU; not run on the CPU development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reasonact  # noqa: E402,F401  (torchvision fix first)

PARTS_PER_ROUND = ("generation", "rewards")
PARTS_PER_UPDATE = ("loss_forward", "backward")


def build_3b_shaped(out: Path, size: int = 224) -> Path:
    """A random-init model with Qwen2.5-VL-3B-Instruct's config shapes, saved in bf16 with a processor."""
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    from reasonact.data.tiny import SPECIAL_TOKENS, build_processor, build_tiny_model

    tok = AutoProcessor.from_pretrained(build_tiny_model(video_size=56)).tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=151936, hidden_size=2048, intermediate_size=11008, num_hidden_layers=36,
                         num_attention_heads=16, num_key_value_heads=2, max_position_embeddings=128000,
                         rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [16, 24, 24]},
                         tie_word_embeddings=True, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                           patch_size=14, temporal_patch_size=2, spatial_merge_size=2, window_size=112,
                           fullatt_block_indexes=[7, 15, 23, 31]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )  # fmt: skip
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.save_pretrained(out)
    build_processor(tok, size).save_pretrained(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--run", default="runs/tiny", help="merge this run's FRE/V-SFT adapters when present")
    ap.add_argument("--steps", type=int, default=6, help="optimizer steps (the first is not timed)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--gpu-3b", choices=("lora", "qlora"), default=None)
    ap.add_argument(
        "--min-new-tokens",
        type=int,
        default=0,
        help="force completions this long (a V-SFT model writes ~180-token chains; the base ~20)",
    )
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides, e.g. tgrpo.num_generations=8")
    a = ap.parse_args()

    import torch

    from reasonact.config import load_config, parse_overrides
    from reasonact.train.base import ensure_model
    from reasonact.train.tgrpo_stage import build_trainer

    if a.threads:
        torch.set_num_threads(a.threads)
    over = {
        "tgrpo.max_steps": a.steps,
        "tgrpo.logging_steps": 1,
        "tgrpo.save_steps": 10**6,
        **parse_overrides(a.set),
    }
    tmp = Path(tempfile.mkdtemp(prefix="tgrpo_bench_"))
    run = a.run
    if a.gpu_3b:
        if not torch.cuda.is_available():
            sys.exit("--gpu-3b needs a CUDA GPU")
        profile = "qwen2.5-vl-3b-qlora" if a.gpu_3b == "qlora" else "qwen2.5-vl-3b"
        over |= {"model.name_or_path": str(build_3b_shaped(tmp / "model")), "video.size": 224}
        recipe, run = load_config(profile, over), tmp / "run"  # no earlier adapters for a random model
        torch.cuda.reset_peak_memory_stats()
    else:
        recipe = load_config(a.profile, over)
        ensure_model(recipe)  # the tiny base (or random-init model) the recipe loads, built if missing
    gen = {"min_new_tokens": a.min_new_tokens} if a.min_new_tokens else None
    trainer, info = build_trainer(recipe, tmp / "ckpt", run, disable_tqdm=True, generation_kwargs=gen)
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    logs = [h for h in trainer.state.log_history if "step_time" in h]
    timed = logs[1:] or logs  # the first step loads the sentence encoder and warms up

    def mean(key, rows):
        vals = [h[key] for h in rows if h.get(key) is not None]
        return round(statistics.mean(vals), 4) if vals else None

    cfg = recipe.tgrpo
    result = {
        "profile": recipe.profile + (f" (3B-shaped random init, {a.gpu_3b})" if a.gpu_3b else ""),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
        "threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "merged_adapters": [str(p) for p in info["adapters"]],
        "settings": {"num_generations": cfg.num_generations, "min_new_tokens": a.min_new_tokens, "shuffled_generations": trainer.shuffled_generations,
                     "completions_per_update": cfg.per_device_train_batch_size,
                     "steps_per_generation": cfg.steps_per_generation, "max_completion_length": cfg.max_completion_length,
                     "frames": recipe.video.num_frames, "size": recipe.video.size, "lora_r": recipe.model.lora.r,
                     "load_in_4bit": recipe.model.load_in_4bit},
        "steps": len(logs), "timed_steps": len(timed),
        "per_generation_round_s": {p: mean(f"time/{p}", timed) for p in PARTS_PER_ROUND},
        "per_update_s": {p: mean(f"time/{p}", timed) for p in PARTS_PER_UPDATE},
        "step_s": mean("step_time", timed),
        "mean_completion_tokens": mean("completions/mean_length", timed),
        "wall_s": round(wall, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    if torch.cuda.is_available():
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
