"""The GPU profile's model on the CPU: Qwen2.5-VL-3B's widths at reduced depth (prints one JSON object).

    python bench/qwen3b_shaped.py                          # fp32 and bf16, 2 text layers + 2 vision blocks
    python bench/qwen3b_shaped.py --dtypes float32 --generations 4 --new-tokens 16

The model is ``reasonact.data.qwen.build_3b_shaped()``: Qwen2.5-VL-3B-Instruct's config (hidden 2048,
16/2 heads, intermediate 11008, vocab 151,936, tied embeddings; vision 1280 wide, window attention and
one full-attention block) with 2 text layers and 2 vision blocks, random weights, the real processor.
It is loaded through the package (``load_config("qwen2.5-vl-3b", {"model.name_or_path": ...})`` and
``reasonact.vlm.load_model``: LoRA r 64 on q/k/v/o/gate/up/down of the language model, vision frozen,
gradient checkpointing as the recipe has it), one process per dtype. Stages, each timed and with its
peak RSS (Linux ``VmHWM``, reset through ``/proc/self/clear_refs`` after ``malloc_trim`` before each):

- ``vsft``: one AdamW step, batch 1: a generated 4:3 clip (480 x 360, 16 frames) read with
  ``read_video(..., resize="qwen")`` -> 168 x 252 px -> 432 video tokens, the V-SFT prompt and a
  ~120-token chain through ``reasonact.train.sft.VideoCollator`` (labels on the answer only). Run with
  gradient checkpointing on (``vsft``, the recipe) and off (``vsft_no_gc``); the second run also records
  the bytes autograd saves for backward (``saved_tensors_hooks``), per text layer, in the vision tower and
  elsewhere (embeddings, lm_head, loss): the measured activation sizes the prediction scales.
- ``tgrpo``: ``--generations`` G completions of ``--new-tokens`` tokens (forced: ``min_new_tokens``) sampled
  at temperature 1 from one clip (``encode_videos``; the recipe: G 8, up to 256 tokens, plus G/2 on shuffled
  frames, not run here), then one GRPO loss over the G sequences: policy forward with ``logits_to_keep``,
  reference forward with the adapter disabled (beta 0.05), backward, AdamW step. Generation and update
  are timed separately.
- ``fre``: one AdamW step on a text-only example (a ~250-token question + chain), batch 1.

Predicted peak memory of the full 3B (36 text layers, 32 vision blocks) per stage, batch sizes from the
recipes (``qwen2.5-vl-3b``: V-SFT 2, FRE 4; ``-qlora``: 1 and 2; T-GRPO 8 completions of P + 256 tokens),
with N the full model's parameters from the measured counts (N = N_2 + 34 n_layer + 30 n_block) and
s, h, w measured per token on the bf16 run (fp32 halved when bf16 was not run)::

    peak = W + 16 N_lora + A + X + C
    W      = 2 N                                       (bf16 LoRA)
           = 0.516 N_linear + 2 (N - N_linear)         (QLoRA: nf4 + double quantisation on the 36 layers'
                                                        linear weights; embeddings/lm_head, vision in bf16)
    N_lora = 36 n_lora_layer                           (fp32 weight 4 + grad 4 + AdamW m, v 8 = 16 bytes)
    A      = B T (36 s_layer) + B T_logit h            (gradient checkpointing off)
           = B T (36 * 2048 * 2) + B T s_layer + B T_logit h   (on: each layer's bf16 input kept, one layer
                                                        recomputed at a time)
    X      = B T_logit w                               (transient working memory: logits' gradient, softmax)
    C      = 0.5 GiB                                   (CUDA context and allocator slack; assumed, not measured)

s_layer = bytes saved per token by one text layer, h = bytes saved per logit position outside the layers
(lm_head output, the fp32 loss), w = (peak RSS over the step's start - saved bytes - LoRA gradients) per
logit position, all from the ``vsft_no_gc`` step. The vision tower's saved bytes are reported
(``vision_mib``) but NOT in the formula (measured 288 MiB at 2 blocks in fp32 although the tower is frozen:
not yet explained; if it scales with depth it adds ~2 GiB per clip at 32 blocks in bf16). T-GRPO's generation phase (KV
cache 36 x 2 x 256 x 2 bytes per token, 24 sequences) is far below its update phase and is reported beside it.
CPU RSS is not GPU memory: the measured peaks include the Python process (~0.6 GB before loading) and
glibc's allocator; the prediction uses only the byte counts and per-token slopes above.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reasonact  # noqa: E402,F401  (torchvision fix first)

GIB = 2**30
FULL = {"text_layers": 36, "vision_blocks": 32}
CHAIN_SENTENCES = [
    "frames 1-4: the person stands upright with the arms at the sides.",
    "frames 5-8: the knees bend and the arms swing back behind the hips.",
    "frames 9-12: the legs extend fast, the arms swing forward and the feet leave the ground.",
    "frames 13-16: the body lands, the knees bend to absorb the impact, then the trunk rises again.",
    "The sub-actions in order are crouch, swing arms, take off, flight and landing, which is a jump.",
]
FRE_QUESTION = (
    "A train leaves a station at 9:00 and travels at 80 km per hour. A second train leaves the same station "
    "at 10:30 on the same track and travels at 120 km per hour. At what time does the second train catch up "
    "with the first one, and how far from the station are they then? Think step by step."
)
FRE_STEP = (
    "By 10:30 the first train has travelled for 1.5 hours at 80 km per hour, which is 120 km. The second train "
    "closes the gap at 120 - 80 = 40 km per hour, so it needs 120 / 40 = 3 hours. "
)


def rss() -> dict[str, int]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS:", "VmHWM:")):
            out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def reset_peak() -> int:
    """Give freed memory back (glibc), reset VmHWM to the current RSS; returns that RSS in bytes."""
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    Path("/proc/self/clear_refs").write_text("5")
    return rss()["VmRSS"]


def gib(x: float) -> float:
    return round(x / GIB, 3)


def make_clip(path: Path) -> Path:
    """A 4:3 clip (480 x 360, 32 frames): a square crossing a gradient, so every frame differs."""
    import numpy as np

    from reasonact.video import write_video

    t = np.arange(32)[:, None, None]
    y, x = np.mgrid[0:360, 0:480]
    frames = np.zeros((32, 360, 480, 3), np.uint8)
    frames[..., 0] = (x[None] // 4 + t * 5) % 256
    frames[..., 1] = (y[None] // 3) % 256
    for i in range(32):
        c = 20 + i * 13
        frames[i, 140:220, c : c + 80] = (250, 240, 30)
    return write_video(path, frames, fps=12)


class SavedBytes:
    """Bytes autograd saves for backward, by scope (text layer i, vision, other); parameters and tensors
    already counted (views, the same input saved twice) are not counted again."""

    def __init__(self, base):
        import torch

        self.torch = torch
        self.params = {p.untyped_storage().data_ptr() for p in base.parameters()}
        self.seen: set[int] = set()
        self.scope = ["other"]
        self.bytes: dict[str, int] = {}
        self.handles = []
        lm, vis = base.model.language_model, base.model.visual
        for i, layer in enumerate(lm.layers):
            self._track(layer, f"text_layer_{i}")
        self._track(vis, "vision")

    def _track(self, module, name):
        def pre(*_):
            self.scope.append(name)

        def post(*_):
            self.scope.pop()

        self.handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]

    def pack(self, t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in self.params and ptr not in self.seen:
            self.seen.add(ptr)
            key = self.scope[-1]
            self.bytes[key] = self.bytes.get(key, 0) + t.untyped_storage().nbytes()
        return t

    def hooks(self):
        return self.torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    def close(self):
        for h in self.handles:
            h.remove()


def parameter_counts(model) -> dict:
    base = model.get_base_model()
    lm, vis = base.model.language_model, base.model.visual

    def count(module, lora=False):
        return sum(p.numel() for n, p in module.named_parameters() if ("lora_" in n) == lora)

    def linear(module):
        return sum(
            p.numel()
            for n, p in module.named_parameters()
            if "lora_" not in n and p.dim() == 2 and n.endswith(".weight")
        )

    total = count(base)
    n_layer, n_block = count(lm.layers[0]), count(vis.blocks[0])
    layers, blocks = len(lm.layers), len(vis.blocks)
    full = total + (FULL["text_layers"] - layers) * n_layer + (FULL["vision_blocks"] - blocks) * n_block
    return {
        "total": total,
        "text_layers": layers,
        "vision_blocks": blocks,
        "per_text_layer": n_layer,
        "per_text_layer_linear": linear(lm.layers[0]),
        "per_vision_block": n_block,
        "embeddings": lm.embed_tokens.weight.numel(),
        "lm_head_tied": base.lm_head.weight is lm.embed_tokens.weight,
        "vision_patch_embed": count(vis.patch_embed),
        "vision_merger": count(vis.merger),
        "lora_trainable": count(base, lora=True),
        "lora_per_text_layer": count(lm.layers[0], lora=True),
        "full_3b_total": full,
        "full_3b_lora_trainable": FULL["text_layers"] * count(lm.layers[0], lora=True),
    }


def worker(a) -> dict:
    """One dtype: load through the package, run the stages, return the measurements."""
    import torch

    from reasonact.config import load_config
    from reasonact.prompts import QUESTION, encode_videos, format_hint, video_messages
    from reasonact.train.sft import VideoCollator
    from reasonact.video import read_video
    from reasonact.vlm import load_model, vision_token_ids

    torch.manual_seed(0)
    rss_start = rss()["VmRSS"]
    over = {"model.name_or_path": a.model, "model.dtype": a.worker, "video.size": 224, "video.resize": "qwen"}
    recipe = load_config("qwen2.5-vl-3b", over)
    t0 = time.perf_counter()
    model, processor = load_model(recipe)
    out = {"load_s": round(time.perf_counter() - t0, 1), "rss_before_load_gib": gib(rss_start)}
    out["rss_after_load_gib"] = gib(rss()["VmRSS"])
    out["params"] = parameter_counts(model)
    base = model.get_base_model()
    tok = processor.tokenizer
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trainable, lr=1e-5)
    collator = VideoCollator(processor)

    video = read_video(a.clip, num_frames=recipe.video.num_frames, size=recipe.video.size, resize="qwen")
    words = " ".join(CHAIN_SENTENCES * 3)
    chain = tok.decode(tok.encode(words)[: a.chain_tokens - 12])
    answer = f"<think>{chain}</think><answer>jump</answer>"
    hint = format_hint("plain")
    example = {"messages": video_messages(QUESTION, answer, hint), "frames": video.frames,
               "video_metadata": video.metadata()}  # fmt: skip

    def train_step(batch, probe=None):
        model.train()
        opt.zero_grad(set_to_none=True)
        start = reset_peak()
        t = time.perf_counter()
        if probe:
            with probe.hooks():
                loss = model(**batch).loss
        else:
            loss = model(**batch).loss
        loss.backward()
        opt.step()
        return {"step_s": round(time.perf_counter() - t, 2), "loss": round(float(loss), 3),
                "peak_rss_gib": gib(rss()["VmHWM"]), "peak_over_start_gib": gib(rss()["VmHWM"] - start),
                "_over_start": rss()["VmHWM"] - start}  # fmt: skip

    stages = {}
    batch = collator([example])
    n_video = int((batch["input_ids"] == tok.convert_tokens_to_ids("<|video_pad|>")).sum())
    n_answer = int((batch["labels"] != -100).sum())
    info = {"frame_hw": list(video.frames.shape[1:3]), "video_tokens": n_video, "answer_tokens": n_answer,
            "tokens": int(batch["input_ids"].shape[1])}  # fmt: skip
    if "vsft" in a.stages:
        stages["vsft"] = {**info, "gradient_checkpointing": True, **train_step(batch)}
        base.gradient_checkpointing_disable()
        probe = SavedBytes(base)
        stages["vsft_no_gc"] = {**info, "gradient_checkpointing": False, **train_step(batch, probe)}
        probe.close()
        saved = probe.bytes
        layers = [v for k, v in saved.items() if k.startswith("text_layer_")]
        total = sum(saved.values())
        transient = max(0, stages["vsft_no_gc"]["_over_start"] - total - 4 * out["params"]["lora_trainable"])
        t = info["tokens"]
        stages["vsft_no_gc"]["saved_for_backward"] = {
            "total_mib": round(total / 2**20, 1),
            "per_text_layer_mib": round(sum(layers) / len(layers) / 2**20, 1),
            "vision_mib": round(saved.get("vision", 0) / 2**20, 1),
            "other_mib": round(saved.get("other", 0) / 2**20, 1),
            "s_layer_bytes_per_token": round(sum(layers) / len(layers) / t),
            "h_bytes_per_logit_position": round(saved.get("other", 0) / t),
            "w_transient_bytes_per_logit_position": round(transient / t),
        }
        base.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})

    if "tgrpo" in a.stages:
        g, c = a.generations, a.new_tokens
        prompt = encode_videos(processor, [video] * g, [QUESTION] * g, hint=hint, padding_side="left")
        p = int(prompt["input_ids"].shape[1])
        model.eval()
        start = reset_peak()
        t = time.perf_counter()
        with torch.no_grad():
            seqs = model.generate(**prompt, max_new_tokens=c, min_new_tokens=c, do_sample=True, temperature=1.0,
                                  top_p=1.0, top_k=0, suppress_tokens=vision_token_ids(processor))  # fmt: skip
        gen_s = time.perf_counter() - t
        gen_peak = rss()["VmHWM"]
        model.train()
        opt.zero_grad(set_to_none=True)
        vision = {k: v for k, v in prompt.items() if k not in ("input_ids", "attention_mask")}
        if "mm_token_type_ids" in vision:  # per-token (0 = text): the completion is text
            vision["mm_token_type_ids"] = torch.nn.functional.pad(vision["mm_token_type_ids"], (0, c))
        inputs = dict(input_ids=seqs, attention_mask=torch.ones_like(seqs), **vision)
        comp = seqs[:, p:]

        def logps(logits):
            return torch.log_softmax(logits[:, :-1].float(), -1).gather(-1, comp[..., None]).squeeze(-1)

        upd_start = reset_peak()
        t = time.perf_counter()
        with torch.no_grad(), model.disable_adapter():
            ref = logps(model(**inputs, logits_to_keep=c + 1).logits)
        lp = logps(model(**inputs, logits_to_keep=c + 1).logits)
        adv = torch.randn(g, 1)
        adv = (adv - adv.mean()) / (adv.std() + 1e-4)
        ratio = torch.exp(lp - lp.detach())
        kl = torch.exp(ref - lp) - (ref - lp) - 1
        loss = -(ratio * adv - recipe.tgrpo.beta * kl).mean()
        fwd_s = time.perf_counter() - t
        loss.backward()
        opt.step()
        upd_s = time.perf_counter() - t
        stages["tgrpo"] = {"generations": g, "new_tokens": c, "prompt_tokens": p, "sequence_tokens": p + c,
                           "generation_s": round(gen_s, 2), "generation_peak_rss_gib": gib(gen_peak),
                           "generation_peak_over_start_gib": gib(gen_peak - start),
                           "loss_forward_s": round(fwd_s, 2), "update_s": round(upd_s, 2),
                           "step_s": round(gen_s + upd_s, 2), "loss": round(float(loss), 4),
                           "peak_rss_gib": gib(max(gen_peak, rss()["VmHWM"])),
                           "update_peak_over_start_gib": gib(rss()["VmHWM"] - upd_start)}  # fmt: skip

    if "fre" in a.stages:
        text = FRE_QUESTION
        steps = " ".join([FRE_STEP] * 4)
        fre_answer = f"<think>{steps}</think><answer>15:30, 600 km from the station</answer>"
        msgs = [{"role": "user", "content": text}, {"role": "assistant", "content": fre_answer}]
        fb = collator([{"messages": msgs}])
        stages["fre"] = {"tokens": int(fb["input_ids"].shape[1]), "answer_tokens": int((fb["labels"] != -100).sum()),
                         **train_step(fb)}  # fmt: skip
    for s in stages.values():
        s.pop("_over_start", None)
    out["stages"] = stages
    out["threads"] = torch.get_num_threads()
    return out


def predict(run: dict, recipes: dict) -> dict:
    """Peak memory of the full 3B per stage (module docstring's formula), GiB."""
    pc, st = run["params"], run["stages"]
    sb = st["vsft_no_gc"]["saved_for_backward"]
    scale = 1.0 if run["dtype"] == "bfloat16" else 0.5  # bf16 activations are half of fp32's
    s_layer = sb["s_layer_bytes_per_token"] * scale
    h, w = sb["h_bytes_per_logit_position"], sb["w_transient_bytes_per_logit_position"]
    n, n_lora = pc["full_3b_total"], pc["full_3b_lora_trainable"]
    n_linear = FULL["text_layers"] * pc["per_text_layer_linear"]
    weights = {"bf16_lora": 2 * n, "qlora_4bit": 0.516 * n_linear + 2 * (n - n_linear)}
    p_tgrpo = (
        st["tgrpo"]["prompt_tokens"] if "tgrpo" in st else st["vsft"]["tokens"] - st["vsft"]["answer_tokens"]
    )
    shapes = {  # stage -> (batch per recipe, tokens per sequence, logit positions per sequence)
        "vsft": lambda r: (r["vsft_batch"], st["vsft"]["tokens"], st["vsft"]["tokens"]),
        "tgrpo_update": lambda r: (r["tgrpo_batch"], p_tgrpo + r["completion"], r["completion"]),
        "fre": lambda r: (r["fre_batch"], st["fre"]["tokens"] if "fre" in st else 300, st["fre"]["tokens"] if "fre" in st else 300),
    }  # fmt: skip
    out = {}
    for kind, rec in recipes.items():
        rows = {}
        for stage, shape in shapes.items():
            b, t, tl = shape(rec)
            fixed = weights[kind] + 16 * n_lora + b * tl * (h + w) + 0.5 * GIB
            gc_off = fixed + b * t * FULL["text_layers"] * s_layer
            gc_on = fixed + b * t * (FULL["text_layers"] * 2048 * 2 + s_layer)
            rows[stage] = {"batch": b, "tokens": t, "logit_positions": tl,
                           "gc_on_gib": gib(gc_on), "gc_off_gib": gib(gc_off)}  # fmt: skip
        kv = rec["generation_seqs"] * (p_tgrpo + rec["completion"]) * FULL["text_layers"] * 2 * 256 * 2
        rows["tgrpo_generation"] = {"sequences": rec["generation_seqs"], "kv_cache_gib": gib(kv),
                                    "peak_gib": gib(weights[kind] + 16 * n_lora + kv + 0.5 * GIB)}  # fmt: skip
        out[kind] = {"weights_gib": gib(weights[kind]), "lora_state_gib": gib(16 * n_lora), "stages": rows}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--stages", nargs="+", default=["vsft", "tgrpo", "fre"])
    ap.add_argument("--bf16-stages", nargs="+", default=None, help="stages for bf16 (default: --stages)")
    ap.add_argument("--generations", type=int, default=4, help="G on the CPU (the recipe: 8)")
    ap.add_argument("--new-tokens", type=int, default=16, help="completion length on the CPU (recipe: 256)")
    ap.add_argument("--chain-tokens", type=int, default=120)
    ap.add_argument("--text-layers", type=int, default=2)
    ap.add_argument("--vision-blocks", type=int, default=2)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--clip", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print("RESULT " + json.dumps(worker(a)), flush=True)
        return

    import torch
    import transformers

    from reasonact.config import load_config
    from reasonact.data.qwen import build_3b_shaped

    load0 = Path("/proc/loadavg").read_text().strip()
    t0 = time.perf_counter()
    path = build_3b_shaped(text_layers=a.text_layers, vision_blocks=a.vision_blocks)
    build_s = time.perf_counter() - t0
    clip = make_clip(Path(tempfile.mkdtemp(prefix="qwen3b_bench_")) / "clip.mp4")
    runs = {}
    for dtype in a.dtypes:
        stages = a.bf16_stages if dtype == "bfloat16" and a.bf16_stages else a.stages
        cmd = [sys.executable, __file__, "--worker", dtype, "--model", str(path), "--clip", str(clip),
               "--generations", str(a.generations), "--new-tokens", str(a.new_tokens),
               "--chain-tokens", str(a.chain_tokens), "--stages", *stages]  # fmt: skip
        t = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
        if done.returncode or not lines:
            runs[dtype] = {"error": done.stderr.strip()[-2000:]}
            continue
        runs[dtype] = {
            "dtype": dtype,
            "wall_s": round(time.perf_counter() - t, 1),
            **json.loads(lines[-1][7:]),
        }
    recipes = {}
    for kind, profile in (("bf16_lora", "qwen2.5-vl-3b"), ("qlora_4bit", "qwen2.5-vl-3b-qlora")):
        r = load_config(profile)
        recipes[kind] = {"vsft_batch": r.vsft.per_device_train_batch_size,
                         "fre_batch": r.fre.per_device_train_batch_size,
                         "tgrpo_batch": r.tgrpo.per_device_train_batch_size,
                         "completion": r.tgrpo.max_completion_length,
                         "generation_seqs": r.tgrpo.num_generations * r.tgrpo.steps_per_generation
                         * 3 // 2}  # fmt: skip
    ok = [r for r in runs.values() if "stages" in r and "vsft_no_gc" in r["stages"]]
    src = next((r for r in ok if r["dtype"] == "bfloat16"), ok[0] if ok else None)
    result = {
        "command": "python bench/qwen3b_shaped.py " + " ".join(sys.argv[1:]),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__, "transformers": transformers.__version__,
                    "loadavg_start": load0, "loadavg_end": Path("/proc/loadavg").read_text().strip(),
                    "gpu": torch.cuda.is_available()},
        "model": {"path": str(path), "build_or_reuse_s": round(build_s, 1), "text_layers": a.text_layers,
                  "vision_blocks": a.vision_blocks},
        "runs": runs,
        "predicted_full_3b": ({"from_dtype": src["dtype"], "recipes": recipes, **predict(src, recipes)}
                              if src else None),
    }  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
