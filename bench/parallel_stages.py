"""Do two 1-thread trainings on the 2 cores beat one 2-thread training? (prints one JSON object)

    python bench/parallel_stages.py --data RUN [--stage vsft|fre|tgrpo] [--steps 60] [--layouts 1x2,2x1]

The experiment tables train their stages one after the other, each with torch's default threads (one per
core). Stages of different training seeds are independent, so they could run side by side instead, one
thread each. This times both ways on the same work: for a layout ``JxT``, J copies of ``reasonact train
<stage> --profile tiny --set <stage>.max_steps=<steps>`` start together, each with T torch / OpenMP threads
(``OMP_NUM_THREADS``) and a training seed of its own, and the layout's wall time runs from the first start to
the last exit. ``steps_per_s`` = J x steps / wall: the throughput a table would get. Run it on idle cores;
the load average before and after each layout is printed with it.

``--data RUN``: a run folder with what the stage reads, e.g. a run of ``make pipeline``: ``02_cot_generation/``
(FRE data, V-SFT chains) for FRE and V-SFT, the earlier stages' adapters (``03_fre/``, ``04_video_sft/``) for
T-GRPO. Each copy trains in a fresh folder that links to RUN's stage folders before the timed stage, so nothing
of RUN is changed; a stage starts from the adapters linked there. V-SFT skips its validation (``--no-eval``)
and T-GRPO its before/after check (``tgrpo.eval_clips=0``): only training is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reasonact.paths import FOLDERS  # noqa: E402


def layout(spec: str) -> tuple[int, int]:
    try:
        jobs, threads = (int(x) for x in spec.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"layout {spec!r}: JOBSxTHREADS, e.g. 2x1") from None
    if jobs < 1 or threads < 1:
        raise argparse.ArgumentTypeError(f"layout {spec!r}: JOBSxTHREADS with both at least 1")
    return jobs, threads


def run_layout(jobs: int, threads: int, args, tmp: Path) -> dict:
    data = Path(args.data).resolve()
    own = FOLDERS[args.stage]
    earlier = [d for d in sorted(data.iterdir()) if d.is_dir() and d.name[:2].isdigit() and d.name < own]
    procs, logs = [], []
    load_before = os.getloadavg()
    t0 = time.time()
    for j in range(jobs):
        run = tmp / f"{jobs}x{threads}-{j}"
        run.mkdir(parents=True)
        for d in earlier:
            (run / d.name).symlink_to(d)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
               "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
        cmd = [sys.executable, "-m", "reasonact.cli", "train", args.stage, "--profile", "tiny", "--run", str(run),
               "--no-resume", "--json", "--set", f"{args.stage}.max_steps={args.steps}", "--set", f"{args.stage}.seed={j + 1}"]  # fmt: skip
        cmd += {"vsft": ["--no-eval"], "tgrpo": ["--set", "tgrpo.eval_clips=0"]}.get(args.stage, [])
        log = open(run / "train.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    wall = time.time() - t0
    for log in logs:
        log.close()
    failed = [str(tmp / f"{jobs}x{threads}-{j}" / "train.log") for j, c in enumerate(codes) if c]
    if failed:
        raise SystemExit(f"parallel_stages: layout {jobs}x{threads} failed, see {', '.join(failed)}")
    return {"layout": f"{jobs}x{threads}", "jobs": jobs, "threads": threads, "wall_s": round(wall, 1),
            "steps_per_s": round(jobs * args.steps / wall, 3),
            "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a run folder with the stage's inputs")
    p.add_argument("--stage", choices=("fre", "vsft", "tgrpo"), default="vsft")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--layouts", type=lambda s: [layout(x) for x in s.split(",")], default=[(1, 2), (2, 1)])
    args = p.parse_args(argv)
    need = FOLDERS["vsft"] if args.stage == "tgrpo" else FOLDERS["cot"]
    if not (Path(args.data) / need).is_dir():
        p.error(f"--data {args.data}: no {need}/ folder there (what {args.stage} reads)")
    with tempfile.TemporaryDirectory(prefix="parallel_stages-") as tmp:
        rows = [run_layout(j, t, args, Path(tmp)) for j, t in args.layouts]
    base = rows[0]["steps_per_s"]
    for r in rows:
        r["speedup_vs_first"] = round(r["steps_per_s"] / base, 2)
    out = {"stage": args.stage, "steps": args.steps, "cpus": os.cpu_count(), "layouts": rows}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
