"""Stage 3, T-GRPO: TRL's GRPOTrainer made video-aware, plus Video-R1's shuffled-frame contrast.

TRL 1.16's GRPOTrainer knows images, not video: frames reach generation but not the log-prob
forwards, so the loss is silently computed without the video (README, "Notes on the stack"). ``VideoGRPOTrainer``
replaces only the pieces that know images and leaves the rest to TRL (loss types, clipping, KL,
reference model / disabled adapter, accelerate and DeepSpeed, metrics and ``report_to``):

- ``_tokenize_prompts``: the processor encodes each row's decoded frames with their metadata (so the
  temporal positions are right); generation gets ``pixel_values_videos`` & co.
- ``_get_per_token_logps_and_entropies``: every log-prob forward (old policy, reference, current)
  gets ``pixel_values_videos``, ``video_grid_thw``, ``second_per_grid_ts`` and ``mm_token_type_ids``.
- the video tensors travel in the batch as one tensor per row, so TRL's shuffle and split of a
  generation batch over ``steps_per_generation`` keep each clip with its completions.
- vision tokens are suppressed in generation (a sampled <|video_pad|> breaks the next forward).
- vLLM is refused at start-up: TRL's vLLM path sends images only, so the rollouts would be blind.

These are TRL 1.16's private methods (pyproject pins TRL to that minor version): overridden
``_generate_and_score_completions``, ``_tokenize_prompts``, ``_get_per_token_logps_and_entropies``,
``_compute_loss``, ``_calculate_rewards``, ``_generate``, ``_generate_single_turn`` (runs transformers'
generate itself: the shuffled-frame group joins the ordered prompts' call, top-p by ``vlm.NucleusWarper``),
``_prepare_inputs``; TRL's ``generation_config``, ``generation_kwargs`` and ``_dist`` are read.

Read in this order: ``shuffled_frame_bonus`` (the T-GRPO rule, a pure function) and ``contrast_reward``
(the rule as a TRL reward), then the step, ``VideoGRPOTrainer._generate_and_score_completions`` (one
screen): the shuffled-frame prompts per group, then TRL's step with the video, whose one generate call
samples the ordered and the shuffled completions (``_generate_single_turn``); rewards are the rewards
module's weighted total plus the bonus. In process-aware mode (VideoP2R's PA-GRPO, ``_span_advantages``)
the <observation> tokens get the perception reward's advantage and every other token the reasoning one's. The stage's entry point is ``tgrpo_stage.train_tgrpo`` (``reasonact train tgrpo``).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import time
from collections import defaultdict

import numpy as np
import torch
from transformers import Trainer
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation

from reasonact.prompts import encode_chats
from reasonact.rewards import get_reward
from reasonact.rewards.functions import accuracy_reward, normalize_weights
from reasonact.rewards.parse import block_matches
from reasonact.video import Video, read_video, shuffle_frames
from reasonact.vlm import nucleus_sampling, token_logps, until_eos, vision_token_ids

logger = logging.getLogger(__name__)

VIDEO_KEYS = ("pixel_values_videos", "video_grid_thw", "second_per_grid_ts")
# Process-aware mode: which reward functions make up each span's reward (summed with TRL's weights).
PERCEPTION_SIDE = ("perception",)
REASONING_SIDE = ("reasoning", "format", "temporal_contrast")


# ---------------------------------------------------------------- the shuffled-frame bonus (Video-R1)


def shuffled_frame_bonus(
    ordered_correct, shuffled_correct, mu: float = 1.0, bonus: float = 0.3
) -> list[float]:
    """T-GRPO's rule for ONE prompt group. With p the group's accuracy on the frames in order and p~ its
    accuracy on the same frames shuffled in time::

        bonus_i = bonus  if completion i (ordered) is correct and p > mu * p~,  else 0

    The paper states the rule with mu = 1 ("ordered beats shuffled"); Video-R1's code used mu = 0.8 and
    ``>=``. Strict ``>``: a clip solved as well without order (p = p~) earns nothing, so the bonus pays
    for *using* order. No shuffled completions, no bonus. Shuffled completions are never rewarded (they
    are generated without gradient). Video-R1 compared batch means, i.e. per prompt at its batch size 1."""
    if not ordered_correct or not shuffled_correct:
        return [0.0] * len(ordered_correct)
    p = sum(map(bool, ordered_correct)) / len(ordered_correct)
    q = sum(map(bool, shuffled_correct)) / len(shuffled_correct)
    return [bonus if ok and p > mu * q else 0.0 for ok in ordered_correct]


def contrast_reward(mu: float = 1.0, bonus: float = 0.3, scorer=None):
    """The bonus as a TRL reward function. Each row carries ``group_id`` and its group's shuffled-frame
    completions (``shuffled_completions``, the same list on every row of the group, added by the step);
    accuracy is the rewards module's, the rule is ``shuffled_frame_bonus`` per group, at any batch size."""

    def temporal_contrast(
        prompts=None, completions=(), shuffled_completions=None, group_id=None, log_metric=None, **kwargs
    ):
        n = len(completions)
        if shuffled_completions is None or group_id is None:
            return [0.0] * n
        cols = {k: v for k, v in kwargs.items() if isinstance(v, list | tuple) and len(v) == n}
        ordered = [a >= 0.5 for a in accuracy_reward(None, completions, scorer=scorer, **cols)]
        groups = defaultdict(list)
        for i, g in enumerate(group_id):
            groups[g].append(i)
        out, shuffled_all = [0.0] * n, []
        for rows in groups.values():
            shuf = shuffled_completions[rows[0]]
            row_cols = {k: [v[rows[0]]] * len(shuf) for k, v in cols.items()}
            shuffled = [a >= 0.5 for a in accuracy_reward(None, shuf, scorer=scorer, **row_cols)]
            shuffled_all += shuffled
            for i, b in zip(rows, shuffled_frame_bonus([ordered[i] for i in rows], shuffled, mu, bonus)):
                out[i] = b
        if callable(log_metric):
            log_metric("tgrpo/ordered_accuracy", float(np.mean(ordered)))
            if shuffled_all:
                log_metric("tgrpo/shuffled_accuracy", float(np.mean(shuffled_all)))
            won = {g for g, b in zip(group_id, out) if b > 0}
            log_metric("tgrpo/bonus_group_share", len(won) / len(groups))
            log_metric("tgrpo/bonus_mean", float(np.mean(out)) if out else 0.0)
        return out

    return temporal_contrast


def reward_setup(cfg, scorer=None) -> tuple[list, list[float]]:
    """``(reward_funcs, reward_weights)`` for GRPOTrainer from a TGRPOConfig. Plain: the weighted total
    (which logs each component) + the bonus. Process-aware: perception, reasoning, the PA format and the
    bonus, plus the total with weight 0 (logged only, to compare with plain runs)."""
    bonus = contrast_reward(cfg.mu, cfg.bonus, scorer)
    if not cfg.process_aware:
        return [get_reward("total", weights=cfg.weights, scorer=scorer), bonus], [1.0, 1.0]
    funcs = [
        get_reward("perception", scorer=scorer),
        get_reward("reasoning", scorer=scorer),
        get_reward("format", process_aware=True, scorer=scorer),
        bonus,
        get_reward("total", weights=cfg.weights, process_aware=True, scorer=scorer),
    ]
    w_fmt = normalize_weights(cfg.weights)["format"]
    return funcs, [1.0, 1.0, w_fmt, 1.0, 0.0]


def group_advantages(rewards: torch.Tensor, num_generations: int, scale: str = "group") -> torch.Tensor:
    """GRPO's advantage of one reward per completion: minus its group's mean, over the group's std
    (``group``), the batch's (``batch``) or not scaled (``none``), as TRL does for the total."""
    x = rewards.view(-1, num_generations)
    adv = x - x.mean(1, keepdim=True)
    if scale == "group":
        adv = adv / (x.std(1, keepdim=True) + 1e-4)
    elif scale == "batch":
        adv = adv / (rewards.std() + 1e-4)
    return adv.reshape(-1)


def observation_mask(tokenizer, completion_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
    """(B, T) True on the tokens of each completion's ``<observation>...</observation>`` (tags included).
    A token belongs to the block when the characters it decodes to overlap it."""
    out = torch.zeros(completion_ids.shape, dtype=torch.bool, device=completion_ids.device)
    for b, (ids, m) in enumerate(zip(completion_ids.tolist(), completion_mask.tolist())):
        ids = [t for t, keep in zip(ids, m) if keep]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        block = block_matches(text).get("observation")
        if not block:
            continue
        start, end, prev = block[0], block[1], 0
        for k in range(len(ids)):  # char offset after token k (max: partial UTF-8 may decode shorter)
            cur = max(prev, len(tokenizer.decode(ids[: k + 1], skip_special_tokens=True)))
            out[b, k] = prev < end and cur > start
            prev = cur
    return out


# ---------------------------------------------------------------- the trainer


class VideoGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with video in every forward and a shuffled-frame group per prompt (T-GRPO).

    Dataset rows: ``prompt`` (chat messages with a ``{"type": "video"}`` part), ``video`` (a path, read
    with ``frames``, ``read_video``'s settings) and the reward columns (label, dataset, phases, fps...)."""

    def __init__(
        self,
        *args,
        frames: dict | None = None,
        shuffled_generations: int | None = None,
        process_aware: bool = False,
        **kwargs,
    ):
        config, processor = kwargs["args"], kwargs["processing_class"]
        if config.use_vllm:
            raise ValueError(
                "T-GRPO with use_vllm=True is not supported: TRL 1.16's vLLM generation sends images only, so "
                "rollouts would be generated without the video. Set tgrpo.use_vllm: false (transformers generate)."
            )
        # Every vision token, not just TRL's image token: a sampled one breaks the next forward.
        config.generation_kwargs = {
            **(config.generation_kwargs or {}),
            "suppress_tokens": vision_token_ids(processor),
        }
        super().__init__(*args, **kwargs)
        self._keep_saved_modules_dtype()
        g = self.num_generations
        local = self.args.per_device_train_batch_size * self.args.steps_per_generation
        if local % g:
            raise ValueError(
                f"per_device_train_batch_size x steps_per_generation = {local} must be a multiple of num_generations "
                f"= {g}: each device must hold whole prompt groups so that the bonus compares whole groups"
            )
        self.shuffled_generations = g // 2 if shuffled_generations is None else int(shuffled_generations)
        self.frames, self.process_aware = frames or {"num_frames": 16, "size": 224}, process_aware
        tok = processor.tokenizer
        self._video_id = tok.convert_tokens_to_ids("<|video_pad|>")
        self._image_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self._video = None  # video tensors of the sequences being scored (set only inside _with_video)
        self._encoded = None  # processor output of the current generation batch (its ordered prompts)
        self._rollouts = None  # the same + the shuffled-frame prompts, left-padded, until generated
        self._shuffled = None  # the shuffled-frame completions, one list per prompt group
        self._last_rewards = None  # rewards per function of the last batch (gathered)
        self._clock = defaultdict(float)
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self.args.gradient_accumulation_steps % generate_every == 0:  # TRL skips old log-probs then
            logger.warning("every update is on-policy (old log-probs = current): the clip epsilon never acts")

    def _keep_saved_modules_dtype(self):
        """QLoRA: TRL casts every trainable parameter to bf16, including fully trained copies
        (``modules_to_save``, e.g. the tiny profile's embeddings); the model they sit in computes in the
        dtype ``prepare_model_for_kbit_training`` gave it (fp32), so the copies go back to that dtype."""
        from peft.utils.other import ModulesToSaveWrapper

        if getattr(self.model, "is_loaded_in_4bit", False) or getattr(self.model, "is_loaded_in_8bit", False):
            for module in self.model.modules():
                if isinstance(module, ModulesToSaveWrapper):
                    module.modules_to_save.to(next(module.original_module.parameters()).dtype)

    # -- the T-GRPO step ------------------------------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        """One generation batch: TRL's step with the video (generate, rewards incl. bonus, group advantages,
        old/ref log-probs); each prompt's shuffled-frame group (no gradient, accuracy only) is sampled in the
        same generate call as the ordered completions and reaches the bonus with the rewards."""
        videos = self._read_videos(inputs)
        g = self.num_generations if self.model.training else self.num_generations_eval
        inputs = [{**x, "group_id": i // g} for i, x in enumerate(inputs)]
        prompts, clips = self._shuffled_prompts(inputs, videos, g)
        self._rollouts = self._encode([x["prompt"] for x in inputs] + prompts, videos + clips)
        self._encoded, self._shuffled = first_rows(self._rollouts, len(inputs)), None
        video = {k: self._encoded[k].to(self.accelerator.device) for k in VIDEO_KEYS}
        with self._with_video(video):  # old-policy and reference log-probs see the clip
            output = super()._generate_and_score_completions(inputs)
        output.update(per_row(video))  # one tensor per row: survives TRL's shuffle/split
        if self.process_aware:
            output["advantages"] = self._span_advantages(output)  # (B, T): per-token advantages
        return output

    def _compute_loss(self, model, inputs):
        video = {k: torch.cat(v) if isinstance(v, list) else v for k, v in inputs.items() if k in VIDEO_KEYS}
        with self._timer("loss_forward"), self._with_video(video):
            return super()._compute_loss(model, inputs)

    # -- video plumbing -------------------------------------------------------------------------------
    def _read_videos(self, inputs) -> list[Video]:
        if "video" not in inputs[0]:
            raise KeyError("T-GRPO dataset rows need a 'video' column (the clip's path)")
        cache = {}
        for x in inputs:  # a clip appears num_generations times in a row: decode it once
            if x["video"] not in cache:
                cache[x["video"]] = read_video(x["video"], **self.frames)
        return [cache[x["video"]] for x in inputs]

    def _encode(self, prompts, videos):
        return encode_chats(self.processing_class, prompts, videos, padding_side="left")  # to generate

    @staticmethod
    def _generation_inputs(enc):
        """Unpadded prompt ids + multimodal fields in the form TRL's generation expects."""
        keep = enc["attention_mask"].bool()
        unpad = lambda t: [row[m].tolist() for row, m in zip(t, keep)]  # noqa: E731
        return unpad(enc["input_ids"]), {
            **{k: enc[k] for k in VIDEO_KEYS},
            "mm_token_type_ids": unpad(enc["mm_token_type_ids"]),
        }

    def _tokenize_prompts(self, prompts):
        if self._encoded is None:
            raise RuntimeError("VideoGRPOTrainer encodes prompts in _generate_and_score_completions only")
        ids, fields = self._generation_inputs(self._encoded)
        if len(ids) != len(prompts):
            raise RuntimeError("VideoGRPOTrainer: prompts and encoded videos are out of step")
        return ids, None, fields

    def _shuffled_prompts(self, inputs, videos, g: int) -> tuple[list, list[Video]]:
        """(prompts, clips): per prompt group, ``shuffled_generations`` copies of its prompt with its frames in
        a random order. Their completions are sampled with the ordered ones."""
        firsts = list(range(0, len(inputs), g))
        for s in firsts:  # TRL's sampler repeats each prompt g times in a row; the bonus relies on it
            if any(x["video"] != inputs[s]["video"] for x in inputs[s : s + g]):
                raise RuntimeError(f"rows {s}..{s + g - 1} are not one prompt group")
        k = self.shuffled_generations
        rng = np.random.default_rng([self.args.seed, self.state.global_step, self.accelerator.process_index])
        clips = [shuffle_frames(videos[s], rng) for s in firsts] if k else []
        return [inputs[s]["prompt"] for s in firsts for _ in range(k)], [c for c in clips for _ in range(k)]

    def _generate_single_turn(self, prompt_ids, images, fields, num_generations, has_tool_images=False):
        """The round's one generate call, on ``_rollouts``: the ordered prompts (TRL's ``prompt_ids``) and the
        shuffled-frame ones after them (one call takes 0.81-0.87 of two's time on 2 cores), top-p by
        ``vlm.NucleusWarper``, which does not sort the vocabulary at every token (BENCHMARKS.md). The
        shuffled completions are kept aside, ``shuffled_generations`` per prompt group."""
        batch, self._rollouts = self._rollouts, None
        if batch is None:
            raise RuntimeError(
                "VideoGRPOTrainer generates once per batch, in _generate_and_score_completions"
            )
        ids, n, k = self._sample(batch), len(prompt_ids), self.shuffled_generations
        if k:
            texts = self.processing_class.batch_decode(ids[n:], skip_special_tokens=True)
            done = [[{"role": "assistant", "content": t}] for t in texts]
            self._shuffled = [done[j : j + k] for j in range(0, len(done), k)]
        return ids[:n], None

    def _sample(self, batch) -> list[list[int]]:
        """TRL's transformers generation on a left-padded batch (the model unwrapped for DeepSpeed / FSDP,
        completions cut after the first end-of-sequence token), sampling with ``NucleusWarper``."""
        inputs = Trainer._prepare_inputs(self, dict(batch))  # transformers' (device; DeepSpeed's dtype)
        sampling = nucleus_sampling(self.temperature, self.top_p, self.top_k or 0)
        processors = sampling.pop("logits_processor")
        config = copy.deepcopy(self.generation_config)
        config.update(**sampling)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                generation_kwargs=self.generation_kwargs,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as model,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            out = model.generate(**inputs, generation_config=config, logits_processor=processors)
        return until_eos(out[:, inputs["input_ids"].shape[1] :].tolist(), self.eos_token_ids)

    @contextlib.contextmanager
    def _with_video(self, video):
        previous, self._video = self._video, video
        try:
            yield
        finally:
            self._video = previous

    def _get_per_token_logps_and_entropies(
        self,
        model,
        input_ids,
        attention_mask,
        logits_to_keep,
        batch_size=None,
        compute_entropy=False,
        compute_aux_loss=False,
        **image_inputs,
    ):
        """TRL's log-prob forward, with the clip of each sequence (one clip per sequence)."""
        v = self._video
        if v is None:  # not inside a video batch: TRL's own (text / image) path
            return super()._get_per_token_logps_and_entropies(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **image_inputs,
            )
        grid = v["video_grid_thw"]
        if len(grid) != input_ids.size(0):
            raise ValueError(
                f"{len(grid)} clips for {input_ids.size(0)} sequences: T-GRPO needs one clip per sequence"
            )
        edges = [0, *grid.prod(-1).cumsum(0).tolist()]  # patch rows of each clip in pixel_values_videos
        batch_size, logps, ents, aux = batch_size or input_ids.size(0), [], [], []
        for s in range(0, input_ids.size(0), batch_size):
            e = min(s + batch_size, input_ids.size(0))
            ids, mask = input_ids[s:e], attention_mask[s:e]
            labels = ids.masked_fill(mask == 0, -100)
            labels[:, :-logits_to_keep] = -100  # only the completion tokens are scored
            types = torch.zeros_like(ids)  # the processor's convention: 1 image, 2 video (enables 3-D M-RoPE)
            types[ids == self._image_id], types[ids == self._video_id] = 1, 2
            dev = ids.device
            extra = {"output_router_logits": True} if compute_aux_loss else {}
            fused = dev.type != "cpu"  # TRL's fused LM head; on a CPU, full logits are faster (token_logps)
            with self.accelerator.autocast():
                out = model(
                    input_ids=ids,
                    attention_mask=mask,
                    **({"labels": labels, "fused_lm_head": True} if fused else {"use_cache": False}),
                    mm_token_type_ids=types,
                    pixel_values_videos=v["pixel_values_videos"][edges[s] : edges[e]].to(dev),
                    video_grid_thw=grid[s:e].to(dev),
                    second_per_grid_ts=v["second_per_grid_ts"][s:e].to(dev),
                    **extra,
                )
            if fused:
                lp, ent = out.log_probs, out.entropy
            else:
                lp, ent = token_logps(out.logits, labels, self.temperature, entropy=True)
            logps.append(lp[:, -logits_to_keep:])
            ents += [ent[:, -logits_to_keep:]] if compute_entropy else []
            aux += [out.aux_loss] if compute_aux_loss else []
        return (
            torch.cat(logps),
            torch.cat(ents) if compute_entropy else None,
            torch.stack(aux).mean() if aux else None,
        )

    # -- process-aware advantages ---------------------------------------------------------------------
    def _span_advantages(self, output) -> torch.Tensor:
        """PA-GRPO: each span's reward is normalised within its group on its own; observation tokens get
        the perception advantage, all other tokens (think, answer, tags, end of turn) the reasoning one."""
        r, names = self._last_rewards, self.reward_func_names  # (all processes' rows, functions)
        w = self.reward_weights.to(r.device)

        def side(keys):
            cols = [i for i, n in enumerate(names) if n in keys]
            return (r[:, cols] * w[cols]).nansum(1)

        n = output["completion_ids"].size(0)
        local = slice(self.accelerator.process_index * n, (self.accelerator.process_index + 1) * n)
        g = self.num_generations if self.model.training else self.num_generations_eval
        perception = group_advantages(side(PERCEPTION_SIDE), g, self.scale_rewards)[local]
        reasoning = group_advantages(side(REASONING_SIDE), g, self.scale_rewards)[local]
        obs = observation_mask(self._tokenizer, output["completion_ids"], output["completion_mask"])
        self._metrics["train" if self.model.training else "eval"]["tgrpo/observation_token_share"].append(
            (obs.float().sum() / output["completion_mask"].sum().clamp(min=1)).item()
        )
        return torch.where(obs, perception[:, None].to(obs.device), reasoning[:, None].to(obs.device))

    # -- timing (logged as time/<part>: generation (both groups), rewards, loss_forward, backward) --
    @contextlib.contextmanager
    def _timer(self, name):
        t = time.perf_counter()
        try:
            yield
        finally:
            self._clock[name] += time.perf_counter() - t

    def _generate(self, prompts):
        with self._timer("generation"):
            return super()._generate(prompts)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards, each row given its group's shuffled-frame completions (``contrast_reward``)."""
        groups = self._shuffled
        inputs = [{**x, "shuffled_completions": groups[x["group_id"]] if groups else []} for x in inputs]
        with self._timer("rewards"):
            self._last_rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        return self._last_rewards

    def _prepare_inputs(self, generation_batch):
        with self._timer("prepare"):
            return super()._prepare_inputs(generation_batch)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self._clock = defaultdict(float)
        t = time.perf_counter()
        loss = super().training_step(model, inputs, num_items_in_batch)
        c = self._clock
        c["backward"] = time.perf_counter() - t - c.pop("prepare", 0.0) - c.get("loss_forward", 0.0)
        for name, seconds in c.items():
            self._metrics["train"][f"time/{name}"].append(seconds)
        return loss


def first_rows(enc, n: int) -> dict:
    """The first ``n`` sequences of a processor output (their clips' patches are the first ones)."""
    patches = int(enc["video_grid_thw"][:n].prod(-1).sum())
    return {key: v[:patches] if key == "pixel_values_videos" else v[:n] for key, v in enc.items()}


def per_row(video: dict) -> dict:
    """Batch video tensors -> lists with one tensor per sequence (one clip each)."""
    rows = video["video_grid_thw"].prod(-1).tolist()
    return {
        "pixel_values_videos": list(torch.split(video["pixel_values_videos"], rows)),
        "video_grid_thw": list(video["video_grid_thw"].split(1)),
        "second_per_grid_ts": list(video["second_per_grid_ts"].split(1)),
    }
