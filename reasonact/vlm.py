"""The model/processor layer: where a recipe's model lives, loading with LoRA / QLoRA, one generate loop.

One code path for both profiles: ``load_model(recipe)`` returns ``(model, processor)`` for a hub id or
local folder such as ``Qwen/Qwen2.5-VL-3B-Instruct``, or, on the tiny profile, for the perception base
(``find_base``: the committed copy in ``data/base/tiny-base`` when its key matches) or the random-init
tiny model. Loading never builds or trains a model: ``reasonact.data.tiny`` builds the tiny model and
``reasonact.train.base`` the base (``ensure_model``). Weights load from safetensors only and
``trust_remote_code`` stays off unless a recipe asks for it. ``generate`` is the one generation loop: the
stages' quick checks (``complete_clips``), the evaluation, the model teacher and the base's answers use it
(the decoding: ``eval/evaluate.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path

import yaml

from reasonact import paths, prompts
from reasonact.config import REPO_ROOT, LoraConfig, Recipe, TinyModelConfig
from reasonact.paths import derived_seed
from reasonact.prompts import encode_chats
from reasonact.video import Video

CACHE_DIR = REPO_ROOT / "runs" / "_cache"
COMMITTED_BASE_DIR = REPO_ROOT / "data" / "base" / "tiny-base"  # small, reproducible copy CI reuses

VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# Text the tiny tokenizer is trained on besides the class names and the library: the reasoning
# format, frame references and numbers, so that chains of thought tokenize compactly.
_FORMAT_TEXT = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<observation>",
    "</observation>",
    "frames 1-4: the person stands upright. frames 5-8: the knees bend. frames 9-16: the body rises.",
    "In frames 3-6 the arms swing back, then in frames 7-10 the legs extend and the feet leave the ground.",
    "First, next, then, finally, after that, before, while, during. The answer is",
    "Which action is shown in the video? Think step by step about the phases and sub-actions.",
    "What happens in the video? Describe the body in each frame range, then answer.",
    " ".join(str(i) for i in range(0, 257)),
    "left right up down forward backward above below high low fast slow arm leg knee elbow hip head torso",
]


def tiny_corpus(library_dir: Path | None = None) -> list[str]:
    """The project's own text: class names, library phrasings (when present) and CoT templates."""
    lines = list(_FORMAT_TEXT)
    for f in sorted((REPO_ROOT / "data" / "classes").glob("*.txt")):
        lines += [ln.strip().replace("_", " ") for ln in f.read_text().splitlines() if ln.strip()]
    for f in sorted((library_dir or REPO_ROOT / "data" / "library").glob("*.yaml")):
        doc = yaml.safe_load(f.read_text()) or {}
        for label, entry in (doc.get("actions") or {}).items():
            lines.append(str(label).replace("_", " "))
            lines.append(str(entry.get("description", "")))
            for ph in entry.get("phases", []):
                lines.append(str(ph.get("name", "")).replace("_", " "))
                for name, phrasings in (ph.get("sub_actions") or {}).items():
                    lines.append(name.replace("_", " "))
                    lines += [str(p) for p in phrasings]
    return lines


def tiny_model_key(cfg: TinyModelConfig, video_size: int, corpus: list[str]) -> str:
    h = hashlib.sha256(json.dumps([vars(cfg), video_size, corpus], sort_keys=True).encode())
    return h.hexdigest()[:12]


def tiny_model_dir(cfg: TinyModelConfig, video_size: int, corpus: list[str] | None = None) -> Path:
    """The cache folder of the random-init tiny model (built by ``reasonact.data.tiny.build_tiny_model``)."""
    corpus = tiny_corpus() if corpus is None else corpus
    return CACHE_DIR / f"tiny-qwen2.5-vl-{tiny_model_key(cfg, video_size, corpus)}"


# settings added after bases were committed, left out of the keys at these values so those bases stay valid
_LATER_DEFAULTS = {"format_share": 0, "format_question": "range", "select_by_format": False, "tag_weight": 1}


def base_settings(recipe: Recipe) -> dict:
    """The base section as keys see it (``keyed_settings``' ``base.*``) without the settings added later while
    they are at their defaults (``_LATER_DEFAULTS``), so the bases built before they existed keep their keys."""
    base = {k.removeprefix("base."): v for k, v in keyed_settings(recipe).items() if k.startswith("base.")}
    return {k: v for k, v in base.items() if k not in _LATER_DEFAULTS or v != _LATER_DEFAULTS[k]}


def keyed_settings(recipe: Recipe) -> dict:
    """Every recipe setting the base's weights depend on, by dotted name (what ``base_key`` hashes and what a
    base card's re-make command sets): the base section but ``workers``, the tiny model, the frames."""
    out = {f"base.{k}": v for k, v in dataclasses.asdict(recipe.base).items() if k != "workers"}
    out |= {f"model.tiny.{k}": v for k, v in dataclasses.asdict(recipe.model.tiny).items()}
    video = recipe.video
    out |= {"video.size": video.size, "video.num_frames": video.num_frames}
    return out | {"data.synthact_size": recipe.data.synthact_size}


def base_key(recipe: Recipe) -> str:
    """What the base's weights depend on: its recipe, the tiny model's sizes and seed, the frames the
    model sees and the SynthAct generator's version. Not the tokenizer corpus: the base ships its own
    tokenizer (later stages load the processor from the base's folder), so library edits that change
    the random-init model's tokenizer leave a committed base valid."""

    keyed = keyed_settings(recipe)
    tiny = {k.removeprefix("model.tiny."): v for k, v in keyed.items() if k.startswith("model.tiny.")}
    parts = [base_settings(recipe), tiny, keyed["video.size"], keyed["video.num_frames"]]
    parts += [keyed["data.synthact_size"], paths.GENERATOR_VERSION]
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def base_dir(recipe: Recipe) -> Path:
    return CACHE_DIR / f"tiny-base-{base_key(recipe)}"


def find_base(recipe: Recipe) -> Path | None:
    """A finished base for this recipe: the committed copy (data/base/tiny-base) when its key matches,
    else the cache folder. None when neither exists."""
    key = base_key(recipe)
    for d in (COMMITTED_BASE_DIR, base_dir(recipe)):
        card = d / "base_card.json"
        if (
            (d / "model.safetensors").is_file()
            and card.is_file()
            and json.loads(card.read_text()).get("key") == key
        ):
            return d
    return None


def model_path(recipe: Recipe) -> str:
    """Where the model comes from: the recipe's hub id or folder; on the tiny profile the perception-
    pretrained base (``model.use_base``: the committed copy when its key matches, else the cache) or the
    random-init tiny model (``use_base: false``). Loading never builds or trains a model: a missing tiny
    model is an error that says which command builds it."""
    m = recipe.model
    if m.name_or_path:
        return m.name_or_path
    if m.use_base:
        found = find_base(recipe)
        if found is None:
            raise FileNotFoundError(
                f"no tiny perception base for this recipe (key {base_key(recipe)}) in {COMMITTED_BASE_DIR} or "
                f"{base_dir(recipe)}: build it with `reasonact base build --profile {recipe.profile}` and this "
                "recipe's --config/--set (about 13 minutes on 2 cores; `reasonact run` does it first)"
            )
        return str(found)
    path = tiny_model_dir(m.tiny, recipe.video.size)
    if not (path / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"no random-init tiny model at {path}: build it with `reasonact model build-tiny --profile "
            f"{recipe.profile}` and this recipe's --config/--set"
        )
    return str(path)


def lora_target_regex(targets: list[str]) -> str:
    """A peft ``target_modules`` regex that matches the language model's projections only."""
    return rf".*language_model.*\.({'|'.join(map(re.escape, targets))})$"


def apply_lora(model, lora: LoraConfig):
    """Wrap ``model`` with LoRA on the language model; the vision tower and the rest stay frozen."""
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    config = PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora_target_regex(lora.target_modules),
        task_type="CAUSAL_LM",
        # trained in full and saved with the adapter (tiny profile: the token embeddings, see LoraConfig);
        # tied to lm_head when the model ties them, so input and output vocabularies move together
        modules_to_save=list(lora.modules_to_save) or None,
        ensure_weight_tying=bool(lora.modules_to_save) and _ties_embeddings(model),
    )
    # PEFT stores LoRA weights in fp32 on a bf16 base by default. FSDP1 cannot flatten a block whose
    # weights mix dtypes, and ZeRO-3 fails on mixed dtypes at the first step (TRL issue 6089): keep the
    # base dtype there (both keep fp32 master copies of the trainable weights themselves). 4-bit: as is.
    keep_dtype = sharded_launch() and getattr(model, "hf_quantizer", None) is None
    return get_peft_model(model, config, autocast_adapter_dtype=not keep_dtype)


def _ties_embeddings(model) -> bool:
    """Whether the input embeddings and lm_head share one weight (after merging earlier adapters they
    may not; asking peft to keep a tie that is not there only makes it warn)."""
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    return inp is not None and out is not None and inp.weight is out.weight


def sharded_launch() -> bool:
    """True in a process started by ``accelerate launch`` with FSDP or DeepSpeed ZeRO-3 (the launcher's
    environment variables), where every weight is sharded across processes."""
    env = os.environ
    fsdp = env.get("ACCELERATE_USE_FSDP", "").lower() == "true"
    zero3 = (
        env.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true"
        and env.get("ACCELERATE_DEEPSPEED_ZERO_STAGE") == "3"
    )
    return fsdp or zero3


def load_model(recipe: Recipe, lora: bool = True, path: str | None = None, adapters=()):
    """Load ``(model, processor)`` from the recipe: dtype, optional 4-bit nf4 (QLoRA), optional LoRA.

    ``adapters``: PEFT adapter folders of earlier stages, merged into the weights in order before the
    new LoRA is added (FRE -> V-SFT -> T-GRPO: each stage trains a fresh adapter on top of the
    merged result of the ones before; with 4-bit weights PEFT dequantises, merges and re-quantises).
    """
    import torch
    from transformers import AutoModelForImageTextToText, AutoProcessor, BitsAndBytesConfig

    m = recipe.model
    src = path or model_path(recipe)
    dtype = getattr(torch, m.dtype)
    kwargs = dict(dtype=dtype, use_safetensors=True, trust_remote_code=m.trust_remote_code)
    if m.attn_implementation:
        kwargs["attn_implementation"] = m.attn_implementation
    if m.load_in_4bit:
        # nf4 + double quantisation + bf16/fp32 compute, as in the QLoRA paper.
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
            llm_int8_skip_modules=["model.visual", "lm_head"],  # matched from the name start
        )
        kwargs["device_map"] = m.device_map or ("cpu" if not torch.cuda.is_available() else "auto")
    elif m.device_map:
        kwargs["device_map"] = m.device_map
    model = AutoModelForImageTextToText.from_pretrained(src, **kwargs)
    processor = AutoProcessor.from_pretrained(src, trust_remote_code=m.trust_remote_code)
    if hasattr(processor.video_processor, "cap_pixels_per_frame"):
        # qwen-vl-utils' cap on a video's total pixels (transformers warns until it is its default); the
        # frames arrive already resized to the recipe's per-frame budget, far below that cap
        processor.video_processor.cap_pixels_per_frame = True
    if adapters:
        from peft import PeftModel

        for adapter in adapters:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if m.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=m.gradient_checkpointing)
    elif m.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    # The vision tower is frozen in every stage (the paper fine-tunes the language model).
    for p in model.model.visual.parameters():
        p.requires_grad_(False)
    if lora:
        model = apply_lora(model, m.lora)
    return model, processor


def vision_token_ids(processor) -> list[int]:
    """Ids of the vision tokens: suppressed in generation (a sampled <|video_pad|> breaks the next forward)."""
    return [processor.tokenizer.convert_tokens_to_ids(t) for t in VISION_TOKENS]


def count_parameters(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}


# ---- generation: the one loop every stage's checks and the evaluation use ----------------------


def token_logps(logits, labels, temperature: float = 1.0, entropy: bool = False):
    """Log-probability of each next token, (B, T - 1), from full logits at ``temperature``, 0 where the label
    is -100; with ``entropy``, also the entropy at each position (else None). The one teacher-forced scorer:
    the CPU training losses (what TRL's fused LM head returns as ``log_probs`` / ``entropy``, BENCHMARKS.md,
    "Where a tiny training step goes") and the base's zero-shot class scoring."""
    logp = (logits[:, :-1].float() / temperature).log_softmax(-1)
    target = labels[:, 1:]
    keep = target != -100
    lp = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1) * keep
    return lp, (-(logp.exp() * logp).sum(-1) * keep if entropy else None)


class NucleusWarper:
    """Temperature, top-k, then top-p, the order and the rule of transformers' warpers (a token stays when
    the probability of the tokens ranked above it is below ``top_p``; the most likely always stays), but
    without sorting the vocabulary at every token: the nucleus is looked for among the ``candidates`` most
    likely tokens (``torch.topk``) and the full ranking is taken only when their mass falls short of
    ``top_p``. transformers' top-p sorts all scores per token, 22-38% of a T-GRPO rollout round on 2 cores
    (BENCHMARKS.md, "Sampling without sorting the vocabulary"). The kept tokens are transformers' up to float
    rounding at the nucleus' edge (sums in another order) and ties at the k-th score (``topk`` keeps k).
    ``nucleus_sampling`` gives the ``generate`` settings that use it."""

    def __init__(self, temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, candidates: int = 64):
        if not (temperature > 0 and 0 < top_p <= 1 and top_k >= 0 and candidates > 0):
            raise ValueError(f"NucleusWarper: temperature {temperature}, top_p {top_p}, top_k {top_k}")
        self.temperature, self.top_p, self.top_k, self.candidates = temperature, top_p, top_k, candidates

    def __call__(self, input_ids, scores):
        import torch

        scores = scores / self.temperature if self.temperature != 1.0 else scores
        allowed = self.top_k if 0 < self.top_k < scores.shape[-1] else scores.shape[-1]  # top-k's tokens
        if self.top_p >= 1.0 and allowed == scores.shape[-1]:
            return scores
        k = allowed if allowed < scores.shape[-1] else min(self.candidates, allowed)  # top-k renormalizes
        while True:
            top, idx = scores.topk(k, dim=-1)  # descending
            probs = (top - (top if k == allowed else scores).logsumexp(-1, keepdim=True)).exp()
            above = probs.cumsum(-1) - probs  # mass of the tokens ranked above each candidate
            if k == allowed or bool((above[:, -1] + probs[:, -1] >= self.top_p).all()):
                break
            k = allowed  # some row's nucleus reaches past the candidates: rank every allowed token
        keep = above < self.top_p if self.top_p < 1.0 else torch.ones_like(above, dtype=torch.bool)
        keep[:, 0] = True
        return torch.full_like(scores, float("-inf")).scatter(-1, idx, top.masked_fill(~keep, float("-inf")))


def nucleus_sampling(temperature: float, top_p: float, top_k: int = 0) -> dict:
    """``generate`` settings that sample with ``NucleusWarper`` and keep transformers' own warpers off (1.0 /
    1.0 / 0 are explicit, so a checkpoint's generation config cannot bring them back)."""
    from transformers import LogitsProcessorList

    nucleus = NucleusWarper(temperature, top_p, top_k)
    return dict(
        do_sample=True, temperature=1.0, top_p=1.0, top_k=0, logits_processor=LogitsProcessorList([nucleus])
    )


def decoding_kwargs(cfg, processor) -> dict:
    """``generate`` keyword arguments of the paper's decoding (``eval/evaluate.py`` describes it)."""

    kw = dict(
        max_new_tokens=int(cfg.max_new_tokens),
        suppress_tokens=vision_token_ids(processor),
        repetition_penalty=1.0,
    )
    if cfg.temperature > 0:  # nucleus sampling alone (the paper's top-p; top-k off)
        kw.update(nucleus_sampling(float(cfg.temperature), float(cfg.top_p)))
    else:  # greedy: sampling flags would only make transformers warn that they are ignored
        kw.update(do_sample=False)
    return kw


def prompt_text(fmt: str = "plain") -> tuple[str, str]:
    """(question, format hint) the model is asked: the same as in V-SFT and T-GRPO."""

    return prompts.QUESTION, prompts.format_hint(fmt)


def until_eos(rows: list[list[int]], eos_ids) -> list[list[int]]:
    """Each generated row up to and including its first end-of-sequence token (the rest is padding)."""
    eos = set(eos_ids)
    stops = [next((i + 1 for i, t in enumerate(r) if t in eos), len(r)) for r in rows]
    return [r[:stop] for r, stop in zip(rows, stops)]


def generate(model, processor, chats: list, videos=(), **gen_kwargs):
    """The one generate loop: the chats left-padded (``prompts.encode_chats``; ``videos`` as there), vision
    tokens never emitted, the new tokens decoded. Returns (texts, new-token counts up to and including the
    end-of-sequence token, seconds for the whole call)."""
    import torch

    gen_kwargs.setdefault("suppress_tokens", vision_token_ids(processor))
    t0 = time.perf_counter()
    inputs = encode_chats(processor, chats, videos, padding_side="left").to(model.device)
    with torch.no_grad():
        out = model.generate(**inputs, **gen_kwargs)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    new = out[:, inputs["input_ids"].shape[1] :]
    eos = model.generation_config.eos_token_id
    counts = [len(ids) for ids in until_eos(new.tolist(), eos if isinstance(eos, list) else [eos])]
    return [t.strip() for t in processor.batch_decode(new, skip_special_tokens=True)], counts, seconds


def generate_batch(model, processor, videos: list[Video], gen_kwargs: dict, fmt: str = "plain"):
    """Completions for a batch of videos asked the stages' question: (texts, new-token counts, seconds)."""
    question, hint = prompt_text(fmt)
    chats = [prompts.video_messages(question, hint=hint)] * len(videos)
    return generate(model, processor, chats, videos, **gen_kwargs)


def complete_clips(
    model, processor, videos: list[Video], decoding, fmt: str = "plain", seed: int = 0, batch_size: int = 8
) -> list[str]:
    """One completion per clip with ``decoding`` (an EvalConfig-like object; temperature 0 = greedy): the
    quick checks' loop (the stages' before/after and learning curves; ``evaluate`` is the full one).
    Eval mode, then the model's mode back; sampling on a forked RNG, so a training run's random stream
    is untouched; batch ``i``'s samples depend only on ``(seed, i)`` and the batch."""
    import torch

    kw = decoding_kwargs(decoding, processor)
    was_training, texts = model.training, []
    model.eval()
    try:
        with torch.random.fork_rng():
            for i in range(0, len(videos), batch_size):
                torch.manual_seed(derived_seed(seed, i))
                texts += generate_batch(model, processor, videos[i : i + batch_size], kw, fmt)[0]
    finally:
        model.train(was_training)
    return texts
