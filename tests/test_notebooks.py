"""Notebooks run headless with papermill on the tiny profile; tests assert on their metrics.json.

They run in order into one run folder (as `make pipeline` does), since later notebooks read what
earlier ones wrote. Each notebook is also executed by `reasonact run`, so this tests the runner too.
"""

import json

import pytest

from reasonact.runner import run_notebooks

pytestmark = [pytest.mark.notebook, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tmp_path_factory.mktemp("run")


def _metrics(run, stage):
    return json.loads((run / stage / "metrics.json").read_text())


def test_00_data(run):
    run_notebooks("tiny", run=run, start="00", end="00")
    m = _metrics(run, "00_data")
    assert m["synthact_classes"] >= 12 and m["synthact_clips"] > 0
    assert m["sit_stand_reversed"] is True
    assert m["num_frames"] == 16 and m["frame_size"] == 56
    assert m["video_tokens"] == 8 * (56 // 28) ** 2
    assert 0 < m["model_parameters"] < 3_000_000
    assert m["generated_tokens"] > 0


def test_01_subaction_library(run):
    run_notebooks("tiny", run=run, start="01", end="01")
    m = _metrics(run, "01_subaction_library")
    assert m["actions"] == 552 and m["classes_missing"] == 0
    assert m["unique_sub_actions"] > 1000 and m["shared_across_datasets"] > 0
    assert m["phrasing_cohesion_share"] >= 0.9
    assert m["embedding_cache_speedup"] >= 10
    r = m["example_rewards"]
    assert r["good"] > r["shuffled"] > r["missing"] > r["wrong"]
    assert (run / "01_subaction_library" / "embedding_map.png").is_file()


def test_02_cot_generation(run):
    run_notebooks("tiny", run=run, start="02", end="02")
    m = _metrics(run, "02_cot_generation")
    assert m["kept"] > 0 and m["kept_share_of_teacher_chains"] >= 0.9
    assert sum(m["rejected_by_rule"].values()) == m["rejected"] > 0
    assert m["fre_rows"] > 0
    from datasets import load_from_disk

    assert len(load_from_disk(m["cot_dataset"])) == m["kept"]
