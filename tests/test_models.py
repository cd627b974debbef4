import hashlib

import pytest
import torch

from reasonact.config import LoraConfig, TinyModelConfig, load_config, parse_overrides
from reasonact.data.tiny import build_tiny_model
from reasonact.prompts import encode_videos
from reasonact.video import read_video
from reasonact.vlm import (
    VISION_TOKENS,
    NucleusWarper,
    apply_lora,
    load_model,
    lora_target_regex,
    until_eos,
    vision_token_ids,
)


def _sha(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def _recipe(model_dir, **over):
    return load_config(
        "tiny", parse_overrides([f"model.name_or_path={model_dir}"] + [f"{k}={v}" for k, v in over.items()])
    )


def test_same_seed_same_weights(tmp_path, tiny_model_dir):
    corpus = ["knee flexion", "bends the knees", "<think> frames 1-4 </think>"] * 5
    a = build_tiny_model(tmp_path / "a", TinyModelConfig(vocab_size=400), corpus=corpus)
    b = build_tiny_model(tmp_path / "b", TinyModelConfig(vocab_size=400), corpus=corpus)
    c = build_tiny_model(tmp_path / "c", TinyModelConfig(vocab_size=400, seed=1), corpus=corpus)
    assert _sha(a) == _sha(b) != _sha(c)
    # reuse: a second call finds the folder and does not rebuild
    mtime = (a / "model.safetensors").stat().st_mtime
    assert build_tiny_model(tmp_path / "a", TinyModelConfig(vocab_size=400), corpus=corpus) == a
    assert (a / "model.safetensors").stat().st_mtime == mtime


def test_reload_with_auto_classes(tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir)
    proc = AutoProcessor.from_pretrained(tiny_model_dir)
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert type(proc).__name__ == "Qwen2_5_VLProcessor"
    assert sum(p.numel() for p in model.parameters()) < 3_000_000
    for tok in VISION_TOKENS + ["<|im_start|>", "<|im_end|>"]:
        assert proc.tokenizer.convert_tokens_to_ids(tok) != proc.tokenizer.unk_token_id
    assert model.config.video_token_id == proc.tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert not list(tiny_model_dir.glob("*.bin")), "weights are saved as safetensors only"


def test_forward_with_video_and_labels_then_generate(tiny_model_dir, clip_path):
    model, proc = load_model(_recipe(tiny_model_dir), lora=False)
    video = read_video(clip_path, 16, 56)
    inputs = encode_videos(
        proc, [video], answers=["<think>the square moves right</think><answer>slide</answer>"]
    )
    assert "pixel_values_videos" in inputs and "mm_token_type_ids" in inputs
    labels = inputs["input_ids"].clone()
    out = model(**inputs, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.model.language_model.embed_tokens.weight.grad is not None
    # the video matters: other frames give other logits
    video2 = read_video(clip_path, 16, 56)
    video2.frames = video2.frames[::-1].copy()
    with torch.no_grad():
        a = model(**encode_videos(proc, [video])).logits
        b = model(**encode_videos(proc, [video2])).logits
    assert not torch.allclose(a, b)
    gen = model.generate(
        **encode_videos(proc, [video]),
        max_new_tokens=8,
        do_sample=True,
        suppress_tokens=vision_token_ids(proc),
    )
    new = gen[0, -8:].tolist()
    assert not set(new) & set(vision_token_ids(proc))


@pytest.mark.parametrize("scale", [8.0, 3.0, 0.5])  # rows with the nucleus in 64 tokens, some, none
@pytest.mark.parametrize("temperature,top_p,top_k", [(1.0, 0.9, 0), (0.7, 0.9, 0), (1.3, 0.5, 0), (1.0, 0.95, 20), (0.7, 1.0, 30), (1.0, 0.5, 200)])  # fmt: skip
def test_nucleus_warper_keeps_what_transformers_warpers_keep(scale, temperature, top_p, top_k):
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    scores = torch.randn(16, 4096, generator=torch.Generator().manual_seed(0)) * scale
    scores[:, :3] = float("-inf")  # suppressed tokens (vision tokens) come in at -inf
    expected = TemperatureLogitsWarper(temperature)(None, scores)
    expected = TopKLogitsWarper(top_k)(None, expected) if top_k else expected
    expected = TopPLogitsWarper(top_p)(None, expected) if top_p < 1 else expected
    got = NucleusWarper(temperature, top_p, top_k, candidates=64)(None, scores)
    kept = got.isfinite()
    assert torch.equal(kept, expected.isfinite()) and torch.equal(got[kept], expected[kept])
    if top_k == 0 and top_p < 1 and scale != 3.0:  # the case really was peaked / flat
        assert (kept.sum(-1).max() <= 64) == (scale > 3)


def test_nucleus_warper_on_qwens_vocabulary_differs_only_at_the_nucleus_edge():
    """On 151,936 tokens the float sums of a flat row (ascending in transformers, descending here) may put a
    token whose mass above is within rounding of top-p on the other side; nothing else may differ."""
    from transformers.generation.logits_process import TopPLogitsWarper

    scores = torch.randn(16, 151_936, generator=torch.Generator().manual_seed(1)) * 0.5
    differ = (
        TopPLogitsWarper(0.9)(None, scores).isfinite() != NucleusWarper(1.0, 0.9)(None, scores).isfinite()
    )
    p, order = scores.double().softmax(-1).sort(-1, descending=True)
    above = torch.zeros_like(p).scatter(-1, order, p.cumsum(-1) - p)  # exact mass ranked above each token
    assert differ.sum() <= 16 and (above[differ] - 0.9).abs().le(1e-5).all()


def test_nucleus_warper_rejects_bad_settings_and_until_eos_cuts():
    with pytest.raises(ValueError, match="top_p"):
        NucleusWarper(1.0, 0.0)
    assert until_eos([[5, 2, 9, 2], [5, 6], []], [2]) == [[5, 2], [5, 6], []]


def test_lora_targets_language_model_only(tiny_model_dir):
    model, _ = load_model(_recipe(tiny_model_dir), lora=True)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    # LoRA weights, plus the tiny profile's token embeddings (model.lora.modules_to_save)
    assert trainable and all("lora_" in n or "embed_tokens.modules_to_save" in n for n in trainable)
    assert any("embed_tokens.modules_to_save" in n for n in trainable)
    assert all("language_model" in n for n in trainable)
    assert not any("visual" in n for n in trainable)
    lora_modules = [n for n, _ in model.named_modules() if n.endswith("lora_A")]
    assert lora_modules and not any("visual" in n for n in lora_modules)


def test_the_processor_caps_a_videos_pixels_like_qwen_vl_utils(tiny_model_dir):
    _, proc = load_model(_recipe(tiny_model_dir), lora=False)
    assert proc.video_processor.cap_pixels_per_frame is True  # unset: transformers warns on every video


def test_lora_regex_excludes_vision_mlp():
    import re

    rx = re.compile(lora_target_regex(["up_proj", "q_proj"]))
    assert rx.match("model.language_model.layers.0.mlp.up_proj")
    assert rx.match("model.language_model.layers.1.self_attn.q_proj")
    assert not rx.match("model.visual.blocks.0.mlp.up_proj")


def test_apply_lora_rank(tiny_model_dir):
    from transformers import AutoModelForImageTextToText

    model = apply_lora(AutoModelForImageTextToText.from_pretrained(tiny_model_dir), LoraConfig(r=4, alpha=8))
    a = next(p for n, p in model.named_parameters() if n.endswith("lora_A.default.weight"))
    assert a.shape[0] == 4


def test_4bit_load_on_cpu(tiny_model_dir, clip_path):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    model, proc = load_model(_recipe(tiny_model_dir, **{"model.load_in_4bit": "true"}), lora=True)
    n4 = [n for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert n4 and all("visual" not in n for n in n4)
    inputs = encode_videos(proc, [read_video(clip_path, 16, 56)], answers=["<answer>x</answer>"])
    out = model(**inputs, labels=inputs["input_ids"])
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert any(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
