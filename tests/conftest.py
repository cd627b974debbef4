"""Shared fixtures. Nothing here downloads: models are built from configs, videos are generated."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import reasonact  # noqa: E402,F401  (torchvision fix before transformers is imported)
from reasonact.config import TinyModelConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """The tiny Qwen2.5-VL at 56 px, built once per test session into a temp folder."""
    from reasonact.data.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", cfg=TinyModelConfig(), video_size=56)


def moving_square(num_frames=24, h=64, w=80, seed=0):
    """A clip whose content changes over time (a square crossing the frame)."""
    rng = np.random.default_rng(seed)
    clip = np.zeros((num_frames, h, w, 3), np.uint8)
    colour = rng.integers(128, 256, size=3)
    for t in range(num_frames):
        x = int(t / max(1, num_frames - 1) * (w - 16))
        clip[t, h // 2 - 8 : h // 2 + 8, x : x + 16] = colour
    return clip


@pytest.fixture
def clip_path(tmp_path):
    from reasonact.video import write_video

    return write_video(tmp_path / "clip.mp4", moving_square(), fps=12)


@pytest.fixture(scope="session")
def scorer(tmp_path_factory):
    """A Scorer over the small hand-written library of ``rewards/examples.py``, its index in a temp cache."""
    from reasonact.library.embeddings import build_index, cache_path
    from reasonact.rewards import examples
    from reasonact.rewards.scorer import Scorer

    lib = examples.mini_library(tmp_path_factory.mktemp("lib"))
    cache = tmp_path_factory.mktemp("cache")
    index = build_index(lib, cache_dir=cache)
    return Scorer(lib, index, cache_path=cache_path(lib, index.model, cache))
