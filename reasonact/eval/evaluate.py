"""Evaluation: batched generation over a manifest with the paper's decoding, scored and aggregated.

    summary = evaluate(model, processor, records, "runs/tiny/06_evaluation/vsft/synthact_test",
                       recipe.eval, num_frames=16, size=56)
    result = protocols.run_eval(recipe, run="runs/tiny", stage="vsft")   # what `reasonact eval` calls

**Decoding** (recipe ``eval``): nucleus sampling with top-p 0.9 and the configured temperature (0:
greedy), at most 256 new tokens, top-k off and no repetition penalty (whatever the checkpoint's
generation config says), vision tokens suppressed (a sampled ``<|video_pad|>`` breaks the next
forward). Every seed of ``eval.seeds`` (the paper: 1, 11, 21, 31, 41) samples one completion per
clip; metrics are mean ± std over seeds (eval/metrics.py defines each one).

**Batches and seeds.** Clips are taken in manifest order in chunks of ``batch_size`` (left-padded).
Before each generate call the RNG is seeded from (seed, condition, chunk index), so a run that was
interrupted and resumed samples what an uninterrupted one would (same batch size, same device).

**Resume.** Each finished batch is scored and appended to ``completions.jsonl`` (one line per clip,
seed and condition) at once; re-running skips every (clip, seed, condition) already there, so only
missing work is generated. ``eval_settings.json`` records the model (and a fingerprint of its
weights and adapters), the frames and the decoding: resuming into a folder made with other settings
is an error, so completions of two setups never mix. A torn last line (a kill mid-write) is dropped.

**Damaged clips** (decode errors) are skipped and counted (``skipped`` in the results), never fatal.

**Order-only pairs.** Clips whose label is in ``eval.shuffle_labels`` (SynthAct's sit / stand: one is
the other played backwards) are also generated with their frames shuffled in time (condition
``shuffled``; one fixed permutation per clip and seed, never the identity). A model that uses
temporal order drops to chance there; one that ignores order scores the same on both.

**Latency and memory.** Every row stores its generate call's time divided by the clips in it and its
new tokens. ``measure_efficiency`` times single clips (batch 1, after a warm-up) and reads the peak
memory: CUDA max allocated on a GPU, the process's peak RSS on a CPU (Linux ``VmHWM``, reset first
through ``/proc/self/clear_refs``); ``run_eval`` does it for the evaluated model and for the base
model (no adapters) on the same clips, and reports the ratios.
"""

from __future__ import annotations

import gc
import hashlib
import json
from pathlib import Path

import numpy as np

from reasonact.config import REPO_ROOT
from reasonact.eval import metrics as em
from reasonact.paths import FOLDERS, derived_seed, write_metrics
from reasonact.progress import progress as progress_bar
from reasonact.rewards import default_scorer
from reasonact.video import Video, VideoDecodeError, read_video, shuffle_frames
from reasonact.vlm import decoding_kwargs, generate_batch, prompt_text

COMPLETIONS, SETTINGS, RESULTS = "completions.jsonl", "eval_settings.json", "results.json"
CONDITIONS = ("ordered", "shuffled")
STAGE_FOLDER = FOLDERS["eval"]


class EvalSettingsError(ValueError):
    """An output folder holds completions made with other settings; the message names the file."""


def shuffled(video: Video, seed: int, clip: str) -> Video:
    """The clip with its frames permuted in time, fixed per clip and seed (``video.shuffle_frames``)."""
    return shuffle_frames(video, np.random.default_rng(derived_seed("shuffle", seed, clip)))


# ---- files -----------------------------------------------------------------------------------------


def clip_id(rec: dict, root: Path | None = None) -> str:
    """A clip's key in ``completions.jsonl`` and its frame shuffle's seed: its path relative to the manifest's
    folder when inside it, else to the repository (a subset manifest in a run folder lists the repository's
    SynthAct clips), else as given. So a clone elsewhere shuffles the same clips the same way."""
    p = Path(rec["video"])
    for folder in (root, REPO_ROOT):
        if folder is not None and p.resolve().is_relative_to(folder.resolve()):
            return str(p.resolve().relative_to(folder.resolve()))
    return str(p)


def read_completions(path: str | Path) -> list[dict]:
    """Rows of ``completions.jsonl``. A torn last line (interrupted write) is dropped from the file;
    a bad line anywhere else is an error naming the file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(lines) and not line.endswith("\n"):
                path.write_text("".join(lines[:-1]), encoding="utf-8")
                break
            raise ValueError(
                f"{path}:{i}: not valid JSON; delete the line or the folder to re-evaluate"
            ) from None
    return rows


def _check_settings(out: Path, settings: dict) -> None:
    path = out / SETTINGS
    if path.is_file():
        old = json.loads(path.read_text())
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        if diff and (out / COMPLETIONS).is_file():
            shown = "; ".join(f"{k}: {old.get(k)!r} -> {settings.get(k)!r}" for k in diff[:5])
            raise EvalSettingsError(
                f"{path}: this folder holds completions made with other settings ({shown}); "
                "use another --out or delete the folder to start over"
            )
    path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")


def fingerprint(path: str | Path) -> str | None:
    """A cheap fingerprint of a local model / adapter folder: sizes and edges of its weight files."""
    p = Path(path)
    if not p.is_dir():
        return None  # a hub id: its revision is not ours to pin here
    h = hashlib.sha256()
    for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin")):
        size = f.stat().st_size
        h.update(f"{f.name}:{size}".encode())
        with f.open("rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    return h.hexdigest()[:16]


# ---- the evaluation loop ---------------------------------------------------------------------------


def evaluate(
    model,
    processor,
    records: list[dict],
    out_dir: str | Path,
    cfg,
    *,
    num_frames: int = 16,
    size: int | None = 224,
    resize: str = "square",
    fmt: str = "plain",
    seeds=None,
    limit: int | None = None,
    shuffle_labels=None,
    scorer=None,
    settings: dict | None = None,
    root: str | Path | None = None,
    name: str | None = None,
    progress: bool = False,
) -> dict:
    """Generate, score and aggregate ``records`` (manifest records) into ``out_dir``; resumable.

    ``cfg``: an EvalConfig (decoding, seeds, batch size, shuffle labels); ``seeds`` / ``shuffle_labels``
    override it. ``settings``: what identifies the model (path, adapters) for the resume check.
    ``root``: the manifest's folder (clip keys are relative to it). Returns the summary that is also
    written to ``results.json`` (plus ``results.csv``, ``per_class.csv``, ``confusion_*.csv``)."""
    import torch

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(s) for s in (cfg.seeds if seeds is None else seeds)]
    shuffle = set(cfg.shuffle_labels if shuffle_labels is None else shuffle_labels)
    records = list(records)[: limit if limit is not None else None]
    if not records:
        raise ValueError(f"{name or out}: no clips to evaluate")
    root = Path(root) if root is not None else None
    gen_kwargs = decoding_kwargs(cfg, processor)
    question, hint = prompt_text(fmt)
    _check_settings(
        out,
        {
            **(settings or {}),
            "num_frames": num_frames,
            "size": size,
            "format": fmt,
            "question": question,
            "hint": hint,
            "temperature": float(cfg.temperature),
            "top_p": float(cfg.top_p),
            "top_k": 0,
            "max_new_tokens": int(cfg.max_new_tokens),
        },
    )
    path = out / COMPLETIONS
    rows = read_completions(path)
    done = {(r["clip"], r["seed"], r["condition"]) for r in rows}
    ids = [clip_id(r, root) for r in records]
    classes = em.dataset_classes(records)
    scorer = scorer or default_scorer()
    model.eval()
    skipped, generated, bs = [], 0, max(1, int(cfg.batch_size))
    for chunk in progress_bar(
        range(0, len(records), bs), desc=name or "eval", unit="batches", enabled=progress
    ):
        members = list(range(chunk, min(chunk + bs, len(records))))
        todo = {
            (cond, s): [
                i
                for i in members
                if (ids[i], s, cond) not in done and (cond == "ordered" or records[i]["label"] in shuffle)
            ]
            for cond in CONDITIONS
            for s in seeds
        }
        needed = sorted({i for v in todo.values() for i in v})
        videos = {}
        for i in needed:
            try:
                videos[i] = read_video(records[i]["video"], num_frames=num_frames, size=size, resize=resize)
            except VideoDecodeError as e:
                skipped.append({"clip": ids[i], "video": e.path, "cause": e.cause})
        for (cond, s), idx in todo.items():
            idx = [i for i in idx if i in videos]
            if not idx:
                continue
            torch.manual_seed(derived_seed(s, cond, chunk // bs))
            vids = [videos[i] if cond == "ordered" else shuffled(videos[i], s, ids[i]) for i in idx]
            texts, counts, secs = generate_batch(model, processor, vids, gen_kwargs, fmt)
            new_rows = [
                {
                    "clip": ids[i],
                    "seed": s,
                    "condition": cond,
                    "label": records[i]["label"],
                    "dataset": records[i].get("dataset"),
                    "completion": t,
                    "new_tokens": n,
                    "latency_s": round(secs / len(idx), 5),
                }
                for i, t, n in zip(idx, texts, counts)
            ]
            gts = [_gt_record(records[i], videos[i], num_frames) for i in idx]
            em.score_rows(new_rows, gts, scorer, classes)
            with path.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r, default=str) + "\n" for r in new_rows))
            rows += new_rows
            done |= {(r["clip"], s, cond) for r in new_rows}
            generated += len(new_rows)
    return _summarize(rows, records, ids, seeds, shuffle, classes, skipped, generated, out, name)


def _gt_record(rec: dict, video: Video, num_frames: int) -> dict:
    """The manifest record with the decoded clip's fps / frame count / duration where it has none."""
    gt = dict(rec)
    gt.setdefault("fps", video.fps)
    gt.setdefault("num_frames", video.total_frames)
    gt.setdefault("duration_s", video.duration_s)
    gt["num_sampled_frames"] = num_frames
    return gt


def _summarize(rows, records, ids, seeds, shuffle, classes, skipped, generated, out: Path, name) -> dict:
    wanted = set(ids)
    rows = [
        r
        for r in rows
        if r["clip"] in wanted
        and r["seed"] in seeds
        and (r["condition"] == "ordered" or r["label"] in shuffle)
    ]
    summary = {
        "name": name or out.name,
        "clips": len(records),
        "evaluated": len({r["clip"] for r in rows}),
        "skipped": {"count": len(skipped), "clips": skipped},
        "generated_now": generated,
        "seeds": seeds,
        "conditions": {},
    }
    for cond in CONDITIONS:
        crow = [r for r in rows if r["condition"] == cond]
        if crow:
            summary["conditions"][cond] = em.summarize(crow, seeds, classes)
    if "shuffled" in summary["conditions"]:
        pair = [r for r in rows if r["label"] in shuffle and r["condition"] == "ordered"]
        order = em.summarize(pair, seeds)
        shuf = summary["conditions"]["shuffled"]
        summary["order_only"] = {
            "labels": sorted(shuffle & {r["label"] for r in records}),
            "ordered": order["accuracy"],
            "shuffled": shuf["accuracy"],
            "per_class": {
                k: {"ordered": order["per_class"][k], "shuffled": shuf["per_class"].get(k)}
                for k in order["per_class"]
            },
        }

    write_metrics(out, summary, RESULTS)
    summary["files"] = {
        "json": str(out / RESULTS),
        "completions": str(out / COMPLETIONS),
        **em.write_tables(summary, out),
    }
    return summary


# ---- latency and memory ----------------------------------------------------------------------------


def _rss_peak_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: reset VmHWM to the current RSS
        return True
    except OSError:
        return False


def _rss_peak() -> int:
    import resource

    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: kB; never reset


def measure_efficiency(model, processor, videos: list[Video], cfg, fmt: str = "plain", seed: int = 1) -> dict:
    """Latency per clip (batch 1, after one warm-up clip), new tokens per clip, peak memory."""
    import torch

    if not videos:
        raise ValueError("measure_efficiency needs at least one decoded clip")
    kw = decoding_kwargs(cfg, processor)
    model.eval()
    generate_batch(model, processor, videos[:1], {**kw, "max_new_tokens": 2}, fmt)  # warm-up
    cuda = model.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(model.device)
        kind = "cuda_max_allocated"
    else:
        gc.collect()
        kind = "process_peak_rss" if _rss_peak_reset() else "process_peak_rss_since_start"
    secs, toks = [], []
    for i, v in enumerate(videos):
        torch.manual_seed(derived_seed(seed, "efficiency", i))
        _, n, s = generate_batch(model, processor, [v], kw, fmt)
        secs.append(s)
        toks.append(n[0])
    peak = torch.cuda.max_memory_allocated(model.device) if cuda else _rss_peak()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return {
        "clips": len(videos),
        "latency_s_per_clip": float(np.mean(secs)),
        "latency_s_std": float(np.std(secs)),
        "new_tokens_per_clip": float(np.mean(toks)),
        "s_per_token": float(np.sum(secs) / max(1, sum(toks))),
        "peak_memory_bytes": int(peak),
        "memory_kind": kind,
        "parameter_bytes": int(params),
        "device": str(model.device),
    }
