"""Supervised fine-tuning on TRL's SFTTrainer: the video collator and one thin training entry.

    collator = VideoCollator(processor)
    train_sft(model, processor, dataset, recipe.vsft, collator, "runs/x/04_video_sft")

An example is a dict with ``messages`` (chat turns, the last one the assistant's answer) and, for
video examples, ``frames`` ((N, H, W, 3) uint8, already sampled and resized) plus
``video_metadata`` (transformers' ``VideoMetadata``: fps, total frames, sampled indices — without it
the processor assumes 24 fps and the temporal positions collapse, README, "Notes on the stack"). Text-only
examples (FRE) simply have no ``frames``.

TRL's own VLM collator is image-only, so SFTTrainer gets this collator with
``remove_unused_columns=False`` and ``skip_prepare_dataset`` (the collator does all the work).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from reasonact.config import ConfigError
from reasonact.cot.reasoning_tasks import generate_tasks
from reasonact.data.manifest import read_manifest, spread
from reasonact.data.synthact import ensure_dataset
from reasonact.library import load_library
from reasonact.paths import FOLDERS, prior_adapters, read_jsonl, run_dir, stage_dir, write_metrics
from reasonact.prompts import QUESTION, encode_chats, format_hint, video_messages
from reasonact.rewards.basic import format_rate, is_correct
from reasonact.rewards.parse import parse
from reasonact.video import VideoDecodeError, clip_reader, read_video
from reasonact.vlm import VISION_TOKENS, complete_clips, count_parameters, generate, load_model, token_logps

IGNORE = -100  # the label value the cross-entropy loss skips


class VideoCollator:
    """Chat template + processor on a batch; labels only on the last assistant turn.

    Masked (-100): everything up to and including ``<|im_start|>assistant\\n`` of the last assistant
    turn, everything after its ``<|im_end|>``, padding, and every vision token (the model must never
    learn to emit ``<|video_pad|>``).
    """

    loss_weights = False  # True: the batches also carry per-token loss weights (next_token_nll)

    def __init__(self, processor):
        self.processor = processor
        tok = processor.tokenizer
        self.header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")
        self.vision_ids = torch.tensor([tok.convert_tokens_to_ids(t) for t in VISION_TOKENS])

    def __call__(self, examples: list[dict]) -> dict:
        chats = [ex["messages"] for ex in examples]
        videos = [(ex["frames"], ex["video_metadata"]) for ex in examples if ex.get("frames") is not None]
        batch = encode_chats(self.processor, chats, videos, add_generation_prompt=False)
        batch["labels"] = self.labels(batch["input_ids"], batch["attention_mask"])
        return batch

    def labels(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        labels = torch.full_like(input_ids, IGNORE)
        h = len(self.header)
        for row, ids in enumerate(input_ids.tolist()):
            starts = [i for i in range(len(ids) - h + 1) if ids[i : i + h] == self.header]
            if not starts:  # no assistant turn (e.g. truncated away): nothing to learn from this row
                continue
            begin = starts[-1] + h
            end = next((i + 1 for i in range(begin, len(ids)) if ids[i] == self.im_end), len(ids))
            labels[row, begin:end] = input_ids[row, begin:end]  # the answer and its closing <|im_end|>
        labels[attention_mask == 0] = IGNORE
        labels[torch.isin(input_ids, self.vision_ids)] = IGNORE
        return labels


def last_checkpoint(out_dir: str | Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    return get_last_checkpoint(str(out_dir)) if Path(out_dir).is_dir() else None


def _restore_weights(model, ckpt: str) -> None:
    """Load a full-model checkpoint's weights into ``model`` in place. transformers 5.23's Trainer resume
    loads ``model.safetensors`` with a plain ``load_state_dict``, but Qwen2.5-VL saves its weights under the
    original names (``visual.*``, ``model.layers.*``) that only ``from_pretrained`` maps back: on resume the
    Trainer restored the step and the optimizer but left every weight at its initial value ("missing keys").
    Adapters (PEFT) are not affected and left to the Trainer."""
    if not (Path(ckpt) / "model.safetensors").is_file() or hasattr(model, "peft_config"):
        return
    loaded = type(model).from_pretrained(ckpt, dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict())


def trl_config(cls, section, **fixed):
    """TRL's own config ``cls`` (``SFTConfig``, ``GRPOConfig``) from a recipe section: every field of the
    section that is also a field of ``cls`` keeps its name and value, the section's ``trl`` mapping passes
    any other field of ``cls`` through (one new TRL knob = one line of YAML), and ``fixed`` (what the stage
    decides itself: output folder, precision, columns) wins. A ``trl`` key ``cls`` lacks is an error."""
    names = {f.name for f in dataclasses.fields(cls)}
    extra = dict(getattr(section, "trl", None) or {})
    unknown = sorted(set(extra) - names)
    if unknown:
        raise ConfigError(
            f"{type(section).__name__}: key 'trl.{unknown[0]}' is not a field of trl.{cls.__name__}"
        )
    ours = {f.name: getattr(section, f.name) for f in dataclasses.fields(section) if f.name in names}
    return cls(**{**ours, **extra, **fixed})


def mixed_precision(model) -> dict:
    """SFTConfig's ``bf16`` / ``fp16``: bf16 autocast only on a GPU and only for a bf16 model. TRL's
    SFTConfig turns bf16 on by default, also on a CPU, where it is slower and changes the tiny
    profile's numbers (an fp32 model then trains with bf16 matmuls)."""
    bf16 = torch.cuda.is_available() and next(model.parameters()).dtype == torch.bfloat16
    return {"bf16": bool(bf16), "fp16": False}


def next_token_nll(model, inputs: dict, num_items_in_batch=None) -> torch.Tensor:
    """The SFT loss from full logits: the labelled tokens' summed next-token NLL, each weighed by
    ``inputs["loss_weights"]`` when given, over ``num_items_in_batch`` (the accumulated batch's labelled tokens,
    as Trainer counts them) or this batch's count: TRL's fused LM head's quantity, without its vocabulary tiles."""
    labels, weights = inputs["labels"], inputs.get("loss_weights")
    forward = {k: v for k, v in inputs.items() if k not in ("labels", "loss_weights")}
    logits = model(**forward, use_cache=False).logits
    nll = -(token_logps(logits, labels)[0] * (1 if weights is None else weights[:, 1:])).sum()
    count = (labels[:, 1:] != IGNORE).sum() if num_items_in_batch is None else num_items_in_batch
    return nll / torch.as_tensor(count, device=nll.device).clamp(min=1)


def cpu_sft_trainer():
    """SFTTrainer for a CPU or for weighted tokens (made on demand: TRL is imported only when training)."""
    from trl import SFTTrainer

    class CPUSFTTrainer(SFTTrainer):
        """SFTTrainer with the loss from full logits (``next_token_nll``), not TRL 1.16's fused LM head, whose CPU
        stand-ins doubled a tiny V-SFT step (BENCHMARKS.md, "Where a tiny training step goes"); no entropy logs."""

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            if return_outputs or self.args.loss_type != "nll" or self.args.label_smoothing_factor > 0:
                if "loss_weights" in inputs:  # TRL's loss would hand them to the model as an unknown argument
                    raise ValueError("weighted tokens (base.tag_weight) need the plain nll loss")
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = next_token_nll(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # as TRL: DDP averages the gradients over ranks
            return loss

    return CPUSFTTrainer


def train_sft(
    model,
    processor,
    train_dataset,
    args,
    collator,
    out_dir: str | Path,
    eval_fn=None,
    resume: bool = True,
    optimizer=None,
    eval_steps: int | None = None,
    callbacks=None,
    **overrides,
):
    """Train with TRL's SFTTrainer; resume from the last ``checkpoint-*`` in ``out_dir`` when present.

    ``args`` is a recipe section (``TrainConfig``, ``BaseConfig``): its fields named like SFTConfig's
    become the SFTConfig (``trl_config``). ``eval_fn(model, step) -> dict`` is called every ``eval_steps``
    steps and at the end; its numbers go into the trainer's log history. ``callbacks``: extra
    TrainerCallbacks. ``optimizer`` (optional) lets a caller set per-module learning rates; the scheduler
    is still the recipe's. Extra keyword arguments override SFTConfig fields. Returns the trainer.
    """
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    config = trl_config(
        SFTConfig,
        args,
        output_dir=str(out_dir),
        save_total_limit=2,  # resume needs the last one; keep disk use small
        max_length=None,  # the collator builds the batch; nothing to truncate here
        remove_unused_columns=False,  # keep frames / video_metadata / messages for the collator
        dataset_kwargs={"skip_prepare_dataset": True},
        use_cpu=not torch.cuda.is_available(),
        **mixed_precision(model),
        dataloader_num_workers=0,
        # load_model already enabled checkpointing when the recipe asks for it (model.gradient_checkpointing);
        # TRL's SFTConfig would turn it on for every model, under a name transformers 5 warns about
        activation_checkpointing=False,
        **overrides,
    )

    callbacks = list(callbacks or [])
    if eval_fn is not None:

        class EvalCallback(TrainerCallback):
            def on_step_end(self, targs, state, control, model=None, **kw):
                every = eval_steps or targs.save_steps
                if state.global_step % every == 0 or state.global_step == state.max_steps:
                    was_training = model.training
                    metrics = {f"eval_{k}": v for k, v in eval_fn(model, state.global_step).items()}
                    model.train(was_training)
                    state.log_history.append({**metrics, "step": state.global_step})

        callbacks.append(EvalCallback())

    trainer = (SFTTrainer if torch.cuda.is_available() and not collator.loss_weights else cpu_sft_trainer())(
        model=model,
        args=config,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
        optimizers=(optimizer, None) if optimizer is not None else (None, None),
    )
    if overrides.get("disable_tqdm"):  # batch / --json use: no log dicts printed to stdout
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    ckpt = last_checkpoint(out_dir) if resume else None
    if ckpt:
        _restore_weights(model, ckpt)
    trainer.train(resume_from_checkpoint=ckpt)
    return trainer


# ---- Stage 1 (FRE) and Stage 2 (V-SFT): one loop, examples -> VideoCollator -> SFTTrainer with a fresh
# LoRA on the language model. FRE reads the text reasoning mixture, V-SFT the teacher's video chains (16
# frames at the profile's size), starting from the FRE adapter merged into the base (``paths.prior_adapters``):
# one small adapter per stage, each droppable for an ablation, at the cost of not "unmerging" FRE afterwards.


class StageData:
    """Examples by index, read in order: example ``i`` is row ``order[i]`` of a seeded permutation of
    the rows, reshuffled every epoch. An example depends only on (seed, i), so a resumed run, which
    skips the batches it already consumed, sees exactly the examples the uninterrupted run would have
    seen, none twice and none skipped (tested)."""

    def __init__(self, rows: list[dict], length: int, seed: int, make_example):
        if not rows:
            raise ValueError("no training rows")
        self.rows, self.length, self.make_example = rows, length, make_example
        n = len(rows)
        epochs = -(-length // n)
        rng = np.random.default_rng(seed)
        self.order = np.concatenate([rng.permutation(n) for _ in range(epochs)])[:length]

    def __len__(self):
        return self.length

    def example(self, i: int) -> dict:
        row = int(self.order[i])
        return {**self.make_example(self.rows[row]), "row": row, "index": int(i)}

    def dataset(self):
        import datasets

        keys = ("messages", "frames", "video_metadata", "row", "index")

        def transform(batch):
            items = [self.example(i) for i in batch["i"]]
            return {k: [it.get(k) for it in items] for k in keys}

        return datasets.Dataset.from_dict({"i": list(range(self.length))}).with_transform(transform)


def stage_rows(recipe, stage: str, run=None) -> tuple[list[dict], Path]:
    """The training rows of a stage and their file: the recipe's ``data`` path, else the run's own
    (``02_cot_generation/fre/fre.jsonl`` for FRE, ``02_cot_generation/cot.jsonl`` for V-SFT)."""

    cfg = getattr(recipe, stage)
    default = f"{FOLDERS['cot']}/fre/fre.jsonl" if stage == "fre" else f"{FOLDERS['cot']}/cot.jsonl"
    path = Path(cfg.data) if cfg.data else run_dir(run, recipe.profile) / default
    rows = read_jsonl(path, "FRE data" if stage == "fre" else "V-SFT chains")
    need = "messages" if stage == "fre" else "chain"
    bad = [i for i, r in enumerate(rows, 1) if need not in r or (stage == "vsft" and not r.get("video"))]
    if bad:
        raise ValueError(f"{path}: rows {bad[:5]} lack '{need}'" + ("/'video'" if stage == "vsft" else ""))
    return rows, path


def vsft_example(row: dict, read) -> dict:
    """A chain row -> frames + metadata + the chat (the question, then the teacher's chain); ``read``:
    path -> ``Video`` (``clip_reader``)."""

    video = read(row["video"])
    msgs = video_messages(QUESTION, row["chain"], hint=format_hint(row.get("format") or "plain"))
    return {"messages": msgs, "frames": video.frames, "video_metadata": video.metadata()}


def checked_rows(rows: list[dict], read) -> tuple[list[dict], list[dict]]:
    """Drop rows whose video ``read`` cannot decode (counted, never fatal): (usable rows, skipped)."""
    ok, skipped = [], []
    for r in rows:
        try:
            read(r["video"])
            ok.append(r)
        except VideoDecodeError as e:
            skipped.append({"video": r["video"], "error": str(e)})
    return ok, skipped


def stage_examples(recipe, stage: str, run=None) -> tuple[StageData, dict]:
    """The stage's StageData (``max_steps x batch x accumulation`` examples) and a data summary."""
    cfg = getattr(recipe, stage)
    rows, path = stage_rows(recipe, stage, run)
    skipped = []
    if stage == "fre":
        make = lambda r: {"messages": r["messages"]}  # noqa: E731
    else:
        read = clip_reader(recipe.video.frames())
        rows, skipped = checked_rows(rows, read)
        if not rows:
            raise ValueError(f"{path}: no decodable video among its rows ({len(skipped)} skipped)")
        make = functools.partial(vsft_example, read=read)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    per_step = cfg.per_device_train_batch_size * cfg.gradient_accumulation_steps * world
    length = cfg.max_steps * per_step if cfg.max_steps > 0 else int(cfg.num_train_epochs * len(rows))
    data = StageData(rows, length, cfg.seed, make)
    summary = {
        "file": str(path),
        "rows": len(rows),
        "skipped": skipped,
        "examples": length,
        "epochs": round(length / len(rows), 2),
    }
    return data, summary


def train_stage(
    recipe,
    stage: str,
    run=None,
    resume: bool = True,
    eval_fn=None,
    progress: bool = False,
    skip=(),
    callbacks=None,
) -> dict:
    """Train FRE or V-SFT on the recipe; save ``<stage folder>/adapter``, ``model_card.json`` and
    ``metrics.json``; return the metrics. ``eval_fn(model, processor, step) -> dict`` (optional) is
    called before training, every ``eval_steps`` and at the end. ``skip``: earlier stages not to
    merge (V-SFT merges the FRE adapter when the run has one and ``vsft.from_fre`` is on)."""
    if stage not in ("fre", "vsft"):
        raise ValueError(f"train_stage: stage must be fre or vsft, not {stage!r}")
    cfg = getattr(recipe, stage)
    out = stage_dir(run, stage, recipe.profile)
    skip = tuple(skip) + (() if stage != "vsft" or cfg.from_fre else ("fre",))
    adapters = prior_adapters(run, stage, recipe.profile, skip=skip)
    torch.manual_seed(cfg.seed)
    model, processor = load_model(recipe, lora=True, adapters=adapters)
    data, summary = stage_examples(recipe, stage, run)
    evals = []

    def run_eval(m, step):
        result = eval_fn(m, processor, step) if eval_fn else {}
        if result:
            evals.append({"step": step, **result})
        return result

    t0 = time.time()
    before = run_eval(model, 0) if eval_fn else {}
    trainer = train_sft(
        model,
        processor,
        data.dataset(),
        cfg,
        VideoCollator(processor),
        out / "checkpoints",
        eval_fn=run_eval if eval_fn and cfg.eval_steps else None,
        resume=resume,
        eval_steps=cfg.eval_steps or None,
        callbacks=callbacks,
        train_sampling_strategy="sequential",
        disable_tqdm=not progress,
    )
    train_s = time.time() - t0
    step = trainer.state.global_step
    done = evals[-1] if evals and evals[-1]["step"] == step else None  # the callback already scored the end
    after = (
        ({k: v for k, v in done.items() if k != "step"} if done else run_eval(model, step)) if eval_fn else {}
    )
    if trainer.is_deepspeed_enabled or trainer.is_fsdp_enabled:
        # ZeRO-3 / FSDP shard the weights: every rank joins the gather and rank 0 writes the adapter
        # (plus the processor and training_args.bin: Trainer.save_model's way, maintained for PEFT)
        trainer.save_model(str(out / "adapter"))
    elif trainer.is_world_process_zero():
        model.save_pretrained(out / "adapter")
    history = trainer.state.log_history
    metrics = {
        "stage": stage,
        "steps": trainer.state.global_step,
        "train_seconds": round(train_s, 1),
        "seconds_per_step": round(train_s / max(trainer.state.global_step, 1), 3),
        "train_loss_first": next((h["loss"] for h in history if "loss" in h), None),
        "train_loss_last": next((h["loss"] for h in reversed(history) if "loss" in h), None),
        "before": before,
        "after": after,
        "eval_curve": evals,
        "data": summary,
        "merged_adapters": [str(a) for a in adapters],
        "parameters": count_parameters(model),
    }
    card = {
        "stage": stage,
        "recipe": recipe.source,
        "profile": recipe.profile,
        "model": recipe.model.name_or_path
        or ("tiny perception base" if recipe.model.use_base else "tiny random init"),
        "train": dataclasses.asdict(cfg),
        "lora": dataclasses.asdict(recipe.model.lora),
        "video": dataclasses.asdict(recipe.video),
        "metrics": metrics,
        "loss": [{"step": h["step"], "loss": h["loss"]} for h in history if "loss" in h],
    }
    if trainer.is_world_process_zero():
        (out / "model_card.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
        write_metrics(out, metrics)
    return metrics


def train_fre(recipe, run=None, **kw) -> dict:
    """Stage 1: LoRA SFT on text-only reasoning (loss on the assistant's tokens only)."""
    return train_stage(recipe, "fre", run, **kw)


def train_vsft(recipe, run=None, **kw) -> dict:
    """Stage 2: LoRA SFT on the teacher's video chains, from the FRE result when the run has one."""
    return train_stage(recipe, "vsft", run, **kw)


def accuracy_eval(recipe, split: str = "val", clips: int = 0, batch_size: int = 12):
    """``eval_fn`` for ``train_stage``: greedy answers on SynthAct ``split`` (``clips`` clips spread
    over the classes, 0 = all), scored with the accuracy reward's normalisation. Greedy keeps the curve free of
    sampling noise; the evaluation (``reasonact eval``) samples with the paper's decoding and seeds."""
    from types import SimpleNamespace

    records = read_manifest(ensure_dataset(recipe)["manifests"][split])
    records = spread(records, clips) if clips else records  # the manifest is grouped by class
    videos = [read_video(r["video"], **recipe.video.frames()) for r in records]
    fmt = recipe.teacher.format
    greedy = SimpleNamespace(max_new_tokens=recipe.eval.max_new_tokens, temperature=0.0, top_p=1.0)

    def run(model, processor, step):
        texts = complete_clips(model, processor, videos, greedy, fmt, batch_size=batch_size)
        correct = [is_correct(parse(t).answer, r["label"], r.get("dataset")) for t, r in zip(texts, records)]
        return {
            "accuracy": float(np.mean(correct)),
            "format": format_rate(texts, fmt == "process"),
            "clips": len(records),
            "example": texts[0] if texts else "",
            "example_label": records[0]["label"] if records else "",
        }

    return run


def text_answers(model, processor, rows: list[dict], max_new_tokens: int = 128, batch_size: int = 16):
    """Greedy completions of text-only chat rows (their last, assistant, turn left out)."""
    was_training, out = model.training, []
    model.eval()
    for i in range(0, len(rows), batch_size):
        chats = [r["messages"][:-1] for r in rows[i : i + batch_size]]
        out += generate(model, processor, chats, max_new_tokens=max_new_tokens, do_sample=False)[0]
    model.train(was_training)
    return out


def fre_held_out(recipe, train_rows: list[dict], n: int = 48) -> tuple[list[dict], int]:
    """``n`` generated FRE tasks for a before/after check: HMDB51 actions, from a task seed 1000 away from
    the training data's. Returns ``(tasks, overlap)``, ``overlap`` = how many of their prompts also occur
    in ``train_rows`` (the generator can repeat a short prompt; reported, not hidden)."""

    actions = [a for a in load_library(recipe.data.library_dir) if a.dataset == "hmdb51"]
    tasks = generate_tasks(n, actions=actions, seed=recipe.fre_data.seed + 1000)
    seen = {json.dumps(r["messages"][0]) for r in train_rows}
    return tasks, sum(json.dumps(r["messages"][0]) in seen for r in tasks)


def fre_accuracy(model, processor, rows: list[dict]) -> dict:
    """Exact-match accuracy (case and spacing normalised) of the ``<answer>`` on rows with an ``answer``
    (FRE's verifiable tasks), and the share of completions in the right format."""

    texts = text_answers(model, processor, rows)

    def norm(x):
        return " ".join(str(x).lower().replace("_", " ").split()) if x is not None else None

    correct = [norm(parse(t).answer) == norm(r["answer"]) for t, r in zip(texts, rows)]
    return {
        "accuracy": float(np.mean(correct)) if rows else None,
        "format": format_rate(texts) if rows else None,
        "texts": texts,
    }
