"""Qwen2.5-VL-3B's shapes at reduced depth (data/qwen.py ``build_3b_shaped``): the GPU profile's widths, real
ids and processor, loaded through the package and trained one LoRA step on a qwen-resized clip."""

import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from reasonact.data.qwen import build_3b_shaped

pytestmark = pytest.mark.slow  # ~0.55 B parameters: builds once into data/cache (1.1 GB), one training step


@pytest.fixture(scope="module")
def shaped():
    return build_3b_shaped()  # 2 text layers, 2 vision blocks; reused from data/cache when built


def test_widths_ids_and_processor(shaped):
    from transformers import AutoConfig, AutoProcessor

    config = AutoConfig.from_pretrained(shaped)
    text, vision = config.text_config, config.vision_config
    assert (text.hidden_size, text.num_attention_heads, text.num_key_value_heads) == (2048, 16, 2)
    assert (text.intermediate_size, text.vocab_size, text.num_hidden_layers) == (11008, 151936, 2)
    assert config.tie_word_embeddings
    assert text.rope_parameters["rope_theta"] == 1e6 and text.rope_parameters["mrope_section"] == [16, 24, 24]
    assert (vision.hidden_size, vision.num_heads, vision.intermediate_size, vision.out_hidden_size) == (
        1280,
        16,
        3420,
        2048,
    )
    assert (vision.patch_size, vision.spatial_merge_size, vision.temporal_patch_size) == (14, 2, 2)
    assert (vision.depth, vision.window_size, list(vision.fullatt_block_indexes)) == (2, 112, [1])
    assert (config.video_token_id, config.image_token_id, config.vision_start_token_id) == (
        151656,
        151655,
        151652,
    )
    tok = AutoProcessor.from_pretrained(shaped).tokenizer
    assert len(tok) == 151936
    assert tok.convert_tokens_to_ids(["<|video_pad|>", "<|im_end|>"]) == [151656, 151645]


def test_one_lora_step_on_a_qwen_resized_clip(shaped, tmp_path):
    import numpy as np
    import torch

    from reasonact.config import load_config
    from reasonact.prompts import QUESTION, encode_videos
    from reasonact.video import read_video, write_video
    from reasonact.vlm import load_model
    from tests.conftest import moving_square

    clip = write_video(tmp_path / "clip.mp4", moving_square(num_frames=16, h=96, w=128), fps=12)
    video = read_video(clip, num_frames=16, size=224, resize="qwen")
    assert video.frames.shape[1:3] == (84, 140)  # aspect kept, sides multiples of 28
    over = {"model.name_or_path": str(shaped), "model.dtype": "float32"}
    model, processor = load_model(load_config("qwen2.5-vl-3b", over))
    assert model.get_base_model().model.language_model.embed_tokens.weight.shape == (151936, 2048)
    batch = encode_videos(processor, [video], [QUESTION], answers=["<think>frames 1-16: it moves.</think>"])
    tokens = 8 * (84 // 28) * (140 // 28)  # 16 frames / temporal patch 2, 28 px per token after the merge
    assert int((batch["input_ids"] == 151656).sum()) == tokens
    assert batch["video_grid_thw"].tolist() == [[8, 6, 10]]
    lora = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    before = {n: p.detach().clone() for n, p in lora.items()}
    model.train()
    labels = batch["input_ids"].clone()
    labels[batch["input_ids"] == 151656] = -100
    loss = model(**batch, labels=labels).loss
    assert np.isfinite(float(loss.detach()))
    loss.backward()
    grads = {n for n, p in lora.items() if p.grad is not None and p.grad.abs().sum() > 0}
    assert grads and all(
        "lora_B" in n for n in grads
    )  # lora_B starts at zero: only it has a gradient at first
    torch.optim.AdamW(list(lora.values()), lr=1e-3, weight_decay=0.0).step()
    changed = {n for n, p in lora.items() if not torch.equal(p, before[n])}
    assert changed == grads and len(changed) == 2 * 7  # every LoRA B of the 7 projections in both layers
