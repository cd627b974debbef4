"""The tiny base that can see: perception pretraining of the tiny model, and whether it worked.

The task (``reasonact.data.perception``): describe the stick figure's body range by range, never an action
name. Training asks for one random range at a time ("Describe the body in frames 5-6."): trained on whole
descriptions, the model predicted each value from the text before it (ranges are autocorrelated) and
ignored the video, as accurate on another clip's video as on its own. Evaluation therefore asks for each
range on its own and always reports the same score on the wrong video.

- ``build_base`` trains it (full fine-tune through ``train_sft``), ``ensure_model`` builds it when the
  recipe's model is missing: the pipeline, the CLI and the experiments call that step explicitly, since
  ``vlm.load_model`` never trains.
- ``perception_accuracy``: teacher-forced, per field; compare with ``swap_videos=True``.
- ``linear_probe`` on ``video_features`` (frozen, ordered) for the action class, against random init.
- ``zero_shot_accuracy``: class names scored as the answer to the action question (must be ~chance).

    path = build_base(load_config("tiny"))          # cached under runs/_cache/tiny-base-<key>/
    metrics = evaluate_base(path, load_config("tiny"))
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from reasonact import paths
from reasonact.config import CONFIG_DIR, EvalConfig, Recipe, load_config
from reasonact.data.perception import (
    FIELDS,
    answer_slots,
    format_example,
    messages,
    perception_items,
    render_pool,
    to_example,
)
from reasonact.data.synthact import CLASSES
from reasonact.data.tiny import build_tiny_model
from reasonact.prompts import QUESTION as ACTION_QUESTION
from reasonact.prompts import encode_chats, video_messages
from reasonact.rewards.basic import format_rate
from reasonact.rewards.parse import TAGS
from reasonact.train.sft import IGNORE, VideoCollator, train_sft
from reasonact.vlm import (
    COMMITTED_BASE_DIR,
    base_dir,
    base_key,
    complete_clips,
    find_base,
    keyed_settings,
    token_logps,
)


class PerceptionData:
    """``length`` examples drawn from per-level pools with a curriculum: the first pool only until
    ``mix_start`` of the way, then the last pool's share ramps linearly to ``last_share`` by ``mix_end``.
    Example i depends only on (seed, i): read in order (``train_sampling_strategy="sequential"``),
    a resumed run sees exactly the examples it would have seen. A ``format_share`` of the examples ask a
    multiple-choice question about the clip answered in the completion format (``format_example``, the
    ``format_question`` form)."""

    def __init__(
        self,
        pools: list[list[dict]],
        length: int,
        seed: int = 0,
        mix_start: float = 0.15,
        mix_end: float = 0.5,
        last_share: float = 0.7,
        ranges_per_example: int = 0,
        format_share: float = 0.0,
        format_question: str = "range",
    ):
        self.pools, self.length, self.seed, self.k = pools, length, seed, ranges_per_example
        self.format_share, self.format_question = format_share, format_question
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

    def example(self, i: int) -> dict:
        """Example i as VideoCollator takes it (frames, video_metadata, messages)."""
        it, ranges = self.item(i)
        rng = np.random.default_rng([self.seed, int(i), 1])
        if self.format_share and rng.random() < self.format_share:
            return format_example(it, rng, self.format_question)[0]
        return to_example(it, ranges)

    def __len__(self):
        return self.length

    def dataset(self):
        """A ``datasets.Dataset`` of indices (what SFTTrainer accepts) that turns into examples on access."""
        import datasets

        def transform(batch):
            items = [self.example(i) for i in batch["i"]]
            return {k: [it[k] for it in items] for k in ("frames", "video_metadata", "messages")}

        return datasets.Dataset.from_dict({"i": list(range(self.length))}).with_transform(transform)


class TagWeightCollator(VideoCollator):
    """``VideoCollator`` that also gives each token a loss weight (``loss_weights``): ``weight`` on each piece
    of the format's tags (``parse.TAGS``) in the labelled answer (``base.tag_weight``), else 1."""

    loss_weights = True

    def __init__(self, processor, weight: float):
        super().__init__(processor)
        self.weight = float(weight)
        enc = processor.tokenizer.encode
        self.tags = [enc(f"<{end}{t}>", add_special_tokens=False) for t in TAGS for end in ("", "/")]

    def __call__(self, examples: list[dict]) -> dict:
        batch = super().__call__(examples)
        weights = torch.ones(batch["labels"].shape)
        for row, ids in enumerate(batch["input_ids"].tolist()):
            for tag in self.tags:
                for i in range(len(ids) - len(tag) + 1):
                    if ids[i : i + len(tag)] == tag and batch["labels"][row, i] != IGNORE:
                        weights[row, i : i + len(tag)] = self.weight
        batch["loss_weights"] = weights
        return batch


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


def remake_command(recipe: Recipe) -> str:
    """The command that re-makes this base, quoted for a POSIX shell: its profile (or recipe file, as an
    absolute path), plus a ``--set`` for every setting the base's key reads (``vlm.keyed_settings``) that
    differs from what that profile or file loads."""
    source = Path(recipe.source)
    own = source.is_file() and source.resolve() != (CONFIG_DIR / f"{recipe.profile}.yaml").resolve()
    where = (
        f"--config {shlex.quote(str(source.resolve()))}"
        if own
        else f"--profile {shlex.quote(recipe.profile)}"
    )
    mine, theirs = keyed_settings(recipe), keyed_settings(load_config(source if own else recipe.profile))
    sets = []
    for k, v in mine.items():
        if v != theirs[k]:
            sets.append(f"--set {shlex.quote(k + '=' + json.dumps(v, separators=(',', ':')))}")
    return " ".join([f"reasonact base build {where} --force", *sets])


def build_base(
    recipe: Recipe, out: str | Path | None = None, force: bool = False, progress: bool = True
) -> Path:
    """Pretrain the tiny model on perception (full fine-tune through ``train_sft``) and save it (fp16
    safetensors + processor + ``base_card.json``). Cached: a finished base for the same key is reused.
    ``base.select_by_format``: the weights saved are those of the second-half evaluation whose completions to
    the action question on the held-out clips most often follow the format, not the last step's."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    cfg, key = recipe.base, base_key(recipe)
    out = Path(out) if out else base_dir(recipe)
    if not force and (out / "model.safetensors").is_file() and (out / "base_card.json").is_file():
        return out
    command = remake_command(recipe)  # before the build: it reads the recipe file as it is now
    t0, c0 = time.time(), time.process_time()
    init = build_tiny_model(cfg=recipe.model.tiny, video_size=recipe.video.size)
    torch.manual_seed(cfg.seed)
    model = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(init)
    size = dict(
        size=recipe.data.synthact_size, video_size=recipe.video.size, num_frames=recipe.video.num_frames
    )
    # one split name per level: the levels get different motions, not the same clips redrawn
    pools = [
        render_pool(
            cfg.pool_per_class, lv, f"{cfg.split}-{lv}", cfg.seed, workers=cfg.workers, crop=cfg.crop, **size
        )
        for lv in cfg.levels
    ]
    eval_items = [
        it for lv in cfg.levels for it in render_pool(4, lv, cfg.split + "-eval", cfg.seed, workers=1, **size)
    ]
    render_s = time.time() - t0
    data = PerceptionData(
        pools,
        cfg.max_steps * cfg.per_device_train_batch_size,
        cfg.seed,
        cfg.mix_start,
        cfg.mix_end,
        cfg.last_share,
        cfg.ranges_per_example,
        cfg.format_share,
        cfg.format_question,
    )
    vision = [p for n, p in model.named_parameters() if n.startswith("model.visual.")]
    rest = [p for n, p in model.named_parameters() if not n.startswith("model.visual.")]
    optimizer = torch.optim.AdamW(
        [{"params": rest}, {"params": vision, "lr": cfg.learning_rate * cfg.vision_lr_scale}],
        lr=cfg.learning_rate,
        weight_decay=cfg.weight_decay,
    )
    curve = []

    train_dir = out.with_name(out.name + ".train")
    best_file = train_dir / "format_best.pt"  # on disk, so a resumed build still knows the best so far
    probe = (
        [(e["frames"], e["video_metadata"]) for e in map(to_example, eval_items)]
        if cfg.select_by_format
        else []
    )

    def eval_fn(m, step):
        acc = perception_accuracy(m, processor, eval_items)
        blind = perception_accuracy(m, processor, eval_items, swap_videos=True)["mean"]
        curve.append({"step": step, "wall_s": round(time.time() - t0, 1), **acc, "wrong_video": blind})
        metrics = {"perception_" + k: v for k, v in acc.items()} | {"perception_wrong_video": blind}
        if probe and step >= cfg.max_steps // 2:  # the action question, no label: is the format written?
            # the paper's decoding, fixed (EvalConfig's defaults): the weights kept must follow from the key
            texts = complete_clips(m, processor, probe, EvalConfig(), seed=cfg.seed)
            rate = metrics["format"] = curve[-1]["format"] = format_rate(texts)
            if not best_file.is_file() or rate >= torch.load(best_file)["format"]:  # ties: the later
                train_dir.mkdir(parents=True, exist_ok=True)
                best = {"step": step, "format": rate, "perception": curve[-1], "state": m.state_dict()}
                torch.save(best, best_file)
        return metrics

    trainer = train_sft(
        model,
        processor,
        data.dataset(),
        cfg,
        TagWeightCollator(processor, cfg.tag_weight) if cfg.tag_weight != 1 else VideoCollator(processor),
        train_dir,
        eval_fn=eval_fn,
        optimizer=optimizer,
        eval_steps=cfg.eval_steps,
        train_sampling_strategy="sequential",
        disable_tqdm=not progress,
    )
    selected, final = None, curve[-1] if curve else None
    if probe and best_file.is_file():
        best = torch.load(best_file)
        model.load_state_dict(best["state"])
        selected, final = {"step": best["step"], "format": best["format"]}, best["perception"]
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    processor.save_pretrained(tmp)
    card = {
        "key": key,
        "generator_version": paths.GENERATOR_VERSION,
        "recipe": recipe.source,
        "base": dataclasses.asdict(cfg),
        "tiny": dataclasses.asdict(recipe.model.tiny),
        "video": dataclasses.asdict(recipe.video),
        "synthact_size": recipe.data.synthact_size,
        "seed": cfg.seed,
        "steps": trainer.state.global_step,
        "examples": trainer.state.global_step * cfg.per_device_train_batch_size,
        "wall_s": round(time.time() - t0, 1),
        "cpu_s": round(time.process_time() - c0, 1),
        "render_s": round(render_s, 1),
        "torch_threads": torch.get_num_threads(),
        "command": command,
        "dtype": "float16",
        "final_perception": final,  # of the weights saved: the last step's, or the step selected by format
        "selected_by_format": selected,  # {"step", "format"} of the weights kept (select_by_format), else null
        "curve": curve,
        "loss": [{"step": h["step"], "loss": h["loss"]} for h in trainer.state.log_history if "loss" in h],
    }
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
    # processes side by side (``reasonact experiments --jobs``): one builds it, the others wait and load it
    with paths.locked(base_dir(recipe)):
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


def majority_rates(items: list[dict]) -> dict:
    """Accuracy of always answering each field's most frequent value (on these items)."""
    out = {}
    for k in FIELDS:
        values = [f[k] for it in items for f in it["fields"]]
        out[k] = max(values.count(v) for v in set(values)) / len(values)
    return {**out, "mean": float(np.mean(list(out.values())))}


@torch.no_grad()
def video_features(model, processor, items: list[dict], batch_size: int = 16) -> torch.Tensor:
    """Frozen features of each clip: the language model's last hidden states on the video tokens,
    averaged over space within each temporal patch and concatenated in frame order (N, groups*hidden)."""
    vid = model.config.video_token_id
    feats = []
    model.eval()
    for s in range(0, len(items), batch_size):
        chunk = items[s : s + batch_size]
        examples = [to_example(it) for it in chunk]
        chats = [messages(None) for _ in chunk]
        videos = [(e["frames"], e["video_metadata"]) for e in examples]
        batch = encode_chats(processor, chats, videos)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
        groups = int(batch["video_grid_thw"][0, 0])
        for row in range(len(chunk)):
            h = hidden[row][batch["input_ids"][row] == vid]  # (groups * tokens_per_group, hidden), in order
            feats.append(h.reshape(groups, -1, h.shape[-1]).mean(1).flatten())
    return torch.stack(feats).float()


def linear_probe(
    train_x, train_y, test_x, test_y, steps: int = 300, weight_decay: float = 1e-3, seed: int = 0
) -> float:
    """Multinomial logistic regression (full batch, standardised features); test accuracy."""
    g = torch.Generator().manual_seed(seed)
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-6
    xtr, xte = (train_x - mu) / sd, (test_x - mu) / sd
    n_cls = int(max(train_y.max(), test_y.max())) + 1
    w = (torch.randn(xtr.shape[1], n_cls, generator=g) * 0.01).requires_grad_()
    b = torch.zeros(n_cls, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(xtr @ w + b, train_y).backward()
        opt.step()
    with torch.no_grad():
        return float(((xte @ w + b).argmax(1) == test_y).float().mean())


@torch.no_grad()
def zero_shot_accuracy(model, processor, items: list[dict]) -> dict:
    """Score every class name as the answer to the action question; the likeliest one is the prediction.
    A model pretrained on perception only must be about chance (1/12)."""

    collator, preds = VideoCollator(processor), []
    model.eval()
    for it in items:
        ex = to_example(it)
        batch = collator(
            [
                {**ex, "messages": video_messages(ACTION_QUESTION, f"<answer>{c.replace('_', ' ')}</answer>")}
                for c in CLASSES
            ]
        )
        labels = batch.pop("labels")
        ll = token_logps(model(**batch).logits, labels)[0].sum(1)
        preds.append(CLASSES[int(ll.argmax())])
    acc = float(np.mean([p == it["label"] for p, it in zip(preds, items)]))
    return {"accuracy": acc, "chance": 1 / len(CLASSES), "distinct_predictions": len(set(preds))}


def evaluate_base(
    path: str | Path,
    recipe: Recipe,
    per_class: int = 8,
    probe_train_per_class: int = 20,
    level: str = "medium",
    random_init: bool = True,
) -> dict:
    """Does the base see? Held-out perception accuracy per field (against the majority rate and against
    the same texts on the wrong videos), a linear probe of its frozen features for the action class
    (against the random-init model), and zero-shot action accuracy (must be about chance)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    t0 = time.time()
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(path)
    split = recipe.base.split
    out = {"path": str(path), "level": level}
    for lv in sorted({"easy", level}):
        items = perception_items(recipe, per_class, lv, split + "-test")
        out[f"perception_{lv}"] = perception_accuracy(model, processor, items)
        out[f"perception_{lv}_wrong_video"] = perception_accuracy(model, processor, items, swap_videos=True)
        out[f"majority_{lv}"] = majority_rates(items)
    train = perception_items(recipe, probe_train_per_class, level, split + "-probe-train")
    test = perception_items(recipe, per_class, level, split + "-probe-test")
    ytr = torch.tensor([CLASSES.index(it["label"]) for it in train])
    yte = torch.tensor([CLASSES.index(it["label"]) for it in test])
    models = {"base": model}
    if random_init:
        init = build_tiny_model(cfg=recipe.model.tiny, video_size=recipe.video.size)
        models["random_init"] = AutoModelForImageTextToText.from_pretrained(init, dtype=torch.float32)
    out["probe"] = {
        name: linear_probe(video_features(m, processor, train), ytr, video_features(m, processor, test), yte)
        for name, m in models.items()
    }
    out["probe"]["chance"] = 1 / len(CLASSES)
    out["zero_shot"] = zero_shot_accuracy(model, processor, test)
    out["seconds"] = round(time.time() - t0, 1)
    return out
