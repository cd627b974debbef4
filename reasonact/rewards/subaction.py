"""Sub-action detection in reasoning text and the graduated sub-action reward R_sub.

**Detection** (the paper's semantic-similarity detector). A segment s (sentence or clause, see
``parse.py``) scores sub-action n with ``sim(s, n) = max_d cos(e(s), e(d))`` over the phrasings d
of n (the union of n's phrasings across the library: the library's vocabulary for that movement),
with e the sentence embedding (all-MiniLM-L6-v2 by default). Sub-action n is detected in s when
``sim(s, n) >= threshold[n]`` and n is the best match of s among the candidates (``decide``:
siblings like "bends the knees" / "bends the knees to absorb the landing" would otherwise both
fire; a sentence still names two sub-actions through its two clauses). Only the sub-actions of
the actions in question are candidates (the ground-truth action's, plus the answered action's for
the consistency check), so a reward never searches the whole library.

**Thresholds** are calibrated per sub-action on validation sentences built from the library
(``calibrate``): every phrasing is put in a sentence template ("In frames 3-5, the person bends
the knees.", "Next, he ...", ...) and labelled with its sub-action; in each action's context the
negatives are its other sub-actions' sentences, generic fillers ("The camera stays still.") and
the sentences of two other actions. A sentence is scored *leave-one-out*: the phrasing it was
built from is removed from the index while it is scored, so calibration sees wordings the index
has not seen, like a model's own paraphrase. Each sub-action's threshold maximises the F1 of the
detection rule above (best match and over the threshold); since a sub-action
has only a handful of validation sentences, it is shrunk towards the F1-optimal threshold of all
sub-actions pooled: ``t = (k * t_n + PRIOR * t_all) / (k + PRIOR)`` with k its positive count and
``PRIOR = 4``. Thresholds live in ``EmbeddingIndex.thresholds`` and are saved with the library's
embedding cache (``"@<dataset>"`` keys mark which datasets were calibrated, ``"@all"`` is t_all).

**R_sub** (range [0, 1]), with D the detected and G the ground-truth sub-actions::

    R_sub = ALPHA * |D ∩ G| / |G|  +  BETA * (tau(D ∩ G) + 1) / 2

where tau is Kendall's tau (scipy, tau-b) between the order in which the matched sub-actions are
first mentioned in the text and their ground-truth order; with fewer than two matches no order
is shown and that term is 0. ``ALPHA = 0.7, BETA = 0.3``: the paper tunes its coefficients by
grid search and does not report them; coverage gets the larger share because it is the primary
signal (the ablation's largest gain) and order has its own reward in C_seq. Ground-truth
sub-actions the index has no phrasing for cannot be detected and are left out of G.
"""

from __future__ import annotations

import contextlib
import random
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.stats import kendalltau

from reasonact.library import DATASET_ALIASES, Library
from reasonact.library.embeddings import EmbeddingIndex, load_encoder
from reasonact.library.encoders import encode
from reasonact.library.grammar import FILLERS, NO_SUBJECT, SUBJECTS, TEMPLATES

ALPHA, BETA = 0.7, 0.3
PRIOR = 4.0  # pseudo-count of the shrinkage towards the pooled threshold
DEFAULT_THRESHOLD = 0.6  # used only for a sub-action never calibrated (and no pooled value yet)
THRESHOLD_RANGE = (0.3, 0.95)
MARGIN = 0.0  # see ``decide``: 0 = each segment names its single best sub-action
OTHER_ACTIONS = 2  # calibration: sentences of this many other actions are negatives in each action's context


_BLAS = None


def one_blas_thread():
    """Context in which numpy's BLAS runs on one thread. Detection multiplies small matrices (a
    completion's ~20 segments by a few hundred phrasings); with OpenBLAS's threads on the shared
    2-core box they waited for each other: ``scores`` took 2.2 s of a 2.9 s batch of 64 at load 4.3,
    0.03 s on one thread (bench/rewards.py, BENCHMARKS.md). No-op without threadpoolctl."""
    global _BLAS
    try:
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        return _BLAS.limit(limits=1, user_api="blas")
    except Exception:  # noqa: BLE001 - an optional speed-up, never a failure
        return contextlib.nullcontext()


@dataclass
class Detection:
    name: str
    phase: str | None
    score: float
    threshold: float
    segment: int  # index into Parsed.segments
    start: int  # character span of the segment in the completion
    end: int
    text: str
    region: str
    frames: list[tuple[int, int]] = field(default_factory=list)


class Detector:
    """Scores segments against sub-actions; embeds with one batched call and a text cache."""

    def __init__(
        self,
        index: EmbeddingIndex,
        encoder=None,
        thresholds: dict | None = None,
        cache_size: int = 20_000,
        margin: float = MARGIN,
    ):
        self.index = index
        self.margin = margin
        self._encoder = encoder
        self.thresholds = dict(thresholds if thresholds is not None else (index.thresholds or {}))
        self.cache_size = cache_size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        rows: dict[str, list[int]] = {}
        for i, n in enumerate(index.names):
            rows.setdefault(n, []).append(i)
        self.rows = {n: np.array(r, dtype=int) for n, r in rows.items()}

    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = load_encoder(self.index.model)
        return self._encoder

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeddings of texts: cached ones reused, all others encoded in ONE call (duplicates once)."""
        dim = self.index.matrix.shape[1]
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            vecs = encode(missing, self.encoder)
            for t, v in zip(missing, vecs):
                self._cache[t] = v
        out = np.zeros((len(texts), dim), np.float32)
        for i, t in enumerate(texts):
            v = self._cache.get(t)
            if v is not None:
                out[i] = v
                self._cache.move_to_end(t)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return out

    def threshold(self, name: str) -> float:
        return float(self.thresholds.get(name, self.thresholds.get("@all", DEFAULT_THRESHOLD)))

    def scores(self, emb: np.ndarray, names: list[str]) -> np.ndarray:
        """(segments, names) max cosine over each name's phrasings; -1 for a name without phrasings."""
        out = np.full((len(emb), len(names)), -1.0, np.float32)
        known = [j for j, n in enumerate(names) if n in self.rows]
        if not known or not len(emb):
            return out
        rows = [self.rows[names[j]] for j in known]
        offsets = np.cumsum([0] + [len(r) for r in rows[:-1]])
        with one_blas_thread():
            sim = emb @ self.index.matrix[np.concatenate(rows)].T
        out[:, known] = np.maximum.reduceat(sim, offsets, axis=1)
        return out


def decide(sc: np.ndarray, thr: np.ndarray, margin: float = MARGIN) -> np.ndarray:
    """Boolean (segments, names): a segment names sub-action j when its score clears j's threshold
    and is within ``margin`` of the segment's best score over the candidates. Without the second
    condition "bends the knees" would also count as the sibling "bends the knees to absorb the
    landing"; clause segments let one sentence still name two sub-actions. On the labelled
    sentences of ``examples.py``, margin 0 / 0.03 / 0.05 gave F1 0.86 / 0.84 / 0.83."""
    if sc.size == 0:
        return np.zeros(sc.shape, bool)
    best = sc.max(axis=1, keepdims=True)
    return (sc >= thr[None, :]) & (sc >= best - margin)


def detect(
    segments,
    emb: np.ndarray,
    seg_ids: list[int],
    names: list[str],
    detector: Detector,
    phase_of: dict[str, str] | None = None,
) -> list[Detection]:
    """Every (segment, sub-action) pair ``decide`` accepts, in text order.
    ``seg_ids[i]`` is the segment index of embedding row i."""
    if not names or not seg_ids:
        return []
    sc = detector.scores(emb, names)
    thr = np.array([detector.threshold(n) for n in names], np.float32)
    out = []
    for i, j in zip(*np.nonzero(decide(sc, thr, detector.margin))):
        s = segments[seg_ids[i]]
        out.append(
            Detection(
                names[j],
                (phase_of or {}).get(names[j]),
                float(sc[i, j]),
                float(thr[j]),
                seg_ids[i],
                s.start,
                s.end,
                s.text,
                s.region,
                list(s.frames),
            )
        )
    return sorted(out, key=lambda d: (d.start, -d.score))


def first_mentions(detections: list[Detection]) -> dict[str, int]:
    """Sub-action -> character position of its first detection."""
    out: dict[str, int] = {}
    for d in detections:
        out[d.name] = min(out.get(d.name, d.start), d.start)
    return out


def normalized_tau(x: list[float], y: list[float]) -> float | None:
    """(Kendall's tau-b + 1) / 2 in [0, 1]; None when undefined (fewer than 2 points, constant).

    tau-b depends only on the two rankings (ties included), so scipy is called once per pair of
    dense rankings and memoised: a batch repeats the same few orderings, and scipy's per-call
    overhead (~1 ms) was a fifth of a batch's CPU time with the static encoder."""
    if len(x) < 2 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    try:
        if all(np.isfinite(v) for v in (*x, *y)):
            return _tau_of_ranks(_dense_ranks(x), _dense_ranks(y))
    except TypeError:
        pass
    return _tau(x, y)


def _dense_ranks(v) -> tuple[int, ...]:
    pos = {u: i for i, u in enumerate(sorted(set(v)))}
    return tuple(pos[u] for u in v)


@lru_cache(maxsize=8192)
def _tau_of_ranks(rx: tuple[int, ...], ry: tuple[int, ...]) -> float | None:
    return _tau(rx, ry)


def _tau(x, y) -> float | None:
    tau = kendalltau(x, y).statistic
    if tau is None or not np.isfinite(tau):
        return None
    return float(np.clip((tau + 1.0) / 2.0, 0.0, 1.0))


def r_sub(
    detections: list[Detection],
    gt_names: list[str],
    detectable: set[str] | None = None,
    alpha: float = ALPHA,
    beta: float = BETA,
) -> dict:
    """R_sub and its parts: coverage, order, the matched sub-actions in text order."""
    gt = [n for n in dict.fromkeys(gt_names) if detectable is None or n in detectable]
    if not gt:
        return {"r_sub": 0.0, "coverage": 0.0, "order": 0.0, "matched": []}
    first = first_mentions([d for d in detections if d.name in gt])
    matched = sorted(first, key=first.get)
    coverage = len(matched) / len(gt)
    order = normalized_tau([first[n] for n in matched], [gt.index(n) for n in matched])
    order = 0.0 if order is None else order
    value = alpha * coverage + beta * order
    return {
        "r_sub": float(np.clip(value, 0.0, 1.0)),
        "coverage": coverage,
        "order": order,
        "matched": matched,
    }


# ---- calibration ---------------------------------------------------------------------------------


def calibration_sentences(
    lib: Library, datasets: list[str] | None = None, seed: int = 0, max_per_name: int = 6
) -> list[tuple[str, str | None, str | None, str | None]]:
    """(sentence, sub-action name or None for a negative filler, source phrasing, action key) for every
    phrasing of the datasets' actions (at most ``max_per_name`` per sub-action), plus fillers."""
    rng = random.Random(seed)
    ds = {DATASET_ALIASES.get(d, d) for d in datasets} if datasets else None
    actions = [a for a in lib if ds is None or a.dataset in ds]
    per_name: dict[str, int] = {}
    out = []
    for a in actions:
        for s in a.sub_actions:
            for p in s.phrasings:
                if per_name.get(s.name, 0) >= max_per_name:
                    break
                per_name[s.name] = per_name.get(s.name, 0) + 1
                frame = rng.randint(1, 13)
                subj = rng.choice(SUBJECTS)
                tpl = rng.choice(TEMPLATES)
                if NO_SUBJECT.match(p):
                    tpl = tpl.replace("{S} ", "").replace("{s} ", "")
                text = tpl.format(S=subj.capitalize(), s=subj, p=p, a=frame, b=frame + rng.randint(1, 3))
                out.append((text[0].upper() + text[1:], s.name, p, a.key))
    labels = [a.label.replace("_", " ") for a in actions] or ["the action"]
    for f in FILLERS:
        out.append((f.format(label=rng.choice(labels)), None, None, None))
    return out


def _best_f1_threshold(scores: np.ndarray, labels: np.ndarray, missed: int = 0) -> tuple[float | None, float]:
    """Threshold maximising F1 over candidate (score, is-positive) pairs, midway between the last
    accepted score and the next; ``missed`` positives can never be accepted (false negatives)."""
    pos = int(labels.sum()) + missed
    if pos == 0 or len(scores) == 0 or not labels.any():
        return None, 0.0
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + pos)
    f1 = np.where(np.r_[s[1:] < s[:-1], True], f1, -1)  # only cut between distinct scores
    i = int(np.argmax(f1))
    nxt = s[i + 1] if i + 1 < len(s) else s[i] - 0.05
    return float((s[i] + nxt) / 2), float(f1[i])


def calibrate(
    detector: Detector,
    lib: Library,
    datasets: list[str] | None = None,
    seed: int = 0,
    prior: float = PRIOR,
    other_actions: int | None = OTHER_ACTIONS,
) -> dict:
    """Calibrate per-sub-action thresholds (see the module docstring); updates and returns
    ``detector.thresholds`` inside a report (sentence counts, pooled and per-name figures).

    Detection competes within an action (``decide``), so calibration does too: validation
    sentences are scored against each action's sub-actions; where sub-action n is the best match
    (within the margin), the pair (score, sentence is about n) is a candidate detection of n, and
    n's threshold is the cut on those candidates with the best F1 (positives never selected count
    as misses). In an action's context the sentences are its own, the fillers and those of
    ``other_actions`` other actions (seeded; ``None`` = all): a reasoning may wander to another
    action, but rarely to every other one, and with all of them as negatives the thresholds rise
    until paraphrases are missed (F1 0.83 vs 0.86 with 2 on the labelled sentences).
    """
    data = calibration_sentences(lib, datasets, seed)
    ds = {DATASET_ALIASES.get(d, d) for d in datasets} if datasets else None
    actions = [a for a in lib if ds is None or a.dataset in ds]
    emb = detector.embed([d[0] for d in data])
    labels = [d[1] for d in data]
    owner = [d[3] for d in data]
    rng = random.Random(seed)
    # Leave-one-out: while scoring a sentence, hide index rows whose phrasing is its source.
    by_text: dict[str, set[int]] = {}
    for i, t in enumerate(detector.index.phrasings):
        by_text.setdefault(t.strip().lower(), set()).add(i)
    hidden = [by_text.get(d[2].strip().lower(), set()) if d[2] else set() for d in data]
    cand: dict[str, list[tuple[float, bool]]] = {}
    positives: dict[str, int] = {}
    for n in labels:
        if n is not None:
            positives[n] = positives.get(n, 0) + 1
    for a in actions:
        names = [s.name for s in a.sub_actions if s.name in detector.rows]
        if not names:
            continue
        rows = [detector.rows[n] for n in names]
        cols = np.concatenate(rows)
        offsets = np.cumsum([0] + [len(r) for r in rows[:-1]])
        sim = emb @ detector.index.matrix[cols].T
        col_of = {r: c for c, r in enumerate(cols)}
        for i, h in enumerate(hidden):
            if h:
                sim[i, [col_of[r] for r in h if r in col_of]] = -1.0
        sc = np.maximum.reduceat(sim, offsets, axis=1)
        best = sc.max(axis=1)
        if other_actions is None:
            use = np.ones(len(data), bool)
        else:
            others = set(
                rng.sample(
                    sorted({o for o in owner if o and o != a.key}),
                    min(other_actions, len({o for o in owner if o and o != a.key})),
                )
            )
            use = np.array([o is None or o == a.key or o in others for o in owner])
        for j, n in enumerate(names):
            top = (sc[:, j] >= best - detector.margin) & use
            for i in np.nonzero(top)[0]:
                cand.setdefault(n, []).append((float(sc[i, j]), labels[i] == n))
    # Each sentence about n is one positive, even when n appears in several actions' contexts.
    pooled_s = np.array([s for v in cand.values() for s, _ in v], np.float32)
    pooled_y = np.array([y for v in cand.values() for _, y in v], bool)
    pooled_pos = sum(positives.get(n, 0) for n in cand)
    t_all, f1_all = _best_f1_threshold(pooled_s, pooled_y, max(0, pooled_pos - int(pooled_y.sum())))
    t_all = float(np.clip(t_all if t_all is not None else DEFAULT_THRESHOLD, *THRESHOLD_RANGE))
    per_name = {}
    for n, pairs in sorted(cand.items()):
        s_n = np.array([p[0] for p in pairs], np.float32)
        y_n = np.array([p[1] for p in pairs], bool)
        k = positives.get(n, 0)
        t_n, f1 = _best_f1_threshold(s_n, y_n, max(0, k - int(y_n.sum())))
        t = t_all if t_n is None else (k * t_n + prior * t_all) / (k + prior)
        detector.thresholds[n] = round(float(np.clip(t, *THRESHOLD_RANGE)), 4)
        per_name[n] = {"positives": k, "f1_alone": round(f1, 3), "threshold": detector.thresholds[n]}
    detector.thresholds["@all"] = round(t_all, 4)
    for d in sorted(ds) if ds else sorted({a.dataset for a in lib}):
        detector.thresholds[f"@{d}"] = 1.0
    return {
        "sentences": len(data),
        "names": len(per_name),
        "pooled_threshold": round(t_all, 4),
        "pooled_f1": round(f1_all, 3),
        "per_name": per_name,
    }


def is_calibrated(detector: Detector, dataset: str | None) -> bool:
    ds = DATASET_ALIASES.get(dataset, dataset) if dataset else None
    return f"@{ds}" in detector.thresholds if ds else "@all" in detector.thresholds


__all__ = [
    "ALPHA",
    "BETA",
    "Detection",
    "Detector",
    "calibrate",
    "calibration_sentences",
    "detect",
    "r_sub",
    "normalized_tau",
    "first_mentions",
    "is_calibrated",
    "encode",
]
