"""T-GRPO's temporal-contrast bonus (Video-R1), decided per prompt group.

For each prompt, the policy answers twice: a group of completions on the frames in order and a
group on the same frames shuffled in time. With p the ordered group's accuracy (mean over its
completions) and p~ the shuffled group's::

    bonus_i = BONUS   if completion i is ordered, correct, and p > MU * p~
            = 0       otherwise (always 0 for shuffled completions: they are never rewarded)

``MU = 1.0`` as the paper states the rule ("ordered beats shuffled"); Video-R1's released code
used 0.8 and ``>=`` (``inclusive=True, mu=0.8`` reproduces it). ``BONUS = 0.3`` as in both. Strict
``>`` by default, so a prompt that is solved equally well without temporal order (p = p~ = 1)
earns nothing: the bonus pays for *using* order. A group without shuffled completions gets no
bonus. Video-R1 compared means over the whole batch, which is only per prompt because its batch
size was 1; here each prompt group is compared with its own shuffled group, at any batch size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence

from reasonact.rewards.functions import accuracy_reward

MU = 1.0
BONUS = 0.3
CORRECT_AT = 0.5  # accuracy is 1/0; anything >= 0.5 counts as correct (robust to soft accuracies)


def _flag(x) -> bool:
    if isinstance(x, str):
        return x.strip().lower() in ("1", "true", "yes", "shuffled")
    return bool(x)


def contrast_bonus(
    ordered_acc: Sequence[float],
    shuffled_acc: Sequence[float],
    ordered_groups: Sequence[Hashable] | None = None,
    shuffled_groups: Sequence[Hashable] | None = None,
    mu: float = MU,
    bonus: float = BONUS,
    inclusive: bool = False,
) -> list[float]:
    """Bonus for each *ordered* completion. Groups default to one group for everything."""
    og = list(ordered_groups) if ordered_groups is not None else [0] * len(ordered_acc)
    sg = list(shuffled_groups) if shuffled_groups is not None else [0] * len(shuffled_acc)
    if len(og) != len(ordered_acc) or len(sg) != len(shuffled_acc):
        raise ValueError("group ids must align with the accuracies")
    o_sum, o_n, s_sum, s_n = defaultdict(float), defaultdict(int), defaultdict(float), defaultdict(int)
    for g, a in zip(og, ordered_acc):
        o_sum[g] += float(a)
        o_n[g] += 1
    for g, a in zip(sg, shuffled_acc):
        s_sum[g] += float(a)
        s_n[g] += 1
    wins = {}
    for g in o_n:
        if not s_n.get(g):
            wins[g] = False
            continue
        p, q = o_sum[g] / o_n[g], s_sum[g] / s_n[g]
        wins[g] = p >= mu * q if inclusive else p > mu * q
    return [bonus if wins[g] and float(a) >= CORRECT_AT else 0.0 for g, a in zip(og, ordered_acc)]


def group_keys(n: int, kwargs: dict, prompts=None) -> list:
    """Prompt-group id of each completion: the ``group_id`` (or ``prompt_id``) column when given;
    otherwise the prompt text together with label and video, which separates clips that share a
    question."""
    for col in ("group_id", "prompt_id"):
        v = kwargs.get(col)
        if isinstance(v, list | tuple) and len(v) == n:
            return [str(x) for x in v]
    prompts = list(prompts) if isinstance(prompts, list | tuple) and len(prompts) == n else [None] * n
    cols = [
        kwargs.get(c) if isinstance(kwargs.get(c), list | tuple) and len(kwargs.get(c)) == n else [None] * n
        for c in ("label", "video", "seed")
    ]
    return [repr((prompts[i], *[c[i] for c in cols])) for i in range(n)]


def temporal_contrast_reward(
    prompts=None,
    completions=(),
    is_shuffled=None,
    mu: float = MU,
    bonus: float = BONUS,
    inclusive: bool = False,
    scorer=None,
    **kwargs,
) -> list[float]:
    """TRL-signature form for a batch holding both groups: ``is_shuffled`` (a column, True for
    completions generated from shuffled frames) splits them, ``group_id`` (or the prompt, see
    ``group_keys``) pairs them. Accuracy comes from ``accuracy_reward``. Shuffled completions
    get 0; without ``is_shuffled`` every completion gets 0 (no shuffled group, no bonus)."""

    n = len(completions)
    if not isinstance(is_shuffled, list | tuple) or len(is_shuffled) != n:
        return [0.0] * n
    acc = accuracy_reward(prompts, completions, scorer=scorer, **kwargs)
    groups = group_keys(n, kwargs, prompts)
    shuffled = [_flag(x) for x in is_shuffled]
    o_idx = [i for i in range(n) if not shuffled[i]]
    s_idx = [i for i in range(n) if shuffled[i]]
    b = contrast_bonus(
        [acc[i] for i in o_idx],
        [acc[i] for i in s_idx],
        [groups[i] for i in o_idx],
        [groups[i] for i in s_idx],
        mu,
        bonus,
        inclusive,
    )
    out = [0.0] * n
    for i, v in zip(o_idx, b):
        out[i] = v
    return out
