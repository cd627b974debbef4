"""How fast is SynthAct? Clips/s rendered in memory (one core) and written to disk (1 and 2 workers).

    python bench/synthact_speed.py [--size 112] [--clips-per-class 10] [--levels easy,medium,hard]

Prints one JSON object. In memory is what training code that renders fresh clips every step
gets; to disk (render + H.264 + pose sidecar + manifest) is what `reasonact data synthact` gets.
Wall-clock rates depend on what else runs on the machine (``load_avg_1min``); CPU milliseconds
per clip do not, so both are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
import reasonact  # noqa: E402, F401  (first: the CPU torchvision shim)
from reasonact.data import synthact as sa  # noqa: E402


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def in_memory(level: str, size: int, n: int) -> dict:
    sa.render_clip("jump", 0, level, size)  # warm-up: library parsing, imports
    t0, c0, frames = time.perf_counter(), _cpu_s(), 0
    for i in range(n):
        clip, _ = sa.render_clip(sa.CLASSES[i % len(sa.CLASSES)], 10_000 + i, level, size)
        frames += len(clip)
    dt, cpu = time.perf_counter() - t0, _cpu_s() - c0
    return {
        "clips_per_s": round(n / dt, 1),
        "cpu_ms_per_clip": round(1000 * cpu / n, 1),
        "frames_per_clip": round(frames / n, 1),
    }


def to_disk(level: str, size: int, clips_per_class: int, workers: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        c0 = _cpu_s()
        out = sa.generate(
            tmp, clips_per_class, seed=0, level=level, size=size, workers=workers, progress=False
        )
        cpu = _cpu_s() - c0
        mb = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(tmp) for f in fs) / 2**20
    return {
        "clips": out["num_clips"],
        "clips_per_s": out["clips_per_s"],
        "cpu_ms_per_clip": round(1000 * cpu / out["num_clips"], 1),
        "kb_per_clip": round(1024 * mb / out["num_clips"], 1),
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--clips-per-class", type=int, default=10, help="per level and worker count, to disk")
    ap.add_argument("--levels", default="easy,medium,hard")
    ap.add_argument("--memory-clips", type=int, default=120, help="clips per level rendered in memory")
    args = ap.parse_args(argv)
    levels = args.levels.split(",")
    result = {
        "bench": "synthact_speed",
        "size": args.size,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "load_avg_1min_before": round(os.getloadavg()[0], 1),  # other processes skew wall-clock rates
        "in_memory_1_core": {lv: in_memory(lv, args.size, args.memory_clips) for lv in levels},
        "to_disk": {
            lv: {f"workers_{w}": to_disk(lv, args.size, args.clips_per_class, w) for w in (1, 2)}
            for lv in levels
        },
        "load_avg_1min_after": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
