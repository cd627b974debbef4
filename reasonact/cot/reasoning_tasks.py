"""Generated text tasks with verifiable answers: the tiny profile's FRE data (offline, seeded).

    examples = generate_tasks(600, actions=list(library), seed=0)
    assert all(verify(e, library) for e in examples)

Four kinds, in turn: multi-step arithmetic (worked steps with every intermediate value), ordering the
phases of a library action, "which sub-action comes right after X" (the library's order), and
comparisons (which phase spans more frames; which fraction is larger). Every example keeps its
parameters in ``meta`` (JSON) and ``verify`` recomputes the answer from them alone — the arithmetic
with exact fractions, the action tasks from the library — so a wrong answer can never slip in.
Without a library only arithmetic and fractions are made.
"""

from __future__ import annotations

import ast
import json
import operator
import random
from fractions import Fraction

from reasonact.cot.teacher import with_subject

GENERATED = "generated"  # the source name of these tasks in the FRE mixture
HINT = "Answer as <think>reasoning</think><answer>answer</answer>."


def example(source: str, ident, question: str, think: str, answer: str, meta: dict | None = None) -> dict:
    """A chat example: the user's question (with the format hint) and the assistant's chain."""
    think = " ".join(str(think).split()) if "\n" not in str(think) else str(think).strip()
    chain = f"<think>{think}</think><answer>{answer}</answer>"
    return {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": f"{question.strip()}\n{HINT}"}]},
            {"role": "assistant", "content": [{"type": "text", "text": chain}]},
        ],
        "source": source,
        "id": str(ident),
        "answer": str(answer),
        "meta": json.dumps(meta or {}),
    }


_ARITH = (
    (
        "A crate holds {a} rows of {b} bottles. {c} bottles break and {d} new ones are added. "
        "How many bottles are in the crate?",
        "{a}*{b}-{c}+{d}",
        [
            "{a} rows of {b} bottles make {a} x {b} = {v0}.",
            "After {c} break: {v0} - {c} = {v1}.",
            "Adding {d}: {v1} + {d} = {v2}.",
        ],
    ),
    (
        "A clip has {a} frames per second and lasts {b} seconds. The first {c} frames are cut. "
        "How many frames are left?",
        "{a}*{b}-{c}",
        ["{a} x {b} = {v0} frames.", "{v0} - {c} = {v1} frames are left."],
    ),
    (
        "An athlete does {a} jumps in each of {b} sets, then {c} more. The coach counts half of them as "
        "clean. How many clean jumps are there?",
        "({a}*{b}+{c})/2",
        ["{a} x {b} = {v0} jumps in the sets.", "{v0} + {c} = {v1} jumps in all.", "Half of {v1} is {v2}."],
    ),
    (
        "{a} people each clap {b} times, and {c} people clap {d} times each. How many claps are there in total?",
        "{a}*{b}+{c}*{d}",
        ["{a} x {b} = {v0}.", "{c} x {d} = {v1}.", "{v0} + {v1} = {v2}."],
    ),
)
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


def safe_eval(expr: str) -> Fraction:
    """Evaluate + - * / on integers exactly (no names, no calls)."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return Fraction(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            left, right = ev(node.left), ev(node.right)
            return left / right if isinstance(node.op, ast.Div) else _OPS[type(node.op)](left, right)
        raise ValueError(f"unsupported expression {expr!r}")

    return ev(ast.parse(expr, mode="eval"))


def _steps_values(expr: str) -> list[Fraction]:
    """Intermediate values in evaluation order (each binary operation), for the worked steps."""
    out = []

    def ev(node):
        if isinstance(node, ast.Constant):
            return Fraction(node.value)
        left, right = ev(node.left), ev(node.right)
        v = left / right if isinstance(node.op, ast.Div) else _OPS[type(node.op)](left, right)
        out.append(v)
        return v

    ev(ast.parse(expr, mode="eval").body)
    return out


def _fmt(x: Fraction) -> str:
    return str(x.numerator) if x.denominator == 1 else f"{x.numerator}/{x.denominator}"


def _arithmetic(rng: random.Random, i: int) -> dict:
    while True:
        question, expr, steps = rng.choice(_ARITH)
        vals = {k: rng.randint(2, 12) for k in "abcd"}
        e = expr.format(**vals)
        v = _steps_values(e)
        if all(x >= 0 and x.denominator == 1 for x in v):  # whole, non-negative quantities only
            break
    named = {**vals, **{f"v{j}": _fmt(x) for j, x in enumerate(v)}}
    return example(
        GENERATED,
        f"arith-{i}",
        question.format(**vals),
        " ".join(s.format(**named) for s in steps),
        _fmt(v[-1]),
        {"kind": "arithmetic", "expr": e},
    )


def _words(name: str) -> str:
    return name.replace("_", " ")


def _phase_order(rng: random.Random, i: int, actions: list) -> dict:
    a = rng.choice(actions)
    names = [_words(p.name) for p in a.phases]
    shuffled = names[:]
    while shuffled == names:
        rng.shuffle(shuffled)
    label = _words(a.label)
    steps = [
        f"{'First' if j == 0 else 'Finally' if j == len(names) - 1 else 'Then'} comes {n}: "
        f"{with_subject('the person', rng.choice(p.sub_actions[0].phrasings))}."
        for j, (n, p) in enumerate(zip(names, a.phases))
    ]
    q = f'These are the phases of the action "{label}", out of order: {", ".join(shuffled)}. Put them in the order they happen.'
    return example(
        GENERATED,
        f"order-{i}",
        q,
        " ".join(steps),
        ", ".join(names),
        {"kind": "phase_order", "action": a.key},
    )


def _next_sub_action(rng: random.Random, i: int, actions: list) -> dict:
    a = rng.choice(actions)
    subs = a.sub_actions
    j = rng.randrange(len(subs) - 1)
    cur, nxt = subs[j], subs[j + 1]
    label = _words(a.label)
    where = (
        f"both belong to the {_words(a.phase_of(cur.name))} phase"
        if a.phase_of(cur.name) == a.phase_of(nxt.name)
        else f"the {_words(a.phase_of(cur.name))} phase ends and the {_words(a.phase_of(nxt.name))} phase begins"
    )
    think = (
        f"In {label} the sub-actions go {', '.join(_words(s.name) for s in subs)}. "
        f"{_words(cur.name).capitalize()} ({with_subject('the person', rng.choice(cur.phrasings))}) is followed by {_words(nxt.name)}; {where}."
    )
    q = f'In the action "{label}", which sub-action comes right after "{_words(cur.name)}"?'
    return example(
        GENERATED,
        f"next-{i}",
        q,
        think,
        _words(nxt.name),
        {"kind": "next_sub_action", "action": a.key, "after": cur.name},
    )


def _comparison(rng: random.Random, i: int, actions: list) -> dict:
    if actions and rng.random() < 0.5:  # which phase spans more of the 16 frames?
        a = rng.choice(actions)
        p1, p2 = sorted(rng.sample(range(len(a.phases)), 2))
        p1, p2 = a.phases[p1], a.phases[p2]
        while True:  # two successive spans inside the 16 frames, of different lengths
            l1, l2 = rng.randint(1, 7), rng.randint(1, 7)
            if l1 != l2:
                break
        s1 = rng.randint(1, 16 - l1 - l2 + 1)
        s2 = s1 + l1
        n1, n2 = _words(p1.name), _words(p2.name)
        q = (
            f'In a clip of "{_words(a.label)}", the {n1} phase spans frames {s1}-{s1 + l1 - 1} and the {n2} phase '
            f"spans frames {s2}-{s2 + l2 - 1}. Which phase lasts more frames?"
        )
        think = (
            f"Frames {s1}-{s1 + l1 - 1} are {l1} frames; frames {s2}-{s2 + l2 - 1} are {l2} frames. "
            f"{max(l1, l2)} is more than {min(l1, l2)}."
        )
        return example(
            GENERATED,
            f"cmp-{i}",
            q,
            think,
            n1 if l1 > l2 else n2,
            {"kind": "compare_frames", "names": [n1, n2], "lengths": [l1, l2]},
        )
    while True:
        f1, f2 = (Fraction(rng.randint(1, 9), rng.randint(2, 10)) for _ in range(2))
        if f1 != f2:
            break
    d = f1.denominator * f2.denominator // _gcd(f1.denominator, f2.denominator)
    a1, a2 = f1.numerator * d // f1.denominator, f2.numerator * d // f2.denominator
    q = f"Which is larger, {_fmt(f1)} or {_fmt(f2)}?"
    think = (
        f"With the common denominator {d}: {_fmt(f1)} = {a1}/{d} and {_fmt(f2)} = {a2}/{d}. "
        f"{max(a1, a2)} > {min(a1, a2)}."
    )
    return example(
        GENERATED,
        f"frac-{i}",
        q,
        think,
        _fmt(max(f1, f2)),
        {"kind": "compare_fractions", "values": [_fmt(f1), _fmt(f2)]},
    )


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


TASKS = ("arithmetic", "phase_order", "next_sub_action", "comparison")


def generate_tasks(n: int, library=None, seed: int = 0, actions=None) -> list[dict]:
    """``n`` generated examples, the four kinds in turn (without a library: arithmetic and fractions)."""
    rng = random.Random(seed)
    actions = [a for a in (actions if actions is not None else (library or [])) if len(a.phases) >= 2]
    out = []
    for i in range(n):
        kind = TASKS[i % len(TASKS)] if actions else ("arithmetic", "comparison")[i % 2]
        if kind == "arithmetic":
            out.append(_arithmetic(rng, i))
        elif kind == "phase_order":
            out.append(_phase_order(rng, i, actions))
        elif kind == "next_sub_action":
            out.append(_next_sub_action(rng, i, actions))
        else:
            out.append(_comparison(rng, i, actions))
    return out


def verify(ex: dict, library=None) -> bool:
    """Recompute a generated example's answer from its ``meta`` (the library for action tasks)."""
    meta = json.loads(ex["meta"])
    kind, ans = meta.get("kind"), ex["answer"]
    if kind == "arithmetic":
        return _fmt(safe_eval(meta["expr"])) == ans
    if kind == "compare_fractions":
        return _fmt(max(Fraction(v) for v in meta["values"])) == ans
    if kind == "compare_frames":
        (n1, n2), (l1, l2) = meta["names"], meta["lengths"]
        return ans == (n1 if l1 > l2 else n2)
    a = library[meta["action"]]
    if kind == "phase_order":
        return ans == ", ".join(_words(p.name) for p in a.phases)
    if kind == "next_sub_action":
        names = [s.name for s in a.sub_actions]
        return ans == _words(names[names.index(meta["after"]) + 1])
    raise ValueError(f"not a generated example: {kind!r}")
