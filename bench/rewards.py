"""Reward throughput: completions/s for a batch of 64 completions of ~150 words (prints one JSON object).

    python bench/rewards.py                       # the default: MiniLM, torch threads = cores
    python bench/rewards.py --threads 2 --repeats 5 --quantize
    python bench/rewards.py --encoder static      # the static encoder distilled from MiniLM
    python bench/rewards.py --encoder model2vec   # model2vec's own distillation of that MiniLM

``detection`` is sub-action detection with the same index and encoder as the timing: precision,
recall and F1 on the hand-labelled sentences (``report.detection_precision_recall``) and the pooled
leave-one-out F1 of calibrating hmdb51 (``calibrate`` on a fresh detector).

Each repeat scores a *fresh* batch (different text, so neither the analysis cache nor the segment
cache helps) with ``total_reward``, which computes every component in one pass; the library's
phrasing embeddings and the calibrated thresholds come from the on-disk cache (built/calibrated
once before timing, reported as ``setup_s``). The completions are SynthAct-like chains over the
library's SynthAct classes with varied wording: each sentence mixes a library phrasing with random
subjects, adverbs and observations, so few segments repeat within a batch (``unique_share``).
``encode_s`` is the time inside the sentence encoder; the rest is parsing, similarity and rules.
``steady_state_completions_per_s`` keeps the segment cache across batches, as a training run does
(segments a policy repeats from step to step are embedded once); it depends on how repetitive the
text is, here the generator's, so the cold figure is the one to quote.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import reasonact  # noqa: E402,F401  (torchvision fix first)

SUBJECTS = ("the person", "the figure", "he", "she", "the athlete", "the subject", "the man", "the woman")
ADVERBS = (
    "slowly",
    "quickly",
    "smoothly",
    "clearly",
    "steadily",
    "briefly",
    "firmly",
    "gradually",
    "visibly",
)
OBSERVATIONS = (
    "the head stays level",
    "the torso stays upright",
    "the shadow moves with the body",
    "the feet stay apart",
    "the motion is continuous",
    "the hands stay open",
    "the body stays centred",
    "the camera does not move",
    "the outline is easy to follow",
    "the limbs stay in view",
    "the background is unchanged",
    "the pace is even",
)


def make_completion(rec: dict, action, rng: random.Random, words: int, unique: bool = False) -> str:
    """A ~``words``-word chain: per phase a 'Frames a-b:' sentence with its sub-actions, then
    varied observations until the length is reached, then a conclusion and the answer."""
    from reasonact.rewards.examples import phase_frames

    sentences = []
    frames = phase_frames(rec)
    per_phase = max(1, words // max(1, len(action.phases)))
    for (a, b), phase in zip(frames, action.phases):
        parts = []
        for s in phase.sub_actions:
            parts.append(f"{rng.choice(SUBJECTS)} {rng.choice(ADVERBS)} {rng.choice(s.phrasings)}")
        sent = [f"Frames {a}-{b}: " + ", and ".join(parts) + "."]
        while sum(len(x.split()) for x in sent) < per_phase - 6:
            obs = rng.sample(OBSERVATIONS, 2)
            tail = f" near mark {rng.randrange(10**6)}" if unique else ""  # --unique: no segment repeats
            sent.append(f"{obs[0].capitalize()} {rng.choice(ADVERBS)}{tail} while {obs[1]}{tail}.")
        sentences.extend(sent)
    label = action.label.replace("_", " ")
    sentences.append(
        f"Overall the phases {', '.join(p.name.replace('_', ' ') for p in action.phases)} "
        f"follow each other, which is typical of {label}."
    )
    return f"<think>{' '.join(sentences)}</think><answer>{label}</answer>"


def make_batch(lib, n: int, words: int, seed: int, unique: bool = False) -> tuple[list[str], dict]:
    from reasonact.data.figure import CLASSES
    from reasonact.rewards.examples import synthetic_record

    rng = random.Random(seed)
    actions = [lib.resolve(c, "synthact") for c in CLASSES if _has(lib, c)]
    comps, cols = [], {k: [] for k in ("label", "dataset", "phases", "fps", "num_frames", "duration_s")}
    for i in range(n):
        action = actions[(seed * n + i) % len(actions)]
        rec = synthetic_record(
            action, duration_s=rng.uniform(2.0, 4.0), jitter=0.3, seed=rng.randrange(10**6)
        )
        comps.append(make_completion(rec, action, rng, words, unique))
        for k in cols:
            cols[k].append(rec[k])
    return comps, cols


class Model2VecEncoder:
    """A model2vec ``StaticModel`` behind the calls ``encoders.encode`` makes (SentenceTransformer's)."""

    def __init__(self, model, name: str):
        self.model, self.name = model, name

    def get_embedding_dimension(self) -> int:
        return self.model.dim

    def encode(self, texts, batch_size=None, **_):
        return self.model.encode(list(texts), batch_size=batch_size or 1024, use_multiprocessing=False)


def model2vec_encoder(lib, vocabulary: bool = True) -> Model2VecEncoder:
    """model2vec's distillation (``model2vec.distill``) of the local MiniLM with the settings of
    steps 1-2 of ``reasonact/library/static.py`` (its PCA and SIF, float32), the library's words
    that WordPiece splits added to the vocabulary (``vocabulary``); cached by a key of the MiniLM
    files, those words and the settings."""
    import hashlib

    import model2vec
    from model2vec import StaticModel

    from reasonact.library import static as static_embeddings
    from reasonact.library.encoders import CACHE_DIR, default_model_path, load_sentence_encoder

    source = default_model_path()
    st = load_sentence_encoder(source)
    tok = st.tokenizer
    words = static_embeddings.corpus(lib)[1] if vocabulary else []
    words = [w for w in words if len(tok(w, add_special_tokens=False)["input_ids"]) > 1]
    settings = {"pca_dims": static_embeddings.PCA_DIMS, "sif_coefficient": static_embeddings.SIF_A}
    settings |= {"quantize_to": "float32", "device": "cpu"}
    blob = json.dumps([static_embeddings.source_fingerprint(source), words, settings, model2vec.__version__])
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    path = CACHE_DIR / f"model2vec-{key}"
    if not (path / "config.json").is_file():
        from model2vec.distill import distill_from_model

        model = distill_from_model(st[0].auto_model, tok, vocabulary=words or None, **settings)
        model.save_pretrained(path)
    return Model2VecEncoder(StaticModel.from_pretrained(path), f"model2vec@{key}")


def _has(lib, label: str) -> bool:
    try:
        lib.resolve(label, "synthact")
        return True
    except KeyError:
        return False


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=64, help="completions per batch")
    ap.add_argument("--words", type=int, default=150, help="approximate words per completion")
    ap.add_argument("--repeats", type=int, default=3, help="fresh batches to time (median reported)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own)")
    ap.add_argument(
        "--batch-size", type=int, default=None, help="encoder batch size (default: reasonact's 256)"
    )
    ap.add_argument("--max-seq-length", type=int, default=None, help="encoder max_seq_length (MiniLM: 256)")
    ap.add_argument(
        "--unique", action="store_true", help="make every observation sentence unique (worst case)"
    )
    ap.add_argument("--library", default=None, help="library folder (default: data/library)")
    ap.add_argument(
        "--quantize", action="store_true", help="int8 dynamic quantisation of the encoder's Linear layers"
    )
    ap.add_argument(
        "--encoder",
        choices=("minilm", "static", "model2vec"),
        default="minilm",
        help="minilm: the contextual all-MiniLM-L6-v2 (default); static: minilm-static, the token-vector "
        "encoder distilled from it (reasonact/library/static.py; built and cached on first use); "
        "model2vec: model2vec's distillation of the same MiniLM (built and cached on first use)",
    )
    ap.add_argument(
        "--no-model2vec-words",
        action="store_true",
        help="model2vec: MiniLM's WordPiece vocabulary only (default: plus the library's split words)",
    )
    ap.add_argument("--no-detection", action="store_true", help="skip the detection P/R and calibration F1")
    args = ap.parse_args(argv)
    if args.encoder != "minilm" and (args.quantize or args.max_seq_length):
        ap.error("--quantize and --max-seq-length apply to the contextual encoder only")

    import torch

    from reasonact.library import embeddings, load_library
    from reasonact.rewards import Scorer, total_reward

    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    lib = load_library(args.library) if args.library else load_library()
    t_build = time.perf_counter()
    encoder_build_s = None
    if args.encoder == "static":
        from reasonact.library import static as static_embeddings

        encoder = static_embeddings.build_static()  # loads the cached build, or builds it once
        encoder_build_s = round(time.perf_counter() - t_build, 2)
        index = embeddings.build_index(lib, encoder.name, encoder=encoder)
    elif args.encoder == "model2vec":
        encoder = model2vec_encoder(lib, vocabulary=not args.no_model2vec_words)
        encoder_build_s = round(time.perf_counter() - t_build, 2)
        index = embeddings.build_index(lib, encoder.name, encoder=encoder)
    else:
        index = embeddings.build_index(lib)
        encoder = embeddings.load_encoder(index.model)
    if args.max_seq_length:
        encoder.max_seq_length = args.max_seq_length
    if args.quantize:
        encoder = torch.ao.quantization.quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)
    if args.batch_size:
        orig = embeddings.encode
        embeddings_encode = lambda texts, enc=None, batch_size=args.batch_size: orig(texts, enc, batch_size)  # noqa: E731
        import reasonact.rewards.subaction as sub

        sub.encode = embeddings_encode
    scorer = Scorer(lib, index, encoder, cache_path=embeddings.cache_path(lib, index.model))
    scorer.ensure_calibrated(["hmdb51"])
    setup_s = time.perf_counter() - t0

    # Time inside the encoder: wrap the detector's embed.
    det = scorer.detector
    encode_time = [0.0]
    inner = det.embed

    def timed_embed(texts):
        t = time.perf_counter()
        try:
            return inner(texts)
        finally:
            encode_time[0] += time.perf_counter() - t

    det.embed = timed_embed
    # Warm-up on a separate batch (first call pays one-off costs: tokenizer, allocator).
    warm, cols = make_batch(lib, 8, args.words, seed=999)
    total_reward(None, warm, scorer=scorer, **cols)

    rates, enc_s, tot_s, stats = [], [], [], {}
    for rep in range(args.repeats):
        comps, cols = make_batch(lib, args.n, args.words, seed=rep, unique=args.unique)
        det._cache.clear()  # a fresh batch: nothing cached from earlier batches
        scorer._analyses.clear()
        encode_time[0] = 0.0
        t = time.perf_counter()
        cpu = time.process_time()
        rewards = total_reward(None, comps, scorer=scorer, **cols)
        dt = time.perf_counter() - t
        cpu_dt = time.process_time() - cpu
        rates.append(args.n / dt)
        enc_s.append(encode_time[0])
        tot_s.append(dt)
        analyses = scorer.analyze(comps, **cols)
        segs = [a.parsed.segments[i].embed_text for a in analyses for i in scorer._embedded(a.parsed)]
        stats = {
            "mean_words": round(statistics.mean(len(c.split()) for c in comps), 1),
            "embedded_segments_per_completion": round(len(segs) / args.n, 1),
            "unique_share": round(len(set(segs)) / max(1, len(segs)), 3),
            "mean_total": round(statistics.mean(rewards), 3),
            "cpu_over_wall": round(cpu_dt / dt, 2),
        }
    # Steady state as in training: the segment cache is kept across batches (steps), so segments
    # a model repeats from step to step are embedded once. Generator-dependent: read with care.
    steady = []
    for rep in range(args.repeats):
        comps, cols = make_batch(lib, args.n, args.words, seed=100 + rep, unique=args.unique)
        scorer._analyses.clear()
        t = time.perf_counter()
        total_reward(None, comps, scorer=scorer, **cols)
        steady.append(args.n / (time.perf_counter() - t))
    detection = {}
    if not args.no_detection:
        from reasonact.rewards import report
        from reasonact.rewards.subaction import Detector, calibrate

        pr = report.detection_precision_recall(scorer)
        detection = {k: pr[k] for k in ("precision", "recall", "f1")}
        cal = calibrate(Detector(index, encoder, thresholds={}), lib, ["hmdb51"])
        detection["calibration_f1_hmdb51"] = cal["pooled_f1"]
    out = {
        "bench": "rewards",
        "completions_per_s": round(statistics.median(rates), 1),
        "per_repeat": [round(r, 1) for r in rates],
        "steady_state_completions_per_s": round(statistics.median(steady), 1),
        "batch": args.n,
        **stats,
        "detection": detection,
        "encode_s": round(statistics.median(enc_s), 3),
        "other_s": round(statistics.median(tot_s) - statistics.median(enc_s), 3),
        "setup_s": round(setup_s, 2),
        "encoder_load_or_build_s": encoder_build_s,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "loadavg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "quantize": args.quantize,
        "unique": args.unique,
        "max_seq_length": getattr(encoder, "max_seq_length", None),
        "encoder": args.encoder,
        "model": Path(index.model).name,
        "library_actions": len(lib),
        "python": platform.python_version(),
        "target_per_s": 200,
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
