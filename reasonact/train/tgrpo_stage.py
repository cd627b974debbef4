"""Stage 3's entry point: the clips, TRL's GRPOConfig from the recipe, training, saving, before/after.

    from reasonact.train.tgrpo_stage import train_tgrpo
    metrics = train_tgrpo(load_config("tiny"), run="runs/tiny")   # what `reasonact train tgrpo` calls

The model is the recipe's base with the run's earlier adapters (FRE, V-SFT) merged in order and a
fresh LoRA on top (``vlm.load_model``); with ``beta > 0`` TRL's reference is that model with the
adapter disabled, so the KL is measured against the V-SFT policy. Outputs, in ``<run>/05_tgrpo/``:
``checkpoints/`` (TRL checkpoints; a re-run resumes from the last one), ``adapter/``,
``model_card.json`` (data, recipe, metrics, reward curves) and ``metrics.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import numpy as np

from reasonact.config import REPO_ROOT
from reasonact.data.manifest import read_manifest, spread
from reasonact.data.synthact import ensure_dataset
from reasonact.paths import prior_adapters, stage_dir, write_metrics
from reasonact.prompts import QUESTION, format_hint, video_messages
from reasonact.rewards import reward_components, scorer_for
from reasonact.train.sft import last_checkpoint, trl_config
from reasonact.train.tgrpo import VideoGRPOTrainer, reward_setup
from reasonact.video import read_video
from reasonact.vlm import complete_clips, count_parameters, load_model

CURVE_KEYS = (
    "reward",
    "rewards/total/mean",
    "rewards/accuracy",
    "rewards/format",
    "rewards/subaction",
    "rewards/temporal_consistency",
    "rewards/temporal_contrast/mean",
    "rewards/perception/mean",
    "rewards/reasoning/mean",
    "tgrpo/ordered_accuracy",
    "tgrpo/shuffled_accuracy",
    "tgrpo/bonus_group_share",
    "kl",
    "clip_ratio/region_mean",
    "completions/mean_length",
    "entropy",
    "loss",
    "time/generation",
    "time/rewards",
    "time/loss_forward",
    "time/backward",
)


def tgrpo_rows(recipe, manifest: str | Path | None = None) -> tuple[list[dict], Path]:
    """One row per clip: the prompt (chat messages with a video part) and the reward columns.
    ``manifest``: a JSONL manifest (default: ``tgrpo.manifest``, else the SynthAct train split)."""

    cfg = recipe.tgrpo
    if manifest is None and cfg.manifest is None:
        manifest = ensure_dataset(recipe)["manifests"]["train"]
    path = Path(manifest or cfg.manifest)
    if not path.is_absolute() and not path.exists():  # recipes name files from the repository root
        path = REPO_ROOT / path
    records = read_manifest(path)
    if not records:
        raise ValueError(f"{path}: the manifest has no clips")
    missing = [r["video"] for r in records if not Path(r["video"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{path}: {len(missing)} video file(s) not found, e.g. {missing[0]}")
    prompt = video_messages(QUESTION, hint=format_hint("process" if cfg.process_aware else "plain"))
    rows = [
        {
            "prompt": prompt,
            "video": r["video"],
            "label": r["label"],
            "dataset": r["dataset"],
            "phases": r.get("phases"),
            "fps": r.get("fps"),
            "num_frames": r.get("num_frames"),
            "duration_s": r.get("duration_s"),
            "num_sampled_frames": recipe.video.num_frames,
        }
        for r in records
    ]
    return rows, path


def rows_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` that returns the rows exactly (JSON per row: no Arrow type unification of
    the chat messages or the phases)."""
    import datasets

    ds = datasets.Dataset.from_dict({"row": [json.dumps(r) for r in rows]})
    return ds.with_transform(lambda b: _columns([json.loads(x) for x in b["row"]]))


def _columns(rows: list[dict]) -> dict:
    return {k: [r.get(k) for r in rows] for k in rows[0]}


def grpo_config(recipe, output_dir: str | Path, **overrides):
    """TRL's GRPOConfig from ``recipe.tgrpo`` (``sft.trl_config``: the section's TRL-named fields and its
    ``trl`` mapping); keyword arguments override any GRPOConfig field."""
    import torch
    from trl import GRPOConfig

    cuda, dtype = torch.cuda.is_available(), recipe.model.dtype
    return trl_config(
        GRPOConfig,
        recipe.tgrpo,
        output_dir=str(output_dir),
        save_total_limit=2,  # resume needs the last one; keep disk use small
        bf16=cuda and dtype == "bfloat16",
        fp16=cuda and dtype == "float16",
        activation_checkpointing=recipe.model.gradient_checkpointing,  # transformers 5's name
        disable_dropout=True,  # the ratio pi/pi_old must be exactly 1 on-policy; dropout would add noise
        remove_unused_columns=False,  # the video path and the reward columns must reach the trainer
        use_cpu=not cuda,
        dataloader_num_workers=0,
        **overrides,
    )


def eval_records(recipe, n: int) -> list[dict]:
    """``n`` clips of the SynthAct val split, spread over its classes (the manifest is grouped by class)."""

    return spread(read_manifest(ensure_dataset(recipe)["manifests"]["val"]), n)


def score_clips(model, processor, recipe, records: list[dict], seed: int = 0, batch_size: int = 8) -> dict:
    """Generate one completion per clip with the paper's decoding (``recipe.eval``; evaluate.py) and score
    it with the rewards module: mean of each component, of the weighted total (recipe weights) and
    accuracy. This is the before/after check of the stage, not the full evaluation (``reasonact eval``)."""

    cfg = recipe.tgrpo
    videos = [read_video(r["video"], **recipe.video.frames()) for r in records]
    fmt = "process" if cfg.process_aware else "plain"
    texts = complete_clips(model, processor, videos, recipe.eval, fmt, seed, batch_size)
    cols = {
        k: [r.get(k) for r in records]
        for k in ("label", "dataset", "phases", "fps", "num_frames", "duration_s")
    }
    rows = reward_components(
        None,
        texts,
        weights=cfg.weights,
        process_aware=cfg.process_aware,
        scorer=scorer_for(recipe.data.embedding_model),
        num_sampled_frames=[recipe.video.num_frames] * len(records),
        **cols,
    )
    out = {"clips": len(rows), "seed": seed}
    for key in rows[0] if rows else ():
        out[key] = round(float(np.mean([r[key] for r in rows])), 4)
    return out


def _curve(history: list[dict]) -> list[dict]:
    return [
        {"step": h["step"], **{k: h[k] for k in CURVE_KEYS if h.get(k) is not None}}
        for h in history
        if "reward" in h or "loss" in h
    ]


def build_trainer(
    recipe,
    output_dir: str | Path,
    run=None,
    *,
    skip=(),
    manifest: str | Path | None = None,
    scorer=None,
    callbacks=None,
    **overrides,
):
    """``(trainer, info)``: the model (base + the run's earlier adapters merged + a fresh LoRA), the clips,
    the rewards and a VideoGRPOTrainer writing checkpoints to ``output_dir``. ``info``: rows, data file,
    merged adapters."""
    import torch

    cfg = recipe.tgrpo
    if cfg.use_vllm or overrides.get("use_vllm"):
        raise ValueError(
            f"{recipe.source}: tgrpo.use_vllm is not supported with video (reasonact/train/tgrpo.py)"
        )
    rows, source = tgrpo_rows(recipe, manifest)
    adapters = prior_adapters(run, "tgrpo", recipe.profile, skip=skip)
    torch.manual_seed(cfg.seed)  # the fresh LoRA's initialisation
    model, processor = load_model(recipe, lora=True, adapters=adapters)
    funcs, weights = reward_setup(cfg, scorer or scorer_for(recipe.data.embedding_model))
    args = grpo_config(recipe, output_dir, reward_weights=weights, **overrides)
    with warnings.catch_warnings():
        # with beta > 0 TRL copies our adapter's config into a frozen "ref" adapter; on the tiny profile that
        # config keeps the embeddings' tie (modules_to_save), which peft cannot find again in the wrapped model
        # and warns about. The ref adapter never trains, so there is nothing to tie: the warning is noise.
        warnings.filterwarnings(
            "ignore", message="You have requested `ensure_weight_tying`, but no tied modules"
        )
        trainer = VideoGRPOTrainer(
            model=model,
            reward_funcs=funcs,
            args=args,
            processing_class=processor,
            train_dataset=rows_dataset(rows),
            callbacks=callbacks,
            frames=recipe.video.frames(),
            shuffled_generations=cfg.shuffled_generations,
            process_aware=cfg.process_aware,
        )
    return trainer, {"rows": rows, "file": source, "adapters": adapters}


def train_tgrpo(
    recipe,
    run=None,
    resume: bool = True,
    *,
    progress: bool = False,
    skip=(),
    callbacks=None,
    manifest: str | Path | None = None,
    scorer=None,
    **overrides,
) -> dict:
    """Stage 3: T-GRPO on the recipe's ``tgrpo`` section; returns the metrics (also in metrics.json).

    ``resume``: continue from the last checkpoint in ``05_tgrpo/checkpoints`` when there is one.
    ``skip``: earlier stages not to merge (e.g. ``("fre", "vsft")`` for "direct T-GRPO").
    ``manifest``: train clips (default: the recipe's, else SynthAct train). ``scorer``: the rewards'
    Scorer (default: the module's). Other keyword arguments override GRPOConfig fields.
    """

    cfg = recipe.tgrpo
    out = stage_dir(run, "tgrpo", recipe.profile)
    trainer, info = build_trainer(
        recipe,
        out / "checkpoints",
        run,
        skip=skip,
        manifest=manifest,
        scorer=scorer,
        callbacks=callbacks,
        disable_tqdm=not progress,
        **overrides,
    )
    if not progress:  # batch / --json: the log dicts go to metrics.json's curve, not to stdout
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    model, processor, weights = trainer.model, trainer.processing_class, trainer.reward_weights.tolist()
    held_out = (
        eval_records(recipe, cfg.eval_clips) if cfg.eval_clips and not (manifest or cfg.manifest) else []
    )
    before = score_clips(model, processor, recipe, held_out, cfg.seed) if held_out else {}
    ckpt = last_checkpoint(out / "checkpoints") if resume else None
    t0 = time.time()
    trainer.train(resume_from_checkpoint=ckpt)
    seconds = time.time() - t0
    after = score_clips(model, processor, recipe, held_out, cfg.seed) if held_out else {}

    curve = _curve(trainer.state.log_history)
    logged = [c for c in curve if "reward" in c]
    steps = trainer.state.global_step
    metrics = {
        "stage": "tgrpo",
        "steps": steps,
        "resumed_from": ckpt,
        "train_seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / max(steps, 1), 3),
        "process_aware": cfg.process_aware,
        "first_log": logged[0] if logged else {},
        "last_log": logged[-1] if logged else {},
        "before": before,
        "after": after,
        "curve": curve,
        "data": {"file": str(info["file"]), "clips": len(info["rows"]), "eval_clips": len(held_out)},
        "merged_adapters": [str(a) for a in info["adapters"]],
        "parameters": count_parameters(model),
    }
    if trainer.is_world_process_zero():
        model.save_pretrained(out / "adapter", selected_adapters=["default"])  # not TRL's "ref" copy
        card = {
            "stage": "tgrpo",
            "recipe": recipe.source,
            "profile": recipe.profile,
            "model": recipe.model.name_or_path
            or ("tiny perception base" if recipe.model.use_base else "tiny random init"),
            "tgrpo": dataclasses.asdict(cfg),
            "lora": dataclasses.asdict(recipe.model.lora),
            "video": dataclasses.asdict(recipe.video),
            "reward_functions": trainer.reward_func_names,
            "reward_weights": weights,
            "metrics": metrics,
        }
        (out / "model_card.json").write_text(json.dumps(card, indent=1, default=str) + "\n")
        write_metrics(out, metrics)
    return metrics
