"""Process-aware rewards (VideoP2R's PA-GRPO): one reward per span of the completion.

The process-aware completion is ``<observation>…</observation><think>…</think><answer>…</answer>``.
The trainer gives the observation tokens the advantage of the **perception** reward and the
think/answer tokens the advantage of the **reasoning** reward, each normalised within its group.

- perception (range [0, 1]): R_sub computed on the observation block only — did the model *see*
  the ground-truth sub-actions, in order? No observation block: 0.
- reasoning (range [0, 1]): ``(W_ACC * accuracy + W_TC * C_tc(think)) / (W_ACC + W_TC)`` with
  C_tc computed on the think block only (C_cross still checks the answer against it). The weights
  are the total reward's defaults (accuracy 1.0, C_tc 0.5), normalised so both spans' rewards
  share the range [0, 1].

VideoP2R judges perception with an LLM against reference descriptions; ReasonAct has exact
sub-action ground truth instead, so the sub-action detector is the perception judge.
"""

from __future__ import annotations

from reasonact.rewards.functions import dataset_columns, scorer_or_default

W_ACC, W_TC = 1.0, 0.5


def process_rewards(
    prompts=None, completions=(), scorer=None, w_acc: float = W_ACC, w_tc: float = W_TC, **kwargs
) -> dict[str, list[float]]:
    """``{"perception": [...], "reasoning": [...]}``, one value per completion in each."""
    analyses = scorer_or_default(scorer).analyze(completions, **dataset_columns(kwargs))
    norm = (w_acc + w_tc) or 1.0
    perception, reasoning = [], []
    for a in analyses:
        c = a.components
        has_obs = "observation" in a.parsed.blocks
        perception.append(c["perception_subaction"] if has_obs else 0.0)
        reasoning.append(float((w_acc * c["accuracy"] + w_tc * c["reasoning_temporal_consistency"]) / norm))
    return {"perception": perception, "reasoning": reasoning}


def perception_reward(prompts=None, completions=(), **kwargs) -> list[float]:
    return process_rewards(prompts, completions, **kwargs)["perception"]


def reasoning_reward(prompts=None, completions=(), **kwargs) -> list[float]:
    return process_rewards(prompts, completions, **kwargs)["reasoning"]
