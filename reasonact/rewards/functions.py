"""The reward functions with TRL's signature ``f(prompts, completions, **kwargs) -> list[float]``.

kwargs are the dataset columns (``label``, ``dataset``, ``phases``, ``fps``, ``num_frames``,
``duration_s``, ``frame_times``, ``num_sampled_frames``, ``options``; see ``gt.py``), each a list
aligned with the completions, plus TRL's extras (``trainer_state``, ``completion_ids``,
``log_extra``, ``log_metric``, ...), which are accepted and ignored except where stated. Every
function also takes ``scorer=`` (default: ``default_scorer()``).

| name                   | range        | what                                                         |
|------------------------|--------------|--------------------------------------------------------------|
| format / format_pa     | {0, 1}       | ``basic.py`` (no partial credit)                             |
| accuracy               | {0, 1}       | ``basic.py``                                                 |
| subaction              | [0, 1]       | R_sub, ``subaction.py``                                      |
| c_seq, c_cross, c_bind | [0, 1]       | ``temporal.py``                                              |
| temporal_consistency   | [0, 1]       | C_tc = mean(C_seq, C_cross, C_bind)                          |
| total                  | [0, sum(w)]  | ``sum_k w_k * component_k`` (non-negative weights)           |

**Default weights** (``DEFAULT_WEIGHTS``; the recipe passes its own). The paper writes
``R = w_acc*acc + w_sub*R_sub + w_fmt*fmt + w_tc*C_tc`` and says its coefficients come from a
hyperparameter search, without giving them. So: accuracy 1.0 (the task reward, as in DeepSeek-R1
and Video-R1, which score accuracy 1/0), format 0.25 (Video-R1 adds format with weight 1; smaller
here because V-SFT already teaches the format and it should not compete with accuracy),
sub-action 0.5 and temporal consistency 0.5 (dense shaping terms kept below accuracy so that
reasoning well about the wrong action never beats the right answer: 0.5 + 0.25 + 0.5 < 1 + 0.25).
"""

from __future__ import annotations

import math

from reasonact.config import DEFAULT_WEIGHTS
from reasonact.rewards import basic
from reasonact.rewards.gt import row
from reasonact.rewards.parse import completion_text, find_blocks
from reasonact.rewards.scorer import Scorer, default_scorer

WEIGHT_ALIASES = {
    "acc": "accuracy",
    "w_acc": "accuracy",
    "sub": "subaction",
    "r_sub": "subaction",
    "w_sub": "subaction",
    "fmt": "format",
    "w_fmt": "format",
    "tc": "temporal_consistency",
    "c_tc": "temporal_consistency",
    "w_tc": "temporal_consistency",
}
MAIN_COMPONENTS = ("format", "accuracy", "subaction", "c_seq", "c_cross", "c_bind", "temporal_consistency")
TRL_EXTRAS = ("trainer_state", "completion_ids", "log_extra", "log_metric", "environments")


def scorer_or_default(scorer) -> Scorer:
    return scorer if scorer is not None else default_scorer()


def dataset_columns(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if k not in TRL_EXTRAS}


def normalize_weights(weights: dict | None) -> dict[str, float]:
    """Recipe weights (any alias: acc/sub/fmt/tc, w_acc...) -> canonical component names.
    Unknown names raise (a typo in a recipe must not silently drop a reward)."""
    out = dict(DEFAULT_WEIGHTS) if weights is None else {}
    for k, v in (weights or {}).items():
        name = WEIGHT_ALIASES.get(k, k)
        if name not in MAIN_COMPONENTS and name not in ("format_pa", "perception", "reasoning"):
            raise KeyError(f"unknown reward component {k!r}; known: {', '.join(MAIN_COMPONENTS)}")
        v = float(v)
        if not math.isfinite(v) or v < 0:
            raise ValueError(f"reward weight {k}={v} must be finite and >= 0")
        out[name] = v
    return out


def weighted_total(components: dict, weights: dict | None = None) -> float:
    """The total reward: ``sum_k w_k * component_k`` over the (normalised) weights; a missing or
    ``None`` component counts 0. The one place the total is computed (T-GRPO, reports, inspector)."""
    return float(sum(w * float(components.get(k) or 0.0) for k, w in normalize_weights(weights).items()))


def format_reward(prompts=None, completions=(), process_aware: bool = False, **kwargs) -> list[float]:
    """1 for a well-formed ``<think>…</think><answer>…</answer>`` (with ``process_aware``: the
    ``<observation>`` block first), else 0."""
    return [float(basic.format_ok(completion_text(c), process_aware)) for c in completions]


def format_pa_reward(prompts=None, completions=(), **kwargs) -> list[float]:
    return format_reward(prompts, completions, process_aware=True)


def accuracy_reward(prompts=None, completions=(), scorer=None, **kwargs) -> list[float]:
    """1 when the answer names the label (normalisation, aliases, option letters: ``basic.py``)."""
    lib = scorer_or_default(scorer).library
    n = len(completions)
    out = []
    for i, c in enumerate(completions):
        r = row(kwargs, i, n)
        text = completion_text(c)
        span = find_blocks(text).get("answer")
        answer = text[span[0] : span[1]] if span else None
        out.append(float(basic.is_correct(answer, r.get("label"), r.get("dataset"), r.get("options"), lib)))
    return out


def components(prompts=None, completions=(), scorer=None, **kwargs) -> list[dict[str, float]]:
    """Every component of every completion (one batch pass; later calls hit the cache)."""
    return [
        dict(a.components) for a in scorer_or_default(scorer).analyze(completions, **dataset_columns(kwargs))
    ]


def _component(name: str):
    def reward(prompts=None, completions=(), scorer=None, **kwargs) -> list[float]:
        return [c[name] for c in components(prompts, completions, scorer, **kwargs)]

    reward.__name__ = f"{name}_reward"
    reward.__qualname__ = reward.__name__
    reward.__doc__ = f"The ``{name}`` component (range [0, 1]); see ``reasonact.rewards.functions``."
    return reward


subaction_reward = _component("subaction")
c_seq_reward = _component("c_seq")
c_cross_reward = _component("c_cross")
c_bind_reward = _component("c_bind")
temporal_consistency_reward = _component("temporal_consistency")


def reward_components(
    prompts=None,
    completions=(),
    weights: dict | None = None,
    scorer=None,
    process_aware: bool = False,
    **kwargs,
) -> list[dict[str, float]]:
    """Per completion: the main components, ``total`` and, with ``process_aware``, the PA format.
    The ``format`` entry of the total is the process-aware format when ``process_aware``."""
    normalize_weights(weights)  # a bad weight fails before any scoring
    out = []
    for c in components(prompts, completions, scorer, **kwargs):
        row = {k: c[k] for k in MAIN_COMPONENTS}
        if process_aware:
            row["format"] = c["format_pa"]
        row["total"] = weighted_total({**c, **row}, weights)
        out.append(row)
    return out


def total_reward(
    prompts=None,
    completions=(),
    weights: dict | None = None,
    scorer=None,
    process_aware: bool = False,
    log_metric=None,
    log_extra=None,
    **kwargs,
) -> list[float]:
    """The weighted sum. With TRL's ``log_metric``/``log_extra``, every component is logged by name
    (``rewards/<component>`` batch means, and one completions-table column per component)."""
    rows = reward_components(prompts, completions, weights, scorer, process_aware, **kwargs)
    if rows:
        for name in (*MAIN_COMPONENTS, "total"):
            values = [r[name] for r in rows]
            if callable(log_metric):
                log_metric(f"rewards/{name}", float(sum(values) / len(values)))
            if callable(log_extra) and name != "total":
                log_extra(name, values)
    return [r["total"] for r in rows]
