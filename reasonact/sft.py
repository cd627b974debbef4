"""Supervised fine-tuning on TRL's SFTTrainer: the video collator and one thin training entry.

    collator = VideoCollator(processor)
    train_sft(model, processor, dataset, recipe.vsft, collator, "runs/x/04_video_sft")

An example is a dict with ``messages`` (chat turns, the last one the assistant's answer) and, for
video examples, ``frames`` ((N, H, W, 3) uint8, already sampled and resized) plus
``video_metadata`` (transformers' ``VideoMetadata``: fps, total frames, sampled indices — without it
the processor assumes 24 fps and the temporal positions collapse, STACK_NOTES.md). Text-only
examples (FRE) simply have no ``frames``.

TRL's own VLM collator is image-only, so SFTTrainer gets this collator with
``remove_unused_columns=False`` and ``skip_prepare_dataset`` (the collator does all the work).
"""

from __future__ import annotations

from pathlib import Path

import torch

from reasonact.models import VISION_TOKENS

IGNORE = -100  # the label value the cross-entropy loss skips


class VideoCollator:
    """Chat template + processor on a batch; labels only on the last assistant turn.

    Masked (-100): everything up to and including ``<|im_start|>assistant\\n`` of the last assistant
    turn, everything after its ``<|im_end|>``, padding, and every vision token (the model must never
    learn to emit ``<|video_pad|>``).
    """

    def __init__(self, processor, max_length: int | None = None):
        self.processor = processor
        tok = processor.tokenizer
        self.max_length = max_length
        self.header = tok.encode("<|im_start|>assistant\n", add_special_tokens=False)
        self.im_end = tok.convert_tokens_to_ids("<|im_end|>")
        self.vision_ids = torch.tensor([tok.convert_tokens_to_ids(t) for t in VISION_TOKENS])

    def __call__(self, examples: list[dict]) -> dict:
        texts = [self.processor.apply_chat_template(ex["messages"], tokenize=False) for ex in examples]
        kwargs = {}
        videos = [ex for ex in examples if ex.get("frames") is not None]
        if videos:
            kwargs = dict(
                videos=[ex["frames"] for ex in videos],
                do_sample_frames=False,
                video_metadata=[ex["video_metadata"] for ex in videos],
            )
        batch = self.processor(text=texts, padding=True, padding_side="right", return_tensors="pt", **kwargs)
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

    out_dir = Path(out_dir)
    return get_last_checkpoint(str(out_dir)) if out_dir.is_dir() else None


def _restore_weights(model, ckpt: str) -> None:
    """Load a full-model checkpoint's weights into ``model`` in place.

    transformers 5.23's Trainer resume loads ``model.safetensors`` with a plain ``load_state_dict``;
    Qwen2.5-VL saves its weights under the original names (``visual.*``, ``model.layers.*``) and only
    ``from_pretrained`` maps them back. Measured: on resume the Trainer restored the step count and
    the optimizer but left every weight at its initial value ("missing keys" warning). So the weights
    are loaded here, through ``from_pretrained``; adapters (PEFT) are not affected and left to the Trainer.
    """
    if not (Path(ckpt) / "model.safetensors").is_file() or hasattr(model, "peft_config"):
        return
    loaded = type(model).from_pretrained(ckpt, dtype=next(model.parameters()).dtype)
    model.load_state_dict(loaded.state_dict())


def _arg(args, name, default):
    return getattr(args, name, default) if args is not None else default


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

    ``args`` is a TrainConfig-like object (learning_rate, per_device_train_batch_size,
    gradient_accumulation_steps, max_steps, warmup_ratio, lr_scheduler_type, save_steps,
    logging_steps, seed...). ``eval_fn(model, step) -> dict`` is called every ``eval_steps`` steps
    and at the end; its numbers go into the trainer's log history. ``callbacks``: extra
    TrainerCallbacks. ``optimizer`` (optional) lets a
    caller set per-module learning rates; the scheduler is still the recipe's. Extra keyword
    arguments override SFTConfig fields. Returns the trainer (``trainer.state.log_history``).
    """
    from transformers import TrainerCallback
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(out_dir),
        learning_rate=_arg(args, "learning_rate", 2e-5),
        per_device_train_batch_size=_arg(args, "per_device_train_batch_size", 4),
        gradient_accumulation_steps=_arg(args, "gradient_accumulation_steps", 1),
        num_train_epochs=_arg(args, "num_train_epochs", 1.0),
        max_steps=_arg(args, "max_steps", -1),
        warmup_steps=_arg(args, "warmup_ratio", 0.0),  # transformers 5: a float < 1 is a ratio
        lr_scheduler_type=_arg(args, "lr_scheduler_type", "cosine"),
        weight_decay=_arg(args, "weight_decay", 0.0),
        max_grad_norm=_arg(args, "max_grad_norm", 1.0),
        save_steps=_arg(args, "save_steps", 200),
        save_total_limit=2,  # resume needs the last one; keep disk use small
        logging_steps=_arg(args, "logging_steps", 10),
        seed=_arg(args, "seed", 42),
        max_length=None,  # the collator builds the batch; nothing to truncate here
        remove_unused_columns=False,  # keep frames / video_metadata / messages for the collator
        dataset_kwargs={"skip_prepare_dataset": True},
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
        **{"train_sampling_strategy": _arg(args, "train_sampling_strategy", "random"), **overrides},
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

    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
        callbacks=callbacks,
        optimizers=(optimizer, None) if optimizer is not None else (None, None),
    )
    ckpt = last_checkpoint(out_dir) if resume else None
    if ckpt:
        _restore_weights(model, ckpt)
    trainer.train(resume_from_checkpoint=ckpt)
    return trainer
