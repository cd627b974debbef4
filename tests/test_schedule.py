"""bench/schedule.py: replaying ``--jobs``' schedule on recorded job times, and the order it starts jobs in."""

import pytest

from bench.schedule import replay
from reasonact.eval.parallel import chain_heights


def test_replay_times_both_orders_on_two_workers():
    seconds = {"eval1": 10.0, "eval2": 10.0, "fre": 10.0, "vsft": 10.0}
    after = {"eval1": [], "eval2": [], "fre": [], "vsft": ["fre"]}
    height = chain_heights(seconds, after)
    assert height == {"eval1": 1, "eval2": 1, "fre": 2, "vsft": 1}
    # in row order both evaluations go first and V-SFT runs alone at the end
    flat = dict.fromkeys(seconds, 0)
    assert replay(seconds, after, 2, flat) == 30.0
    assert replay(seconds, after, 2, height) == 20.0
    assert replay(seconds, after, 1, flat) == 40.0  # one worker: the sum
    with pytest.raises(ValueError, match="never start"):
        replay(seconds, {**after, "fre": ["vsft"]}, 2, flat)
