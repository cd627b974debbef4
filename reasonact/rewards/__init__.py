"""Rewards for T-GRPO: pure functions with TRL's signature, in a registry by name.

    from reasonact.rewards import get_reward, reward_names
    reward_funcs = [get_reward("total", weights=recipe.reward_weights)]   # or one per component
    total = get_reward("total")(prompts, completions, label=..., dataset=..., phases=...)

Every function is ``f(prompts, completions, **kwargs) -> list[float]``, never raises on any
completion text and returns finite values in its documented range (``functions.py`` has the
table). Modules: ``parse`` (tags, answer, segments, frame references), ``gt`` (ground truth from
the columns), ``basic`` (format, accuracy), ``subaction`` (detector, calibration, R_sub),
``temporal`` (C_seq, C_cross, C_bind), ``process`` (PA split),
``scorer`` (one batch pass for all components), ``report`` (score a file, tables, figures, the
inspector's HTML), ``examples`` (a six-class library, template completions, labelled sentences).
"""

from __future__ import annotations

import functools

from reasonact.rewards.functions import (
    DEFAULT_WEIGHTS,
    accuracy_reward,
    c_bind_reward,
    c_cross_reward,
    c_seq_reward,
    format_pa_reward,
    format_reward,
    reward_components,
    subaction_reward,
    temporal_consistency_reward,
    total_reward,
)
from reasonact.rewards.process import perception_reward, process_rewards, reasoning_reward
from reasonact.rewards.report import score_file, score_records
from reasonact.rewards.scorer import Scorer, default_scorer, scorer_for, set_default_scorer

REWARDS = {
    "format": format_reward,
    "format_pa": format_pa_reward,
    "accuracy": accuracy_reward,
    "subaction": subaction_reward,
    "c_seq": c_seq_reward,
    "c_cross": c_cross_reward,
    "c_bind": c_bind_reward,
    "temporal_consistency": temporal_consistency_reward,
    "perception": perception_reward,
    "reasoning": reasoning_reward,
    "total": total_reward,
}
RANGES = {name: (0.0, 1.0) for name in REWARDS}
RANGES["total"] = (0.0, sum(DEFAULT_WEIGHTS.values()))  # with the default weights: [0, sum(w)]


def reward_names() -> list[str]:
    return list(REWARDS)


def get_reward(name: str, **bound):
    """The reward function ``name``; keyword arguments are bound (``scorer=``, ``weights=``,
    ``mu=``...). The returned function keeps a ``__name__`` (TRL logs rewards by it)."""
    try:
        fn = REWARDS[name]
    except KeyError:
        raise KeyError(f"unknown reward {name!r}; choose from {', '.join(REWARDS)}") from None
    if not bound:
        return fn

    @functools.wraps(fn)
    def reward(prompts=None, completions=(), **kwargs):
        return fn(prompts, completions, **{**bound, **kwargs})

    reward.__name__ = name
    return reward


__all__ = [
    "REWARDS",
    "RANGES",
    "DEFAULT_WEIGHTS",
    "Scorer",
    "default_scorer",
    "get_reward",
    "process_rewards",
    "reward_components",
    "reward_names",
    "score_file",
    "score_records",
    "scorer_for",
    "set_default_scorer",
]
