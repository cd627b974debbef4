"""The quality filter of teacher chains, and the whole ``cot generate`` stage.

    result = filter_chains(chains, recipe.teacher.filter, num_frames=16)   # kept, rejected, counts
    paths = save_chains(result, "runs/tiny/02_cot_generation")             # JSONL + datasets folder
    summary = generate_cot("data/synthact/manifest_train.jsonl", "runs/tiny/02_cot_generation")

Rules, checked in this order; a chain is rejected by the first rule it fails (so the counts per rule
add up to the number rejected). Everything reuses the reward code, so a kept chain is exactly one
the T-GRPO rewards score as well-formed and correct:

| rule          | rejects a chain when                                                                        |
|---------------|---------------------------------------------------------------------------------------------|
| ``error``     | the teacher returned nothing (HTTP failure, undecodable video, unknown label)                |
| ``format``    | not ``<think>…</think><answer>…</answer>`` (process: ``<observation>`` first) — ``basic.format_ok`` |
| ``answer``    | the answer does not name the label — ``basic.is_correct`` (aliases, spellings)               |
| ``frames``    | a frame reference lies outside 1..N, or (``require_frame_refs``) there is none — ``parse``   |
| ``length``    | the reasoning has fewer than ``min_words`` or more than ``max_words`` words                  |
| ``phase_order``| fewer phases described than ``max(min_phases, min_phase_share * phases)``, or not in the clip's order: phases are located by sub-action detection and explicit phase mentions (the Scorer's C_seq analysis) |
| ``duplicate`` | word 3-gram Jaccard (digits masked) >= ``dedup_threshold`` with an already kept chain of the same label |

Kept chains are written as JSON lines and as a ``datasets`` folder (``save_to_disk``), one row per
chain with what V-SFT and the rewards need: ``video``, ``label``, ``dataset``, ``split``, ``phases``,
``fps``, ``num_frames`` (the clip's), ``duration_s``, ``num_sampled_frames`` (N), ``chain``,
``format``, ``teacher``, ``clip_id``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from reasonact.config import CotFilterConfig, load_config
from reasonact.cot.teacher import Chain, make_teacher
from reasonact.data.manifest import read_manifest
from reasonact.data.synthact import ensure_dataset
from reasonact.library import Library, load_library
from reasonact.rewards import basic
from reasonact.rewards.parse import parse
from reasonact.rewards.scorer import Scorer, default_scorer

RULES = ("error", "format", "answer", "frames", "length", "phase_order", "duplicate")
_WORDS = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?|\d+")


@dataclass
class Rejection:
    chain: Chain
    rule: str
    detail: str


@dataclass
class FilterResult:
    kept: list[Chain] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    def counts(self) -> dict:
        by_rule = {r: 0 for r in RULES}
        for rej in self.rejected:
            by_rule[rej.rule] += 1
        total = len(self.kept) + len(self.rejected)
        return {
            "total": total,
            "kept": len(self.kept),
            "rejected": len(self.rejected),
            "rejected_by_rule": by_rule,
            "kept_share": round(len(self.kept) / total, 4) if total else 0.0,
        }


def reasoning_text(text: str) -> str:
    """The observation and think blocks (the whole text when they are missing)."""
    p = parse(text)
    parts = [p.region_text(r) for r in ("observation", "think") if r in p.blocks]
    return " ".join(parts) if parts else text


def word_count(text: str) -> int:
    return len(_WORDS.findall(reasoning_text(text)))


def _shingles(text: str, n: int = 3) -> set[tuple[str, ...]]:
    words = [("#" if w.isdigit() else w.lower()) for w in _WORDS.findall(text)]  # frame numbers masked
    return {tuple(words[i : i + n]) for i in range(max(1, len(words) - n + 1))}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def columns(chain: Chain, num_frames: int) -> dict:
    """The reward columns of a chain's clip (``rewards.gt``)."""
    r = chain.record
    return {
        "label": r.get("label"),
        "dataset": r.get("dataset"),
        "phases": r.get("phases"),
        "fps": r.get("fps"),
        "num_frames": r.get("num_frames"),
        "duration_s": r.get("duration_s"),
        "num_sampled_frames": num_frames,
    }


def cheap_check(chain: Chain, cfg: CotFilterConfig, num_frames: int, library) -> tuple[str, str] | None:
    """The rules that need no encoder: (rule, detail) of the first failure, or None."""
    if chain.error or not chain.text.strip():
        return "error", chain.error or "empty text"
    text = chain.text
    if not basic.format_ok(text, process_aware=chain.format == "process"):
        return "format", f"not a well-formed {chain.format} completion"
    p = parse(text)
    r = chain.record
    if not basic.is_correct(p.answer, r.get("label"), r.get("dataset"), lib=library):
        return "answer", f"answer {p.answer!r} is not the label {r.get('label')!r}"
    outside = [f"{f.first}-{f.last}" for f in p.frame_refs if f.first < 1 or f.last > num_frames]
    if outside:
        return "frames", f"frames {', '.join(outside)} outside 1-{num_frames}"
    if cfg.require_frame_refs and not p.frame_refs:
        return "frames", "no frame reference"
    words = word_count(text)
    if not cfg.min_words <= words <= cfg.max_words:
        return "length", f"{words} words, outside {cfg.min_words}-{cfg.max_words}"
    return None


def phase_order_check(analysis, cfg: CotFilterConfig) -> tuple[str, str] | None:
    """From the Scorer's analysis: enough phases described, and in the clip's order."""
    gt_order = [p.name for p in analysis.gt.phases]
    described = analysis.details.get("c_seq", {}).get("described_order", [])
    need = min(len(gt_order), max(cfg.min_phases, math.ceil(cfg.min_phase_share * len(gt_order))))
    if len(described) < need:
        return (
            "phase_order",
            f"{len(described)} of {len(gt_order)} phases described ({', '.join(described) or 'none'}), need {need}",
        )
    idx = [gt_order.index(n) for n in described]
    if idx != sorted(idx):
        return "phase_order", f"described {' > '.join(described)}; the clip's order is {' > '.join(gt_order)}"
    return None


def filter_chains(
    chains: list[Chain], cfg: CotFilterConfig | None = None, num_frames: int = 16, scorer=None
) -> FilterResult:
    """Apply the rules of the module docstring. ``scorer`` (a ``rewards.Scorer``) defaults to the
    process-wide one over the committed library; its library also resolves answers."""

    cfg = cfg or CotFilterConfig()
    scorer = scorer or default_scorer()
    lib = scorer.library
    result = FilterResult()
    survivors = []
    for c in chains:
        fail = cheap_check(c, cfg, num_frames, lib)
        if fail:
            result.rejected.append(Rejection(c, *fail))
        else:
            survivors.append(c)
    # One Scorer pass for all survivors: a single encoder call embeds every segment of the batch.
    analyses = []
    if survivors:
        cols = [columns(c, num_frames) for c in survivors]
        analyses = scorer.analyze(
            [c.text for c in survivors], **{k: [col[k] for col in cols] for k in cols[0]}
        )
    kept_shingles: dict[str, list[set]] = {}
    for c, a in zip(survivors, analyses):
        fail = phase_order_check(a, cfg)
        if fail:
            result.rejected.append(Rejection(c, *fail))
            continue
        sh = _shingles(reasoning_text(c.text))
        same = kept_shingles.setdefault(str(c.record.get("label")), [])
        best = max((jaccard(sh, other) for other in same), default=0.0)
        if best >= cfg.dedup_threshold:
            result.rejected.append(Rejection(c, "duplicate", f"3-gram Jaccard {best:.2f} with a kept chain"))
            continue
        same.append(sh)
        result.kept.append(c)
    return result


def chain_row(chain: Chain, num_frames: int) -> dict:
    """One V-SFT row (module docstring); types fixed so every row has the same Arrow schema."""
    r = chain.record

    def num(x, cast):
        return None if x is None else cast(x)

    phases = [
        {
            "name": str(p.get("name", "")),
            "start_s": float(p.get("start_s", 0.0)),
            "end_s": float(p.get("end_s", 0.0)),
            "sub_actions": [str(s) for s in p.get("sub_actions", [])],
        }
        for p in (r.get("phases") or [])
    ]
    return {
        "clip_id": chain.clip_id,
        "video": str(r.get("video", "")),
        "label": str(r.get("label", "")),
        "dataset": str(r.get("dataset", "")),
        "split": str(r.get("split", "")),
        "phases": phases,
        "fps": num(r.get("fps"), float),
        "num_frames": num(r.get("num_frames"), int),
        "duration_s": num(r.get("duration_s"), float),
        "num_sampled_frames": int(num_frames),
        "chain": chain.text,
        "format": chain.format,
        "teacher": chain.teacher,
    }


def save_chains(result: FilterResult, out_dir: str | Path, num_frames: int = 16) -> dict[str, str]:
    """``cot.jsonl`` + ``cot_dataset/`` (kept) and ``rejected.jsonl`` (rule, detail, text) in ``out_dir``."""
    from datasets import Dataset

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = [chain_row(c, num_frames) for c in result.kept]
    jsonl = out / "cot.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    rejected = out / "rejected.jsonl"
    rejected.write_text(
        "".join(
            json.dumps(
                {
                    **chain_row(x.chain, num_frames),
                    "rule": x.rule,
                    "detail": x.detail,
                    "error": x.chain.error,
                },
                ensure_ascii=False,
            )
            + "\n"
            for x in result.rejected
        ),
        encoding="utf-8",
    )
    ds_dir = out / "cot_dataset"
    if rows:
        Dataset.from_list(rows).save_to_disk(str(ds_dir))
    return {"jsonl": str(jsonl), "dataset": str(ds_dir) if rows else None, "rejected": str(rejected)}


def stage_inputs(recipe) -> tuple[Library, Scorer, list[dict]]:
    """What CoT generation reads: the sub-action library, its scorer (the filter's sub-action checks) and
    the SynthAct training clips (rendered first if missing; cached)."""
    library = load_library(recipe.data.library_dir)
    return library, Scorer(library), read_manifest(ensure_dataset(recipe)["manifests"]["train"])


def generate_cot(
    manifest: str | Path,
    out: str | Path,
    teacher: str = "template",
    fmt: str | None = None,
    recipe=None,
    profile: str = "tiny",
    limit: int | None = None,
    library=None,
    scorer=None,
    progress: bool = False,
) -> dict:
    """``reasonact cot generate``: teacher chains for every clip of ``manifest``, filtered and saved in
    ``out``. Returns (and writes to ``out/summary.json``) counts per rule, sizes and paths."""

    recipe = recipe or load_config(profile)
    fmt = fmt or recipe.teacher.format
    records = read_manifest(manifest)[:limit] if limit else read_manifest(manifest)
    if library is None and scorer is not None:
        library = scorer.library
    scorer = scorer or (Scorer(library) if library is not None else default_scorer())
    t0 = time.perf_counter()
    chains = make_teacher(teacher, recipe, library=scorer.library, fmt=fmt, progress=progress).generate(
        records
    )
    t_gen = time.perf_counter() - t0
    n = recipe.video.num_frames
    result = filter_chains(chains, recipe.teacher.filter, n, scorer)
    paths = save_chains(result, out, n)
    words = [word_count(c.text) for c in result.kept]
    summary = {
        "teacher": chains[0].teacher if chains else teacher,
        "format": fmt,
        "manifest": str(manifest),
        "clips": len(records),
        "errors": sum(c.error is not None for c in chains),
        "cached": sum(bool(c.meta.get("cached")) for c in chains),
        **result.counts(),
        "kept_per_label": _per_label(result.kept),
        "words": {"mean": round(sum(words) / len(words), 1), "min": min(words), "max": max(words)}
        if words
        else {},
        "paths": paths,
        "seconds": {"generate": round(t_gen, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    Path(out, "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def _per_label(chains: list[Chain]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in chains:
        out[str(c.record.get("label"))] = out.get(str(c.record.get("label")), 0) + 1
    return dict(sorted(out.items()))


def corrupt_chains(chains: list[Chain], seed: int = 0) -> list[Chain]:
    """Broken copies of good chains, one fault each, cycling through the filter's rules: a teaching aid
    (notebook 02 shows what each rule catches) and a test fixture. ``meta["corrupted"]`` names the fault."""
    import random
    from dataclasses import replace

    rng = random.Random(seed)
    out = []
    faults = ("format", "answer", "frames", "length", "phase_order", "duplicate")
    for i, c in enumerate(chains):
        fault, text = faults[i % len(faults)], c.text
        p = parse(text)
        if fault == "format":
            text = text.replace("</think>", "", 1)
        elif fault == "answer":
            text = text.replace(f"<answer>{p.answer}</answer>", "<answer>something else</answer>")
        elif fault == "frames":
            text = text.replace("<think>", "<think>In frames 30-41 the person waits. ", 1)
        elif fault == "length":
            text = f"<think>It is {c.record.get('label')}.</think><answer>{p.answer}</answer>"
        elif fault == "phase_order":  # the think block's sentences in reverse: phases out of order
            think = p.region_text("think")
            sentences = [s for s in re.split(r"(?<=[.!?])\s+", think) if s]
            text = text.replace(think, " ".join(sentences[::-1]))
        out.append(replace(c, text=text, meta={**c.meta, "corrupted": fault}))
    rng.shuffle(out)
    return out
