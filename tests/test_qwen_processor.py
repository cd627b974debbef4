"""The real Qwen2.5-VL tokenizer and processor (data/qwen.py), built offline from the llama-cpp-python sdist:
checked against facts that hold for the hub's Qwen/Qwen2.5-VL-3B-Instruct processor."""

import pytest

import reasonact  # noqa: F401  (first: the CPU-torch torchvision fix)
from reasonact.data.qwen import ADDED_TOKENS, VOCAB_SIZE, build_qwen_processor, fetch_vocab, reference_vectors

pytestmark = pytest.mark.slow  # downloads the sdist once (~75 MB, cached in data/cache/qwen2-vocab)


@pytest.fixture(scope="module")
def processor():
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(build_qwen_processor())


def test_special_tokens_sit_at_the_official_ids(processor):
    tok = processor.tokenizer
    assert len(tok) == VOCAB_SIZE == 151_936
    assert tok.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    assert tok.convert_tokens_to_ids(
        ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    ) == [
        151652,
        151653,
        151655,
        151656,
    ]
    for i, (token, _) in ADDED_TOKENS.items():
        assert tok.convert_ids_to_tokens(i) == token and tok.encode(token) == [i]  # one token, never split
    assert (tok.eos_token, tok.pad_token, tok.bos_token) == ("<|im_end|>", "<|endoftext|>", None)


def test_llama_cpp_test_vectors_tokenize_identically(processor):
    """llama.cpp ships the token ids its Qwen2 tokenizer must produce for 47 tricky texts (whitespace runs,
    digits, accents, emoji, Cyrillic, Khmer...): the BPE here must agree on every one."""
    vectors = reference_vectors(fetch_vocab())
    assert len(vectors) > 40
    wrong = [(text, ids) for text, ids in vectors if processor.tokenizer.encode(text) != ids]
    assert not wrong, wrong[:3]


def test_one_rendered_chat_token_by_token(processor):
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Hello world"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Hello world<|im_end|>\n<|im_start|>assistant\n"
    )
    # system, "\n", "You are a helpful assistant.", user, assistant: Qwen2's ids for these words
    assert processor.tokenizer.encode(text) == [151644, 8948, 198, 2610, 525, 264, 10950, 17847, 13, 151645, 198,
                                                151644, 872, 198, 151652, 151656, 151653, 9707, 1879, 151645, 198,
                                                151644, 77091, 198]  # fmt: skip


def test_video_settings_match_the_hub_processor(processor):
    """Patch 14, merge 2, temporal patch 2 and the pixel range: a 16-frame clip of 168 x 252 px (a 4:3 clip
    read with video.resize qwen) gives 8 x 12 x 18 patches and 8 * 6 * 9 = 432 video tokens."""
    import numpy as np

    v = processor.video_processor
    assert (v.patch_size, v.merge_size, v.temporal_patch_size) == (14, 2, 2)
    assert (v.size.shortest_edge, v.size.longest_edge) == (3136, 12845056)
    frames = np.zeros((16, 168, 252, 3), np.uint8)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    enc = processor(text=[text], videos=[frames], do_sample_frames=False, return_tensors="pt")
    assert enc["video_grid_thw"].tolist() == [[8, 12, 18]]
    assert int((enc["input_ids"] == 151656).sum()) == 432
