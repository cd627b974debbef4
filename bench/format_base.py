"""Can the tiny base learn to answer in the completion format without an action label? (prints one JSON object)

    python bench/format_base.py [--steps 700] [--share 0.5] [--lr 1e-3] [--kinds value,when] [--per-class 3]

Issue 17 asks for an informative baseline row: a base that writes ``<think>...</think><answer>...</answer>``
without ever seeing an action label, so that its zero-shot accuracy is an honest floor rather than 0% from a
missing tag. This probe continues the committed perception base (``data/base/tiny-base``) for ``--steps``
steps of 16 examples: a ``--share`` of them are multiple-choice perception questions in the format ("Which
knees does the body have in frames 5-6? ... Options: bent, straight, folded." answered
``<think>frames 5-6: tall upright ...</think><answer>bent</answer>``, options shuffled), the rest the base's
own range descriptions. ``--kinds value,when`` adds questions whose options are frame ranges ("In which
frames is the body's knees folded? ... Options: frames 9-10, frames 3-4, frames 13-14."), so that the answer
must be copied from the options. AdamW, linear decay, nothing saved. Then, greedy, on ``--per-class`` held-out
SynthAct clips per class (split ``pretrain-probe-test``, easy, as the base's own probe):

- ``perception_choice`` (and ``perception_when``): the in-distribution questions; ``accuracy``: the answer
  is the true value (range).
- ``action``: the stages' action question with the format hint, as the tables' baseline row asks it;
  ``action_options``: the same with SynthAct's 12 class names listed as options. ``format``: the
  completion opens with ``<think>`` and closes its ``<answer>``; ``accuracy``: the answer is the clip's
  class; ``answers``: the most frequent answers.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import reasonact  # noqa: E402,F401  (before transformers: the torchvision fix)
from reasonact.config import load_config  # noqa: E402
from reasonact.data.perception import (  # noqa: E402
    FIELDS,
    answer_slots,
    format_example,
    perception_items,
    render_pool,
    to_example,
    with_options,
)
from reasonact.data.synthact import CLASSES  # noqa: E402
from reasonact.prompts import FORMAT_HINT, QUESTION, video_messages  # noqa: E402
from reasonact.train.sft import VideoCollator  # noqa: E402
from reasonact.vlm import COMMITTED_BASE_DIR, generate  # noqa: E402

ANSWER = re.compile(r"^\s*<think>.*?</think>\s*<answer>(.*?)</answer>\s*$", re.S)


def when_example(item: dict, rng: np.random.Generator) -> tuple[dict, str] | None:
    """A multiple-choice question whose options are frame ranges (so the answer is copied from the options):
    in which of three ranges does one field have a value the other two do not? None when no field allows it."""
    fields, n = item["fields"], len(item["fields"])
    for field in rng.permutation(list(FIELDS)):
        r = int(rng.integers(n))
        value = fields[r][field]
        others = [o for o in range(n) if fields[o][field] != value]
        if len(others) < 2:
            continue
        ranges = sorted([r, *rng.choice(others, size=2, replace=False).tolist()])
        names = [f"frames {2 * o + 1}-{2 * o + 2}" for o in ranges]
        question = with_options(
            f"In which frames is the body's {field} {value}? Describe the body there, then give the frames.",
            list(rng.permutation(names)),
        )
        truth = f"frames {2 * r + 1}-{2 * r + 2}"
        answer = f"<think>{answer_slots(fields, ranges)[0]}</think><answer>{truth}</answer>"
        return {**to_example(item), "messages": video_messages(question, answer, FORMAT_HINT)}, truth
    return None


def answers(model, processor, examples: list[dict], batch: int = 12) -> list[str]:
    texts = []
    for s in range(0, len(examples), batch):
        chunk = examples[s : s + batch]
        chats = [ex["messages"][:1] for ex in chunk]
        videos = [(ex["frames"], ex["video_metadata"]) for ex in chunk]
        texts += generate(model, processor, chats, videos, max_new_tokens=96, do_sample=False)[0]
    return texts


def score(texts: list[str], truths: list[str]) -> dict:
    said = [m.group(1).strip() if (m := ANSWER.match(t)) else None for t in texts]
    return {
        "format": float(np.mean([a is not None for a in said])),
        "accuracy": float(np.mean([a == t for a, t in zip(said, truths)])),
        "answers": collections.Counter(str(a) for a in said).most_common(6),
        "example": texts[0],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--share", type=float, default=0.5, help="share of multiple-choice format examples")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument(
        "--kinds",
        default="value",
        type=lambda s: s.split(","),
        help="value (a field's value), when (a range)",
    )
    p.add_argument("--per-class", type=int, default=3, help="held-out clips per class")
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    from transformers import AutoModelForImageTextToText, AutoProcessor

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    recipe = load_config("tiny")
    model = AutoModelForImageTextToText.from_pretrained(COMMITTED_BASE_DIR, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(COMMITTED_BASE_DIR)
    size = dict(
        size=recipe.data.synthact_size, video_size=recipe.video.size, num_frames=recipe.video.num_frames
    )
    base = recipe.base
    pool = render_pool(
        20, "easy", f"{base.split}-easy", base.seed, workers=base.workers, crop=base.crop, **size
    )
    collator = VideoCollator(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=a.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1 - s / a.steps)
    t0, losses = time.time(), []
    model.train()
    for step in range(a.steps):
        rng = np.random.default_rng([7, step])
        batch = []
        for _ in range(16):
            item = pool[int(rng.integers(len(pool)))]
            if rng.random() < a.share:
                kind = a.kinds[int(rng.integers(len(a.kinds)))]
                made = when_example(item, rng) if kind == "when" else None
                batch.append((made or format_example(item, rng))[0])
            else:
                batch.append(to_example(item, [int(rng.integers(len(item["fields"])))]))
        loss = model(**collator(batch)).loss
        loss.backward()
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    train_s = time.time() - t0
    model.eval()
    test = perception_items(recipe, a.per_class, "easy", f"{base.split}-probe-test")
    labels = [it["label"].replace("_", " ") for it in test]
    rng = np.random.default_rng(99)
    choice = [format_example(it, rng) for it in test]
    report = {
        "base": str(COMMITTED_BASE_DIR.relative_to(ROOT)),
        "steps": a.steps,
        "share": a.share,
        "lr": a.lr,
        "kinds": a.kinds,
        "clips": len(test),
        "train_s": round(train_s, 1),
        "loss_last_50": round(float(np.mean(losses[-50:])), 3),
        "perception_choice": score(
            answers(model, processor, [ex for ex, _ in choice]), [t for _, t in choice]
        ),
    }
    if "when" in a.kinds:
        when = [made for it in test if (made := when_example(it, rng))]
        report["perception_when"] = score(
            answers(model, processor, [ex for ex, _ in when]), [t for _, t in when]
        )
    for name, question in [
        ("action", QUESTION),
        ("action_options", with_options(QUESTION, [c.replace("_", " ") for c in CLASSES])),
    ]:
        examples = [
            {**to_example(it), "messages": video_messages(question, None, FORMAT_HINT)} for it in test
        ]
        report[name] = score(answers(model, processor, examples), labels)
    report["chance"] = 1 / len(CLASSES)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
