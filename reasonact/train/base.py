"""A tiny base model that can see: perception pretraining for the tiny profile (issue 10).

A real VLM arrives pretrained; the tiny Qwen2.5-VL is random init and, trained on action labels
alone, stays at chance (BENCHMARKS.md, "Tiny perception base"). Its stand-in for pretraining: describe the stick figure's
body in every frame range, written from SynthAct's exact per-frame ground truth —

    frames 1-2: tall upright low straight straight straight two level still. frames 3-4: ...

(values only, in the order of FIELDS: height, trunk, hands, elbows, hips, knees, feet on the
ground, vertical motion, limb motion. Field names tripled the text; the text's length is what a
training step costs, since the 4,096-way output layer runs on every token.)

— never an action label, phase or sub-action name, so the base's zero-shot action accuracy stays
an honest baseline row. Every range is one temporal patch (2 frames) of the 16 sampled frames.

Training asks for one random range at a time ("Describe the body in frames 5-6."): trained on whole
descriptions, the model predicted each value from the text before it (ranges are autocorrelated)
and ignored the video — as accurate on another clip's video as on its own. Evaluation therefore
asks for each range on its own and always reports the same score on the wrong video.

    path = build_base(load_config("tiny"))          # cached under runs/_cache/tiny-base-<key>/
    metrics = base_eval.evaluate_base(path, load_config("tiny"))
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from reasonact import paths
from reasonact.config import Recipe
from reasonact.data.synthact import CLASSES, clip_seed, render_clip
from reasonact.data.tiny import build_tiny_model
from reasonact.prompts import video_messages
from reasonact.train.sft import VideoCollator, train_sft
from reasonact.video import Video, resize_square, sample_indices
from reasonact.vlm import COMMITTED_BASE_DIR, base_dir, base_key, find_base, vision_token_ids

QUESTION = "Describe the body in each frame range."

# The description: one field per attribute, always in this order, "<field> <value>". The values of a
# field start with distinct tokens, so one teacher-forced forward scores every field (evaluate_base).
FIELDS = {
    "height": ("high", "tall", "mid", "low"),  # head top above ground / standing height
    "trunk": ("upright", "tilted", "flat"),  # pelvis->neck angle from vertical
    "hands": ("low", "mid", "high"),  # the higher arm's elevation at the shoulder
    "elbows": ("straight", "bent", "folded"),  # the more bent elbow
    "hips": ("straight", "bent", "folded"),
    "knees": ("straight", "bent", "folded"),
    "contact": ("two", "one", "none"),  # feet on the ground
    "travel": ("up", "down", "level"),  # centre of mass since the previous range
    "limbs": ("moving", "still"),  # joint angles since the previous range
}


def _bucket(x: float, edges: list[float], values: tuple[str, ...]) -> str:
    """values[i] for the first edge x is above (edges descending); the last value otherwise."""
    for edge, value in zip(edges, values):
        if x > edge:
            return value
    return values[-1]


def perception_fields(pose: dict, frame_indices) -> list[dict[str, str]]:
    """Per range of 2 sampled frames: {field: value}, from the generator's ground truth."""
    idx = np.asarray(list(frame_indices))
    if len(idx) % 2:
        idx = np.append(idx, idx[-1])  # a temporal patch is 2 frames; the processor pads the same way
    ang = np.asarray(pose["angles"], float)[idx]  # (N, 8): elbow l/r, shoulder l/r, hip l/r, knee l/r
    height = np.asarray(pose["height"], float)[idx]
    contact = np.asarray(pose["contact"], bool)[idx].sum(1)
    j = np.asarray(pose["joints"], float)[idx]
    trunk = j[:, 1] - j[:, 7]  # pelvis -> neck, pixels (y down)
    tilt = np.degrees(np.arctan2(np.abs(trunk[:, 0]), np.maximum(-trunk[:, 1], 1e-9)))
    tilt = np.where(-trunk[:, 1] > 0, tilt, 180 - tilt)
    scale = float(pose.get("scale", 1.0)) or 1.0
    com_y = -np.cumsum(np.asarray(pose["com_delta"], float)[:, 1]) / scale  # torso units, up positive
    com_y = com_y[idx]
    out = []
    for r in range(len(idx) // 2):
        a, b = 2 * r, 2 * r + 1
        m = ang[[a, b]].mean(0)
        if r == 0:  # no previous range: the motion inside the pair, doubled to the same time span
            dy, dang = 2 * (com_y[b] - com_y[a]), 2 * np.abs(ang[b] - ang[a]).sum()
        else:
            dy = com_y[[a, b]].mean() - com_y[[a - 2, a - 1]].mean()
            dang = np.abs(m - ang[[a - 2, a - 1]].mean(0)).sum()
        out.append({
            "height": _bucket(height[[a, b]].mean(), [1.04, 0.9, 0.65], FIELDS["height"]),
            "trunk": _bucket(-tilt[[a, b]].mean(), [-20, -55], FIELDS["trunk"]),
            "hands": _bucket(-m[2:4].max(), [-40, -110], FIELDS["hands"]),
            "elbows": _bucket(m[0:2].min(), [150, 90], FIELDS["elbows"]),
            "hips": _bucket(m[4:6].min(), [150, 110], FIELDS["hips"]),
            "knees": _bucket(m[6:8].min(), [150, 110], FIELDS["knees"]),
            "contact": ("none", "one", "two")[int(contact[[a, b]].min())],
            "travel": "up" if dy > 0.06 else "down" if dy < -0.06 else "level",
            "limbs": "moving" if dang > 40 else "still",
        })  # fmt: skip
    return out


def _range_text(r: int, fields: dict[str, str]) -> str:
    return f"frames {2 * r + 1}-{2 * r + 2}: " + " ".join(fields[k] for k in FIELDS) + "."


def perception_text(pose: dict, frame_indices) -> str:
    """The body, range by range, over the sampled frames the model sees (16 frames -> 8 ranges)."""
    return " ".join(_range_text(r, f) for r, f in enumerate(perception_fields(pose, frame_indices)))


def messages(text: str | None = None, question: str = QUESTION) -> list[dict]:

    return video_messages(question, text, hint="")


def range_question(ranges: list[int]) -> str:
    return "Describe the body in " + " and ".join(f"frames {2 * r + 1}-{2 * r + 2}" for r in ranges) + "."


def answer_slots(fields: list[dict[str, str]], ranges: list[int] | None = None):
    """The answer for ``ranges`` (all when None) and, per value, (char offset, field, value)."""
    text, slots = "", []
    for r in range(len(fields)) if ranges is None else ranges:
        text += (" " if text else "") + f"frames {2 * r + 1}-{2 * r + 2}:"
        for k in FIELDS:
            text += " "
            slots.append((len(text), k, fields[r][k]))
            text += fields[r][k]
        text += "."
    return text, slots


# ---- data: rendered clips -> (frames, metadata, text) ----


def render_example(
    label: str,
    seed: int,
    level: str,
    size: int = 112,
    video_size: int = 56,
    num_frames: int = 16,
    crop: float = 1.0,
) -> dict:
    """One clip as the model sees it: sampled like ``read_video`` (uniform indices, resized square).
    ``crop`` < 1: sample from a random window of at least that fraction of the clip, so that a frame
    range's position no longer tells what the body does there (clips start and end alike)."""

    frames, rec = render_clip(label, int(seed), level, size)
    t = rec["num_frames"]
    if crop < 1.0:
        rng = np.random.default_rng([int(seed), 7])
        length = min(t, max(num_frames // 2, int(round(t * rng.uniform(crop, 1.0)))))
        start = int(rng.integers(0, t - length + 1))
        idx = [start + i for i in sample_indices(length, num_frames)]
    else:
        idx = sample_indices(t, num_frames)
    fields = perception_fields(rec["pose"], idx)
    return {
        "frames": resize_square(frames[idx], video_size), "indices": idx, "fps": float(rec["fps"]),
        "total_frames": int(rec["num_frames"]), "label": label, "level": level, "seed": int(seed),
        "fields": fields, "text": " ".join(_range_text(r, f) for r, f in enumerate(fields)),
        "record": {k: v for k, v in rec.items() if k != "pose"},  # label, phases, fps...: what a teacher reads
    }  # fmt: skip


def _render_task(task):
    return render_example(*task)


def _one_thread():
    torch.set_num_threads(1)  # a 16-frame resize is slower with threads fighting the other workers


def render_pool(
    per_class: int,
    level: str,
    split: str = "pretrain",
    seed: int = 0,
    size: int = 112,
    video_size: int = 56,
    num_frames: int = 16,
    workers: int = 2,
    crop: float = 1.0,
) -> list[dict]:
    """``per_class`` clips of every class at ``level`` from the SynthAct split ``split`` (seeds hash it)."""

    tasks = [(label, clip_seed(seed, split, label, i), level, size, video_size, num_frames, crop)
             for i in range(per_class) for label in CLASSES]  # fmt: skip
    if workers <= 1:
        threads = torch.get_num_threads()
        _one_thread()
        try:
            return [_render_task(t) for t in tasks]
        finally:
            torch.set_num_threads(threads)
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_one_thread) as pool:
        return pool.map(_render_task, tasks, chunksize=16)


def to_example(item: dict, ranges: list[int] | None = None) -> dict:
    """A pool item -> what VideoCollator takes (frames, video_metadata, messages). ``ranges``: ask
    for these frame ranges only (the question names them); None: the whole description."""
    video = Video(
        item["frames"], item["indices"], item["fps"], item["total_frames"], f"synthact:{item['seed']}"
    )
    if ranges is None:
        msgs = messages(item["text"])
    else:
        msgs = messages(answer_slots(item["fields"], ranges)[0], range_question(ranges))
    return {"frames": item["frames"], "video_metadata": video.metadata(), "messages": msgs}


class PerceptionData:
    """``length`` examples drawn from per-level pools with a curriculum: the first pool only until
    ``mix_start`` of the way, then the last pool's share ramps linearly to ``last_share`` by ``mix_end``.
    Example i depends only on (seed, i): read in order (``train_sampling_strategy="sequential"``),
    a resumed run sees exactly the examples it would have seen."""

    def __init__(
        self,
        pools: list[list[dict]],
        length: int,
        seed: int = 0,
        mix_start: float = 0.15,
        mix_end: float = 0.5,
        last_share: float = 0.7,
        ranges_per_example: int = 0,
    ):
        self.pools, self.length, self.seed, self.k = pools, length, seed, ranges_per_example
        self.mix_start, self.mix_end, self.last_share = mix_start, mix_end, last_share

    def level_share(self, i: int) -> float:
        """Probability that example i comes from the last pool."""
        if len(self.pools) == 1:
            return 0.0
        ramp = (i / max(self.length, 1) - self.mix_start) / max(self.mix_end - self.mix_start, 1e-9)
        return float(np.clip(ramp, 0.0, 1.0) * self.last_share)

    def item(self, i: int) -> tuple[dict, list[int] | None]:
        """Example i: a pool item and the ranges asked for (None: all)."""
        rng = np.random.default_rng([self.seed, int(i)])
        pool = self.pools[-1] if rng.random() < self.level_share(i) else self.pools[0]
        it = pool[int(rng.integers(len(pool)))]
        n = len(it.get("fields", ())) or 1
        ranges = sorted(rng.choice(n, size=min(self.k, n), replace=False).tolist()) if self.k else None
        return it, ranges

    def __len__(self):
        return self.length

    def dataset(self):
        """A ``datasets.Dataset`` of indices (what SFTTrainer accepts) that turns into examples on access."""
        import datasets

        def transform(batch):
            items = [to_example(*self.item(i)) for i in batch["i"]]
            return {k: [it[k] for it in items] for k in ("frames", "video_metadata", "messages")}

        return datasets.Dataset.from_dict({"i": list(range(self.length))}).with_transform(transform)


# ---- build, cache, evaluate ----


def perception_items(recipe: Recipe, per_class: int, level: str, split: str, workers: int = 1) -> list[dict]:
    """``per_class`` rendered clips of each class at ``level`` from SynthAct split ``split``, for evaluating."""
    return render_pool(
        per_class,
        level,
        split=split,
        seed=recipe.base.seed,
        size=recipe.data.synthact_size,
        video_size=recipe.video.size,
        num_frames=recipe.video.num_frames,
        workers=workers,
    )


def _slot_targets(tok, item: dict, ranges: list[int] | None = None):
    """Answer token ids and, per value, (index of its first token in the answer, field, value)."""
    text, chars = answer_slots(item["fields"], ranges)
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    spans = enc["offset_mapping"]
    slots = [(next(i for i, (a, b) in enumerate(spans) if a <= c < b), k, v) for c, k, v in chars]
    return enc["input_ids"], slots


def _first_tokens(tok) -> dict[str, list[int]]:
    firsts = {
        k: [tok.encode(" " + v, add_special_tokens=False)[0] for v in vals] for k, vals in FIELDS.items()
    }
    for k, ids in firsts.items():
        assert len(set(ids)) == len(ids), f"values of field {k!r} share a first token: {FIELDS[k]}"
    return firsts


@torch.no_grad()
def perception_accuracy(
    model,
    processor,
    items: list[dict],
    batch_size: int = 16,
    swap_videos: bool = False,
    ranges_per_example: int = 1,
    per_range: bool = False,
) -> dict:
    """Teacher-forced accuracy per field: at each value, is the true value the likeliest of the field's
    values? ``swap_videos`` pairs every text with another clip's video: what the text alone gets right
    (the honest baseline: ranges are autocorrelated, so text context predicts a lot). With
    ``ranges_per_example=1`` every range is asked for on its own (no text context); 0: whole descriptions.
    ``per_range``: also ``{"per_range": {field: [accuracy of range 0, 1, ...]}}``."""

    tok, collator = processor.tokenizer, VideoCollator(processor)
    firsts = _first_tokens(tok)
    hits = {k: [] for k in FIELDS}
    n = len(items[0]["fields"])
    by_range = {k: [[] for _ in range(n)] for k in FIELDS}
    model.eval()
    jobs = (
        [(it, [r]) for it in items for r in range(n)]
        if ranges_per_example == 1
        else [(it, None) for it in items]
    )
    for s in range(0, len(jobs), batch_size):
        chunk = jobs[s : s + batch_size]
        examples = [to_example(it, rg) for it, rg in chunk]
        if swap_videos:  # neighbours are different classes (pools are class-interleaved)
            frames = [e["frames"] for e in examples]
            metas = [e["video_metadata"] for e in examples]
            shift = n if ranges_per_example == 1 else 1  # the same range of the previous clip
            for i, e in enumerate(examples):
                e["frames"], e["video_metadata"] = frames[i - shift], metas[i - shift]
        batch = collator(examples)
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        for row, (it, rg) in enumerate(chunk):
            ids, slots = _slot_targets(tok, it, rg)
            begin = int((batch["labels"][row] != -100).nonzero()[0])
            assert batch["input_ids"][row, begin : begin + len(ids)].tolist() == ids
            for t, k, v in slots:
                cand = logits[row, begin + t - 1, firsts[k]]
                hits[k].append(FIELDS[k][int(cand.argmax())] == v)
                if rg is not None and len(rg) == 1:
                    by_range[k][rg[0]].append(hits[k][-1])
    acc = {k: float(np.mean(h)) for k, h in hits.items()}
    out = {**acc, "mean": float(np.mean(list(acc.values())))}
    if per_range:
        out["per_range"] = {k: [float(np.mean(h)) if h else None for h in rs] for k, rs in by_range.items()}
    return out


def build_base(
    recipe: Recipe, out: str | Path | None = None, force: bool = False, progress: bool = True
) -> Path:
    """Pretrain the tiny model on perception (full fine-tune through ``train_sft``) and save it (fp16
    safetensors + processor + ``base_card.json``). Cached: a finished base for the same key is reused."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cfg, key = recipe.base, base_key(recipe)
    out = Path(out) if out else base_dir(recipe)
    if not force and (out / "model.safetensors").is_file() and (out / "base_card.json").is_file():
        return out
    t0, c0 = time.time(), time.process_time()
    init = build_tiny_model(cfg=recipe.model.tiny, video_size=recipe.video.size)
    torch.manual_seed(cfg.seed)
    model = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(init)
    size = dict(
        size=recipe.data.synthact_size, video_size=recipe.video.size, num_frames=recipe.video.num_frames
    )
    # one split name per level: the levels get different motions, not the same clips redrawn
    pools = [render_pool(cfg.pool_per_class, lv, f"{cfg.split}-{lv}", cfg.seed, workers=cfg.workers, crop=cfg.crop,
                         **size)
             for lv in cfg.levels]  # fmt: skip
    eval_items = [
        it for lv in cfg.levels for it in render_pool(4, lv, cfg.split + "-eval", cfg.seed, workers=1, **size)
    ]
    render_s = time.time() - t0
    data = PerceptionData(pools, cfg.max_steps * cfg.per_device_train_batch_size, cfg.seed, cfg.mix_start,
                          cfg.mix_end, cfg.last_share, cfg.ranges_per_example)  # fmt: skip
    vision = [p for n, p in model.named_parameters() if n.startswith("model.visual.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    optimizer = torch.optim.AdamW([{"params": rest}, {"params": vision, "lr": cfg.learning_rate * cfg.vision_lr_scale}],
                                  lr=cfg.learning_rate, weight_decay=cfg.weight_decay)  # fmt: skip
    curve = []

    def eval_fn(m, step):
        acc = perception_accuracy(m, processor, eval_items)
        blind = perception_accuracy(m, processor, eval_items, swap_videos=True)["mean"]
        curve.append({"step": step, "wall_s": round(time.time() - t0, 1), **acc, "wrong_video": blind})
        return {"perception_" + k: v for k, v in acc.items()} | {"perception_wrong_video": blind}

    train_dir = out.with_name(out.name + ".train")
    trainer = train_sft(model, processor, data.dataset(), cfg, VideoCollator(processor), train_dir, eval_fn=eval_fn,
                        optimizer=optimizer, eval_steps=cfg.eval_steps, train_sampling_strategy="sequential",
                        disable_tqdm=not progress)  # fmt: skip
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    card = {
        "key": key, "generator_version": paths.GENERATOR_VERSION, "recipe": recipe.source, "base": dataclasses.asdict(cfg),
        "tiny": dataclasses.asdict(recipe.model.tiny), "video": dataclasses.asdict(recipe.video),
        "synthact_size": recipe.data.synthact_size, "seed": cfg.seed, "steps": trainer.state.global_step,
        "examples": trainer.state.global_step * cfg.per_device_train_batch_size,
        "wall_s": round(time.time() - t0, 1), "cpu_s": round(time.process_time() - c0, 1),
        "render_s": round(render_s, 1), "torch_threads": torch.get_num_threads(),
        "command": f"reasonact base build --profile {recipe.profile} --force", "dtype": "float16",
        "final_perception": curve[-1] if curve else None, "curve": curve,
        "loss": [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h],
    }  # fmt: skip
    (tmp / "base_card.json").write_text(json.dumps(card, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    shutil.rmtree(train_dir, ignore_errors=True)  # checkpoints only serve resuming an unfinished build
    return out


def ensure_model(recipe: Recipe, progress: bool = False) -> str:
    """The model ``recipe`` loads, built first when it is the tiny profile's and missing: the perception
    base (``model.use_base``; minutes) or the random-init tiny model (seconds). Loading
    (``vlm.load_model``) never builds or trains: the pipeline (notebook 00), the CLI and the experiments
    call this step explicitly."""
    m = recipe.model
    if m.name_or_path:
        return m.name_or_path
    if m.use_base:
        return str(find_base(recipe) or build_base(recipe, progress=progress))
    return str(build_tiny_model(cfg=m.tiny, video_size=recipe.video.size))


def commit_copy(path: str | Path, dest: str | Path = COMMITTED_BASE_DIR) -> Path:
    """Copy a finished base (fp16 weights, config, processor, card) to data/base/tiny-base, where
    ``model_path`` finds it while its key matches the recipe: CI then skips the build."""
    path, dest = Path(path), Path(dest)
    if not (path / "base_card.json").is_file():
        raise FileNotFoundError(f"{path}: not a finished base (no base_card.json)")
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(path, dest)
    return dest


@torch.no_grad()
def describe(model, processor, item: dict, ranges: list[int], max_new_tokens: int = 24) -> list[dict]:
    """What a model says about frame ranges of a pool item (``render_example``), next to the truth:
    ``[{frames, said, truth}]``. Greedy decoding, vision tokens suppressed."""

    out = []
    for r in ranges:
        ex = to_example(item, [r])
        prompt = processor.apply_chat_template(ex["messages"][:1], add_generation_prompt=True, tokenize=False)
        inputs = processor(text=[prompt], videos=[ex["frames"]], video_metadata=[ex["video_metadata"]],
                           do_sample_frames=False, return_tensors="pt")  # fmt: skip
        ids = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                             suppress_tokens=vision_token_ids(processor))  # fmt: skip
        said = processor.batch_decode(ids[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)[0]
        out.append({"frames": f"{2 * r + 1}-{2 * r + 2}", "said": said.strip(),
                    "truth": answer_slots(item["fields"], [r])[0]})  # fmt: skip
    return out
