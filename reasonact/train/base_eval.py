"""Does the tiny base see? Evaluation of the perception-pretrained base (reasonact/train/base.py).

- ``perception_accuracy``: teacher-forced, each frame range asked for on its own, per field; always
  compare with ``swap_videos=True`` (another clip's video: every text and position prior included).
- ``linear_probe`` on ``video_features`` (frozen, ordered) for the action class, against random init.
- ``zero_shot_accuracy``: class names scored as the answer to the action question (must be ~chance).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from reasonact.config import Recipe
from reasonact.data.synthact import CLASSES
from reasonact.data.tiny import build_tiny_model
from reasonact.prompts import QUESTION as ACTION_QUESTION
from reasonact.prompts import video_messages
from reasonact.train.base import FIELDS, messages, perception_accuracy, perception_items, to_example
from reasonact.train.sft import VideoCollator


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
        examples = [{**to_example(it), "messages": messages(None)} for it in chunk]
        texts = [
            processor.apply_chat_template(e["messages"], tokenize=False, add_generation_prompt=True)
            for e in examples
        ]
        batch = processor(
            text=texts,
            videos=[e["frames"] for e in examples],
            do_sample_frames=False,
            video_metadata=[e["video_metadata"] for e in examples],
            padding=True,
            return_tensors="pt",
        )
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
        logp = torch.log_softmax(model(**batch).logits[:, :-1].float(), -1)
        tgt = labels[:, 1:]
        ll = (logp.gather(-1, tgt.clamp(min=0)[..., None])[..., 0] * (tgt != -100)).sum(1)
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
