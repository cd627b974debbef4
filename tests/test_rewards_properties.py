"""Property-based tests: every reward, on any text and any (odd) columns, returns finite values in
its documented range and never raises.

Most cases run with a hashing bag-of-words encoder (the same code path, microseconds per text) so
that thousands of cases fit in well under a minute on 2 cores; a smaller set runs the real MiniLM.
"""

import math
import re
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reasonact.library.embeddings import EmbeddingIndex, build_index, index_rows
from reasonact.library.encoders import encode
from reasonact.rewards import RANGES, REWARDS, Scorer, examples, process_rewards
from reasonact.train.tgrpo import shuffled_frame_bonus

SETTINGS = dict(
    deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


class HashEncoder:
    """Bag of words hashed into 64 dimensions: similar wording -> similar vectors, instantly."""

    dim = 64

    def get_embedding_dimension(self):
        return self.dim

    def encode(
        self,
        texts,
        batch_size=None,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    ):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, t in enumerate(texts):
            for w in re.findall(r"\w+", t.lower()):
                out[i, zlib.crc32(w.encode()) % self.dim] += 1.0
        n = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(n > 0, n, 1.0)


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return examples.mini_library(tmp_path_factory.mktemp("lib"))


@pytest.fixture(scope="module")
def fast(lib):
    enc = HashEncoder()
    keys, names, phrasings = index_rows(lib)
    index = EmbeddingIndex(keys, names, phrasings, encode(phrasings, enc), "hash", lib.content_hash())
    return Scorer(lib, index, enc)


@pytest.fixture(scope="module")
def real(lib, tmp_path_factory):
    return Scorer(lib, build_index(lib, cache_dir=tmp_path_factory.mktemp("cache")))


# ---- strategies ------------------------------------------------------------------------------------

PHRASINGS = [p for a in examples.MINI_LIBRARY.split("\n") for p in re.findall(r"\[([^\]]+)\]", a)]
TAGS = [
    "<think>",
    "</think>",
    "<answer>",
    "</answer>",
    "<observation>",
    "</observation>",
    "<Think >",
    "</ answer>",
    "<think><think>",
    "</think></think>",
]
fragments = st.one_of(
    st.sampled_from(TAGS),
    st.sampled_from(PHRASINGS),
    st.builds(
        lambda a, b, sep: f"Frames {a}{sep}{b}:",
        st.integers(-5, 10**9),
        st.integers(-5, 10**7),
        st.sampled_from(["-", "–", " to ", " and ", ""]),
    ),
    st.builds(lambda a: f"frame {a}", st.integers(0, 10**12)),
    st.sampled_from(
        [
            "jump",
            "kick",
            "sit",
            "stand",
            "this is a jump",
            "not a kick",
            "he",
            "she",
            "two people",
            "one person",
            "Overall,",
            "crouch phase",
            "phase 2 (takeoff)",
            ". ",
            ", then ",
            "\n",
            ";",
            ":",
            "and",
            "Option B",
            "(A)",
            "  ",
            "…",
            "🤸",
            "İ",
            "ß",
        ]
    ),
    st.text(max_size=40),
)
structured = st.lists(fragments, max_size=40).map("".join)
# Chains that look like real completions, wrapped in well-formed, missing, unclosed or nested tags.
sentence = st.builds(
    lambda a, b, subj, p, end: f"Frames {a}-{b}: {subj} {p}{end}",
    st.integers(-3, 40),
    st.integers(-3, 40),
    st.sampled_from(["he", "she", "the person", "two people", ""]),
    st.sampled_from(PHRASINGS),
    st.sampled_from([". ", ", and ", "\n", "", "; "]),
)
body = st.lists(st.one_of(sentence, fragments), min_size=1, max_size=12).map("".join)
WRAPS = [
    "<think>{b}</think><answer>{a}</answer>",
    "<observation>{b}</observation><think>{b}</think><answer>{a}</answer>",
    "{b}<answer>{a}</answer>",
    "<think>{b}<answer>{a}</answer>",
    "<think><think>{b}</think></think><answer>{a}",
    "{b}",
    "<answer>{a}</answer><think>{b}</think>",
    "<think>{b} This is a {a}.</think><answer>{a}</answer>",
]
chains = st.builds(
    lambda w, b, a: w.format(b=b, a=a),
    st.sampled_from(WRAPS),
    body,
    st.one_of(st.sampled_from(["jump", "kick", "sit", "B", "jumping", "Option A", ""]), st.text(max_size=10)),
)
texts = st.one_of(st.text(max_size=300), structured, chains, chains)
labels = st.one_of(
    st.sampled_from(["jump", "sit", "stand", "kick", "wave", "clap", "ApplyEyeMakeup", "B", ""]),
    st.text(max_size=12),
    st.none(),
    st.integers(),
)
numbers = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-10, 10**9),
    st.sampled_from([0, 1, 16, 2.5]),
    st.text(max_size=4),
)
phase = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["crouch", "takeoff", "flight", "landing"]), st.text(max_size=8)),
        "start_s": numbers,
        "end_s": numbers,
        "sub_actions": st.one_of(
            st.lists(st.sampled_from(["knee_flexion", "airborne", "x"]), max_size=3),
            st.none(),
            st.text(max_size=5),
        ),
    }
)
phases = st.one_of(st.none(), st.lists(phase, max_size=5), st.text(max_size=20), st.just([]), st.integers())
row = st.fixed_dictionaries(
    {
        "label": labels,
        "dataset": st.one_of(
            st.sampled_from(["synthact", "hmdb51", "ucf101", "kinetics400"]), st.none(), st.text(max_size=6)
        ),
        "phases": phases,
        "fps": numbers,
        "num_frames": numbers,
        "duration_s": numbers,
        "frame_times": st.one_of(st.none(), st.lists(numbers, max_size=20)),
        "num_sampled_frames": numbers,
        "options": st.one_of(st.none(), st.lists(st.text(max_size=10), max_size=5), st.text(max_size=5)),
    }
)
completion_forms = st.one_of(
    texts,
    texts.map(lambda t: [{"role": "assistant", "content": t}]),
    texts.map(lambda t: [{"role": "assistant", "content": [{"type": "text", "text": t}]}]),
    st.one_of(st.none(), st.integers(), st.just({"content": None}), st.just([1, 2])),
)


def check(name, values, n):
    lo, hi = RANGES[name]
    assert isinstance(values, list) and len(values) == n, name
    for v in values:
        assert isinstance(v, float) or isinstance(v, int), (name, v)
        assert math.isfinite(v) and lo - 1e-9 <= v <= hi + 1e-9, (name, v)


def run_all(scorer, completions, rows):
    n = len(completions)
    cols = {k: [r[k] for r in rows] for k in rows[0]} if rows else {}
    for name, fn in REWARDS.items():
        check(name, fn(None, completions, scorer=scorer, **cols), n)
    pa = process_rewards(None, completions, scorer=scorer, **cols)
    check("perception", pa["perception"], n)
    check("reasoning", pa["reasoning"], n)


# ---- properties ------------------------------------------------------------------------------------


@settings(max_examples=400, **SETTINGS)
@given(text=texts)
def test_any_text_plain_columns(fast, text):
    run_all(
        fast,
        [text],
        [
            {
                "label": "jump",
                "dataset": "synthact",
                "phases": None,
                "fps": 10,
                "num_frames": 32,
                "duration_s": 3.2,
                "frame_times": None,
                "num_sampled_frames": 16,
                "options": None,
            }
        ],
    )


@settings(max_examples=600, **SETTINGS)
@given(batch=st.lists(st.tuples(completion_forms, row), min_size=1, max_size=4))
def test_any_completion_any_columns(fast, batch):
    run_all(fast, [c for c, _ in batch], [r for _, r in batch])


@settings(max_examples=40, **SETTINGS)
@given(
    parts=st.lists(
        st.sampled_from(PHRASINGS + TAGS + ["Frames 1-4:", ". ", "\n"]), min_size=200, max_size=3000
    )
)
def test_very_long_completions(fast, parts):
    text = " ".join(parts)
    run_all(fast, [text, "", text[::-1]], [{"label": "sit", "dataset": "synthact"}] * 3)


@settings(max_examples=300, **SETTINGS)
@given(completion=completion_forms, r=row)
def test_components_are_in_unit_range(fast, completion, r):
    for a in fast.analyze([completion], **{k: [v] for k, v in r.items()}):
        for name, v in a.components.items():
            assert math.isfinite(v) and 0.0 <= v <= 1.0, (name, v)
        text = a.parsed.text
        for d in a.detections:
            assert text[d.start : d.end] == d.text


@settings(max_examples=600, **SETTINGS)
@given(
    ordered=st.lists(st.booleans(), max_size=12),
    shuffled=st.lists(st.booleans(), max_size=12),
    mu=st.floats(0.0, 2.0),
)
def test_shuffled_frame_bonus_properties(ordered, shuffled, mu):
    bonus = shuffled_frame_bonus(ordered, shuffled, mu=mu)
    assert len(bonus) == len(ordered)
    assert all(b in (0.0, 0.3) for b in bonus)
    assert all(b == 0.0 or ok for ok, b in zip(ordered, bonus))  # only correct ordered completions
    if not shuffled:
        assert not any(bonus)  # no shuffled group, no bonus
    # the bonus is paid to every correct completion of the group or to none
    assert len({b for ok, b in zip(ordered, bonus) if ok}) <= 1


@settings(max_examples=30, **SETTINGS)
@given(batch=st.lists(st.tuples(completion_forms, row), min_size=1, max_size=3))
def test_real_encoder_any_completion(real, batch):
    run_all(real, [c for c, _ in batch], [r for _, r in batch])
