"""Notebooks run headless with papermill on the tiny profile; tests assert on their metrics.json."""

import json

import pytest

from reasonact.runner import run_notebooks


@pytest.mark.notebook
@pytest.mark.slow
def test_00_data(tmp_path):
    run_notebooks("tiny", run=tmp_path, start="00", end="00")
    m = json.loads((tmp_path / "00_data" / "metrics.json").read_text())
    assert m["num_frames"] == 16 and m["frame_size"] == 56
    assert m["video_tokens"] == 8 * (56 // 28) ** 2
    assert 0 < m["model_parameters"] < 3_000_000
    assert m["generated_tokens"] > 0
