"""Temporal consistency C_tc = (C_seq + C_cross + C_bind) / 3, each in [0, 1].

The paper scores these with learned classifiers (trained on 30k GPT-4o-labelled clips, not
released); here each is a transparent rule over the parsed reasoning, the detected sub-actions
and the clip's phase windows, so students can see why a completion scores what it scores.

A *step* is a ground-truth phase. A phase is *described* at a place in the text where one of its
sub-actions is detected or where it is named explicitly as a phase ("the crouch phase",
"Phase 2 (takeoff)", or a sentence that opens with "Crouch:"); a bare word like "landing" inside
another sentence is not a phase mention, it is too often a forward reference ("...preparing for
the landing").

**C_seq** (sequential coherence): Kendall's tau-b between the positions where the phases are
first described and their ground-truth order, normalised to [0, 1] as (tau + 1) / 2. Fewer than
two described phases: 0 — no sequence was described.

**C_cross** (cross-frame consistency): ``1 - contradictions / checks`` over
- action claims ("this is a jump", "looks like a kick", "consistent with sitting"; negated claims
  such as "not a kick" are skipped): every claim that differs from the most frequent claim is a
  contradiction (a different action claimed in different frames), checks = claims - 1;
- the answer against the reasoning: the reasoning's action is its last claim or, with no claim,
  the candidate action (ground truth or answered) whose sub-actions the text matches best
  (R_sub); an answer naming another action is a contradiction (1 check);
- the actor named consistently: "he/man/boy" vs "she/woman/girl" (the minority mentions are
  contradictions, checks = mentions - 1), and "one person/alone" vs "two people/a group"
  (1 check, 1 contradiction if both).
With no checks: 0.5 for reasoning with words in it (nothing to judge either way), 0 for none.

**C_bind** (temporal binding): for each ground-truth phase, the union of the frame spans the
reasoning gives it (the frame reference in scope where its sub-actions are detected or it is
named; when a sentence's clause carries the detection, the clause's span is used, not the whole
sentence's; a sentence naming several phases without its own frame reference is a summary and
binds nothing) as a time interval, and its IoU with the phase window; C_bind is the mean over phases
(a phase given no span scores 0). Windows are the clip's annotation or, for datasets without
one, the library's typical shares (``gt.py``).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from reasonact.rewards.gt import GroundTruth, phase_words
from reasonact.rewards.parse import Segment
from reasonact.rewards.subaction import Detection, normalized_tau

_CLAIM_CUE = re.compile(
    r"(?:\b(?:this|it|that|which|action|activity|movement|motion|video|clip|answer)\s+"
    r"(?:is|was|isn't|wasn't|looks like|resembles|seems to be|appears to be|must be|could be|shows|matches|"
    r"indicates|suggests)|\b(?:consistent with|typical of|characteristic of|indicative of|identified as|"
    r"classified as|recogni[sz]ed as|performing|performs|doing|does))"
    r"\s+(?P<neg>not\s+|never\s+)?(?:an?\s+|the\s+)?(?:(?:action|act|motion|movement)\s+of\s+)?$",
    re.IGNORECASE,
)
_NEGATION = re.compile(
    r"\b(?:not|no|never|rather than|instead of|unlike|rules? out|ruling out)\b|n't\b", re.I
)
_WORDS = re.compile(r"[^\W\d_]{2,}")
_MALE = re.compile(r"\b(?:he|him|his|himself|man|boy|male|gentleman)\b", re.IGNORECASE)
_FEMALE = re.compile(r"\b(?:she|her|hers|herself|woman|girl|female|lady)\b", re.IGNORECASE)
_ONE = re.compile(
    r"\b(?:one person|a single person|only one person|alone|by (?:him|her)self)\b", re.IGNORECASE
)
_MANY = re.compile(r"\b(?:two|three|several|many|multiple) (?:people|persons|figures)\b|\ba group of\b", re.I)


@dataclass
class Claim:
    key: str
    start: int
    end: int
    frames: list[tuple[int, int]] = field(default_factory=list)


@lru_cache(maxsize=4096)
def _phase_pattern(name: str) -> re.Pattern | None:
    words = re.escape(phase_words(name)).replace(r"\ ", r"[\s_-]+")
    if not words:
        return None
    return re.compile(
        rf"\b{words}\s+phase\b|\bphase\s*\d*\s*[:(-]?\s*{words}\b|^\s*{words}\s*(?:[:(]|-\s)", re.IGNORECASE
    )


@lru_cache(maxsize=4096)
def _word_pattern(name: str) -> re.Pattern | None:
    words = phase_words(name)
    return re.compile(rf"\b{re.escape(words)}\b", re.IGNORECASE) if words else None


def phase_mentions(segments: list[Segment], gt: GroundTruth) -> list[tuple[int, int]]:
    """(phase index, segment index) of explicit phase mentions (see the module docstring)."""
    out = []
    for p_idx, p in enumerate(gt.phases):
        pat = _phase_pattern(p.name)
        if pat is None:
            continue
        for i, s in enumerate(segments):
            if pat.search(s.text):
                out.append((p_idx, i))
    return out


def leaf_detections(detections: list[Detection], segments: list[Segment]) -> list[Detection]:
    """Drop a sentence-level detection when a clause of the same sentence detects the same sub-action
    (the clause's frame span is the precise one)."""
    clause_hits = {
        (d.name, segments[d.segment].sentence) for d in detections if segments[d.segment].level == "clause"
    }
    return [
        d
        for d in detections
        if segments[d.segment].level == "clause" or (d.name, segments[d.segment].sentence) not in clause_hits
    ]


def c_seq(
    detections: list[Detection],
    segments: list[Segment],
    gt: GroundTruth,
    mentions: list[tuple[int, int]] | None = None,
) -> dict:
    first: dict[int, int] = {}
    for d in detections:
        p = gt.phase_of.get(d.name)
        if p is not None:
            first[p] = min(first.get(p, d.start), d.start)
    for p, i in mentions if mentions is not None else phase_mentions(segments, gt):
        first[p] = min(first.get(p, segments[i].start), segments[i].start)
    phases = sorted(first, key=first.get)
    tau = normalized_tau([first[p] for p in phases], phases)
    return {"c_seq": 0.0 if tau is None else tau, "described_order": [gt.phases[p].name for p in phases]}


def _union_iou(intervals: list[tuple[float, float]], window: tuple[float, float]) -> float:
    s, e = window
    if e <= s:
        return 0.0
    merged: list[list[float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    length = sum(b - a for a, b in merged)
    inter = sum(max(0.0, min(b, e) - max(a, s)) for a, b in merged)
    union = length + (e - s) - inter
    return float(inter / union) if union > 0 else 0.0


def _summaries(segments: list[Segment], gt: GroundTruth) -> set[int]:
    """Sentences that name two or more phases without a frame reference of their own ("Standing,
    then lowering, then seated: ..."): summaries of the whole clip, which bind nothing."""
    words = [w for p in gt.phases if (w := _word_pattern(p.name)) is not None]
    out = set()
    for s in segments:
        if s.level == "sentence" and not s.own_ref and sum(bool(w.search(s.text)) for w in words) >= 2:
            out.add(s.sentence)
    return out


def c_bind(
    detections: list[Detection],
    segments: list[Segment],
    gt: GroundTruth,
    mentions: list[tuple[int, int]] | None = None,
) -> dict:
    spans: dict[int, list[tuple[int, int]]] = {}
    summaries = _summaries(segments, gt)
    for d in leaf_detections(detections, segments):
        if segments[d.segment].sentence in summaries:
            continue
        p = gt.phase_of.get(d.name)
        if p is not None:
            spans.setdefault(p, []).extend(d.frames)
    for p, i in mentions if mentions is not None else phase_mentions(segments, gt):
        if segments[i].sentence not in summaries:
            spans.setdefault(p, []).extend(segments[i].frames)
    ious = {}
    for p_idx, p in enumerate(gt.phases):
        if p.end <= p.start:
            continue
        intervals = [iv for f in spans.get(p_idx, []) if (iv := gt.interval(*f)) is not None]
        ious[p.name] = _union_iou(intervals, (p.start, p.end))
    value = sum(ious.values()) / len(ious) if ious else 0.0
    return {"c_bind": float(value), "iou": ious, "windows_source": gt.windows_source}


def claims(segments: list[Segment], finder) -> list[Claim]:
    """Action claims in the reasoning segments (sentence level), negated ones skipped."""
    out = []
    for s in segments:
        if s.level != "sentence":
            continue
        for key, a, b in finder.find(s.text):
            before = s.text[max(0, a - 80) : a]
            m = _CLAIM_CUE.search(before)
            if not m or m.group("neg") or "n't" in m.group(0).lower():
                continue
            if _NEGATION.search(before[max(0, m.start() - 25) : m.start()]):
                continue
            out.append(Claim(key, s.start + a, s.start + b, list(s.frames)))
    return out


def c_cross(
    reasoning: str, claim_list: list[Claim], answer_key: str | None, evidence_key: str | None
) -> dict:
    checks, contradictions, notes = 0, 0, []
    if claim_list:
        counts = Counter(c.key for c in claim_list)
        modal = counts.most_common(1)[0][0]
        checks += len(claim_list) - 1
        contradictions += len(claim_list) - counts[modal]
        if len(counts) > 1:
            notes.append(f"different actions claimed: {sorted(counts)}")
    reasoning_key = claim_list[-1].key if claim_list else evidence_key
    if answer_key is not None and reasoning_key is not None:
        checks += 1
        if answer_key != reasoning_key:
            contradictions += 1
            notes.append(f"answer {answer_key} but the reasoning indicates {reasoning_key}")
    male, female = len(_MALE.findall(reasoning)), len(_FEMALE.findall(reasoning))
    if male + female > 1:
        checks += male + female - 1
        contradictions += min(male, female)
        if male and female:
            notes.append("the actor is both he and she")
    one, many = bool(_ONE.search(reasoning)), bool(_MANY.search(reasoning))
    if one or many:
        checks += 1
        if one and many:
            contradictions += 1
            notes.append("one person and several people")
    if checks == 0:
        value = 0.5 if _WORDS.search(reasoning) else 0.0
    else:
        value = 1.0 - min(contradictions, checks) / checks
    return {
        "c_cross": float(value),
        "checks": checks,
        "contradictions": contradictions,
        "notes": notes,
        "reasoning_action": reasoning_key,
    }


def c_tc(seq: float, cross: float, bind: float) -> float:
    return float((seq + cross + bind) / 3.0)
