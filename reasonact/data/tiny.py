"""The tiny Qwen2.5-VL of the tiny profile, built locally: a BPE tokenizer trained on the project's own
text with Qwen's special tokens and chat template, the real Qwen2.5-VL processor, and a model from a
config with random weights (``reasonact model build-tiny``; the perception base starts from it).
``reasonact.vlm`` knows where the built model lives and loads it like any other.
"""

from __future__ import annotations

import json
from pathlib import Path

from reasonact.config import TinyModelConfig
from reasonact.vlm import tiny_corpus, tiny_model_dir

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
# Qwen2.5-VL's chat template, as released with the model: a default system turn, content lists with
# {"type": "video"} / {"type": "image"} / {"type": "text"} parts ("add_vision_id" numbers them). The tiny
# and the real processor (data/qwen.py) share it.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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
    out = Path(out_dir) if out_dir else tiny_model_dir(cfg, video_size, corpus)
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
