"""Models: the tiny Qwen2.5-VL built locally, real model loading, LoRA / QLoRA.

One code path for both profiles: ``load_model(recipe)`` returns ``(model, processor)`` for the tiny
model (built once from a config and cached under ``runs/_cache``) or for a hub id / local folder such
as ``Qwen/Qwen2.5-VL-3B-Instruct``. Weights load from safetensors only and ``trust_remote_code``
stays off unless a recipe asks for it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import yaml

from reasonact.config import REPO_ROOT, LoraConfig, Recipe, TinyModelConfig

CACHE_DIR = REPO_ROOT / "runs" / "_cache"

# Qwen2-VL's special tokens; the tiny tokenizer must spell them exactly like the real one so the
# same processor, chat template and prompts work for both profiles.
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
VISION_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>"]

# The Qwen2-VL chat template (same structure as the released one): a default system turn, content
# lists with {"type": "video"} / {"type": "image"} / {"type": "text"} parts.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

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


def build_tokenizer(corpus: list[str], vocab_size: int):
    """Train a byte-level BPE locally and wrap it as a Qwen2 tokenizer with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - len(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(corpus, trainer=trainer)
    state = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["merges"]]
    tok = Qwen2Tokenizer(
        vocab=state["vocab"],
        merges=merges,
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tok.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS[1:]})
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _tiny_config(cfg: TinyModelConfig, tok):
    from transformers import Qwen2_5_VLConfig

    head_dim = cfg.text_hidden // cfg.text_heads
    if sum(cfg.mrope_section) * 2 != head_dim:
        raise ValueError(f"mrope_section {cfg.mrope_section} must sum to head_dim/2 = {head_dim // 2}")
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tok),
            hidden_size=cfg.text_hidden,
            num_hidden_layers=cfg.text_layers,
            num_attention_heads=cfg.text_heads,
            num_key_value_heads=cfg.text_kv_heads,
            intermediate_size=cfg.text_intermediate,
            max_position_embeddings=cfg.max_position_embeddings,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": cfg.mrope_section,
            },
            tie_word_embeddings=True,
            bos_token_id=None,
            eos_token_id=ids["<|im_end|>"],
            pad_token_id=ids["<|endoftext|>"],
        ),
        vision_config=dict(
            depth=cfg.vision_depth,
            hidden_size=cfg.vision_hidden,
            num_heads=cfg.vision_heads,
            intermediate_size=cfg.vision_intermediate,
            out_hidden_size=cfg.text_hidden,
            patch_size=14,
            temporal_patch_size=2,
            spatial_merge_size=2,
            window_size=112,
            fullatt_block_indexes=list(range(cfg.vision_depth)),
        ),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_processor(tok, size: int):
    """The real Qwen2.5-VL processor with an explicit pixel budget so frames are never upscaled."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    # min = max = size*size pixels: frames already resized to size x size pass through unchanged
    # (the default floor of 128*28*28 pixels would upscale them, README, "Notes on the stack"); no per-frame cap
    # either, so the token count is exactly frames/2 * (size/28)^2.
    pixels = {"shortest_edge": size * size, "longest_edge": size * size}
    return Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(size=pixels),
        video_processor=Qwen2VLVideoProcessor(
            size=pixels, do_sample_frames=False, cap_pixels_per_frame=False
        ),
        tokenizer=tok,
        chat_template=CHAT_TEMPLATE,
    )


def tiny_model_key(cfg: TinyModelConfig, video_size: int, corpus: list[str]) -> str:
    h = hashlib.sha256(json.dumps([vars(cfg), video_size, corpus], sort_keys=True).encode())
    return h.hexdigest()[:12]


def build_tiny_model(
    out_dir: str | Path | None = None,
    cfg: TinyModelConfig | None = None,
    video_size: int = 56,
    corpus: list[str] | None = None,
    force: bool = False,
) -> Path:
    """Build (or reuse) the tiny Qwen2.5-VL: random init from ``cfg.seed``, local tokenizer, real processor.

    Saved with ``save_pretrained`` (safetensors) so the Auto classes reload it like a hub model.
    The folder is keyed by the sizes, the video size and the tokenizer corpus: same inputs, same weights.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    cfg = cfg or TinyModelConfig()
    corpus = tiny_corpus() if corpus is None else corpus
    out = (
        Path(out_dir) if out_dir else CACHE_DIR / f"tiny-qwen2.5-vl-{tiny_model_key(cfg, video_size, corpus)}"
    )
    if (out / "model.safetensors").is_file() and not force:
        return out
    tok = build_tokenizer(corpus, cfg.vocab_size)
    torch.manual_seed(cfg.seed)
    model = Qwen2_5_VLForConditionalGeneration(_tiny_config(cfg, tok))
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tok.pad_token_id
    tmp = out.with_name(out.name + ".tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    build_processor(tok, video_size).save_pretrained(tmp)
    tmp.replace(out) if not out.exists() else _replace_dir(tmp, out)
    return out


def _replace_dir(src: Path, dst: Path) -> None:
    import shutil

    shutil.rmtree(dst)
    src.replace(dst)


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
        ensure_weight_tying=bool(lora.modules_to_save),
    )
    # PEFT stores LoRA weights in fp32 on a bf16 base by default. FSDP1 cannot flatten a block whose
    # weights mix dtypes, and ZeRO-3 fails on mixed dtypes at the first step (TRL issue 6089): keep the
    # base dtype there (both keep fp32 master copies of the trainable weights themselves). 4-bit: as is.
    keep_dtype = sharded_launch() and getattr(model, "hf_quantizer", None) is None
    return get_peft_model(model, config, autocast_adapter_dtype=not keep_dtype)


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


def model_path(recipe: Recipe) -> str:
    """Where the model comes from: the recipe's hub id / folder; on the tiny profile the perception-
    pretrained base (``model.use_base``: the committed copy when its key matches, else the cache,
    built if missing; reasonact/base.py), or the random-init tiny model with ``use_base: false``."""
    m = recipe.model
    if m.name_or_path:
        return m.name_or_path
    if m.use_base:
        from reasonact.base import build_base, find_base

        return str(find_base(recipe) or build_base(recipe))
    return str(build_tiny_model(cfg=m.tiny, video_size=recipe.video.size))


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
    if adapters:
        from peft import PeftModel

        for adapter in adapters:
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if m.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=m.gradient_checkpointing)
    elif m.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
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
