import textwrap

import numpy as np
import pytest

from reasonact.library import (
    DATASETS,
    LibraryError,
    class_list,
    coverage,
    embeddings,
    load_library,
    normalize_label,
)
from reasonact.library.embeddings import build_index, cohesion, near_duplicates, similar_decompositions

GOOD = """
dataset: hmdb51
actions:
  jump:
    description: A jump.
    aliases: [jumping]
    phases:
      - name: crouch
        share: 0.4
        sub_actions:
          knee_flexion: [bends the knees, sinks into a crouch]
          arm_backswing: [swings the arms back, draws the arms behind the hips]
      - name: flight
        share: 0.3
        sub_actions:
          airborne: [is in the air, both feet leave the ground]
          knee_tuck: [tucks the knees up, pulls the legs under the body]
      - name: landing
        share: 0.3
        sub_actions:
          foot_contact: [lands on both feet, feet touch the ground]
          landing_absorption: [absorbs the landing, cushions the impact]
  sit:
    description: Sitting down.
    phases:
      - name: standing
        share: 0.3
        sub_actions:
          upright_stance: [stands upright, is standing tall]
          arms_relaxed: [arms hang loose, arms relaxed at the sides]
      - name: lowering
        share: 0.4
        sub_actions:
          knee_flexion: [bends the knees, the knees flex]
          hip_flexion: [bends at the hips, folds at the waist]
      - name: seated
        share: 0.3
        sub_actions:
          seated_posture: [sits on the seat, is seated]
          torso_upright_seated: [sits up straight, back upright while seated]
  stand:
    description: Standing up.
    phases:
      - name: seated
        share: 0.3
        sub_actions:
          seated_posture: [sits on the seat, is seated]
          torso_upright_seated: [sits up straight, back upright while seated]
      - name: rising
        share: 0.4
        sub_actions:
          knee_flexion: [straightens the knees, extends the legs]
          hip_flexion: [pushes the hips up, extends the hips]
      - name: standing
        share: 0.3
        sub_actions:
          upright_stance: [stands upright, is standing tall]
          arms_relaxed: [arms hang loose, arms relaxed at the sides]
"""


@pytest.fixture
def small_lib(tmp_path):
    d = tmp_path / "lib"
    d.mkdir()
    (d / "hmdb51.yaml").write_text(GOOD)
    return load_library(d)


def _write(tmp_path, text):
    d = tmp_path / "bad"
    d.mkdir(exist_ok=True)
    (d / "hmdb51.yaml").write_text(textwrap.dedent(text))
    return d


@pytest.mark.parametrize(
    "mutation, message",
    [
        (
            (
                "share: 0.4\n        sub_actions:\n          knee_flexion",
                "share: 1.4\n        sub_actions:\n          knee_flexion",
            ),
            "share",
        ),
        (("- name: flight", "- name: crouch"), "duplicate phase 'crouch'"),
        (
            (
                "knee_tuck: [tucks the knees up, pulls the legs under the body]",
                "knee_tuck: [tucks the knees up]",
            ),
            "at least 2 distinct",
        ),
        (("airborne:", "knee_flexion:"), "already appears in an earlier phase"),
        (("description: A jump.", "description: ''"), "'description'"),
        (("- name: flight", "- name: Flight Phase"), "snake_case"),
        (("dataset: hmdb51", "dataset: hmdb"), "'dataset' must be one of"),
        (("    aliases: [jumping]", "    aliases: [jumping]\n    colour: red"), "unknown field"),
    ],
)
def test_validator_names_file_action_field(tmp_path, mutation, message):
    old, new = mutation
    assert old in GOOD
    d = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(LibraryError) as e:
        load_library(d)
    msg = str(e.value)
    assert message in msg and str(d / "hmdb51.yaml") in msg
    if "dataset" not in message:
        assert "'jump'" in msg


def test_shares_must_sum_to_one(tmp_path):
    d = _write(
        tmp_path,
        GOOD.replace(
            "share: 0.3\n        sub_actions:\n          airborne",
            "share: 0.2\n        sub_actions:\n          airborne",
        ),
    )
    with pytest.raises(LibraryError, match="sum to 0.900"):
        load_library(d)


def test_resolve_any_spelling(small_lib):
    assert small_lib.resolve("jump").key == "hmdb51/jump"
    assert small_lib.resolve("Jumping").key == "hmdb51/jump"  # alias
    assert small_lib.resolve("jump", "synthact").key == "hmdb51/jump"  # SynthAct renders HMDB51 classes
    with pytest.raises(KeyError, match="no library entry"):
        small_lib.resolve("fly")
    assert normalize_label("BaseballPitch") == "baseball pitch"
    assert normalize_label("catching or throwing baseball") == "catching or throwing baseball"
    assert normalize_label("swing_baseball") == "swing baseball"
    assert normalize_label("passing American football (in game)") == "passing american football in game"
    assert normalize_label("YoYo") == "yo yo"


def test_subsets_are_seeded_nonempty_and_nested_in_size(small_lib):
    sizes = []
    for frac in (0.25, 0.5, 0.75, 1.0):
        sub = small_lib.subset(frac, seed=3)
        assert len(sub) == len(small_lib)
        assert all(a.sub_actions for a in sub)
        assert all(abs(sum(p.share for p in a.phases) - 1) < 1e-9 for a in sub)
        sizes.append(sub.stats()["unique_sub_actions"])
        assert sub.stats() == small_lib.subset(frac, seed=3).stats()
    assert sizes == sorted(sizes) and sizes[-1] == small_lib.stats()["unique_sub_actions"]
    with pytest.raises(ValueError):
        small_lib.subset(0)


def test_stats_count_sharing(small_lib):
    s = small_lib.stats()
    assert s["actions"] == 3
    assert s["unique_sub_actions"] == 11  # 6 in jump + 5 more in sit (stand reuses all of sit's)
    assert s["shared_across_actions"] == 6


def test_similar_decompositions_flag_sit_stand(small_lib):
    flagged = similar_decompositions(small_lib)
    assert flagged == [{"a": "hmdb51/sit", "b": "hmdb51/stand", "jaccard": 1.0, "same_order": False}]


def test_index_cache_skips_the_encoder(small_lib, tmp_path, monkeypatch):
    index = build_index(small_lib, cache_dir=tmp_path / "cache")
    assert index.matrix.shape == (sum(len(s.phrasings) for a in small_lib for s in a.sub_actions), 384)
    assert np.allclose(np.linalg.norm(index.matrix, axis=1), 1, atol=1e-5)

    def boom(*a, **k):
        raise AssertionError("the encoder must not be loaded when the cache exists")

    monkeypatch.setattr(embeddings, "load_encoder", boom)
    again = build_index(small_lib, cache_dir=tmp_path / "cache")
    assert np.array_equal(again.matrix, index.matrix) and again.phrasings == index.phrasings
    # a changed library gets a new cache entry
    assert embeddings.cache_path(small_lib.subset(0.5), index.model, tmp_path) != embeddings.cache_path(
        small_lib, index.model, tmp_path
    )


def test_cohesion_and_near_duplicates(small_lib, tmp_path):
    index = build_index(small_lib, cache_dir=tmp_path / "cache")
    c = cohesion(small_lib, index)
    assert c["checked"] == 18 and 0 <= c["share"] <= 1
    dups = near_duplicates(index, threshold=0.99)
    assert all(d["a"] != d["b"] for d in dups)


# ---- the real library (data/library) ---------------------------------------------------------


@pytest.fixture(scope="module")
def real_lib():
    return load_library()


def test_every_benchmark_class_resolves(real_lib):
    cov = coverage(real_lib)
    for ds in DATASETS:
        assert cov[ds]["missing"] == [], f"{ds}: classes without an entry: {cov[ds]['missing'][:10]}"
        assert cov[ds]["alias_collisions"] == []
        for label in class_list(ds):
            assert real_lib.resolve(label, ds).dataset == ds
    assert len(real_lib) == 51 + 101 + 400


def test_real_library_examples(real_lib):
    assert real_lib.resolve("swing_baseball", "hmdb51").key == "hmdb51/swing_baseball"
    assert real_lib.resolve("BaseballPitch", "ucf101").key == "ucf101/BaseballPitch"
    assert real_lib.resolve("catching or throwing baseball", "kinetics400").dataset == "kinetics400"
    stats = real_lib.stats()
    assert stats["unique_sub_actions"] > 1000
    assert stats["shared_across_datasets"] > 50
    assert set(stats["phases_per_action"]) <= {3, 4, 5}
    assert set(stats["sub_actions_per_phase"]) <= {2, 3, 4, 5}


@pytest.mark.slow
def test_real_library_phrasing_cohesion(real_lib):
    c = cohesion(real_lib, build_index(real_lib))
    assert c["share"] >= 0.9, c["failures"][:10]


def test_timed_load_keeps_the_cache_and_its_thresholds(small_lib, tmp_path):
    cache = tmp_path / "cache"
    index = build_index(small_lib, cache_dir=cache)
    index.thresholds = {"knee_flexion": 0.55}
    embeddings.save_index(index, embeddings.cache_path(small_lib, index.model, cache))
    times = embeddings.timed_load(small_lib, cache_dir=cache)
    assert times["cache"] == "loaded" and times["first_load_s"] == index.build_seconds > 0
    assert times["first_load_s"] > times["cached_load_s"] > 0
    assert build_index(small_lib, cache_dir=cache).thresholds == {"knee_flexion": 0.55}


def test_timed_load_builds_a_missing_cache_once(small_lib, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    times = embeddings.timed_load(small_lib, cache_dir=cache)
    assert times["cache"] == "built now" and times["speedup"] > 1
    monkeypatch.setattr(embeddings, "encode", lambda *a, **k: pytest.fail("a cached library was re-embedded"))
    again = embeddings.timed_load(small_lib, cache_dir=cache)
    assert again["cache"] == "loaded" and again["first_load_s"] == times["first_load_s"]


def test_validate_reports_every_error_in_one_run(tmp_path):
    """Three problems in two places (an action field, a phase-level unknown key, a phrasing list): one run
    names them all, each with file, action, phase and field."""
    bad = GOOD.replace("description: A jump.", "description: ''", 1)
    bad = bad.replace("- name: flight", "- name: flight\n        colour: red", 1)
    bad = bad.replace(
        "knee_tuck: [tucks the knees up, pulls the legs under the body]", "knee_tuck: [tucks the knees up]", 1
    )
    assert bad.count("colour") == 1
    with pytest.raises(LibraryError) as e:
        load_library(_write(tmp_path, bad))
    errors, path = e.value.errors, str(tmp_path / "bad" / "hmdb51.yaml")
    assert len(errors) == 3 and all(err.startswith(path) and "action 'jump'" in err for err in errors)
    assert any("field 'description'" in err for err in errors)
    assert any("phases[1] (flight): unknown field(s) ['colour']" in err for err in errors)
    assert any("phases[1] (flight): sub-action 'knee_tuck' needs at least 2" in err for err in errors)
    assert str(e.value).startswith("3 problems in the sub-action library")
