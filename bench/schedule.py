"""How long would a table take with ``--jobs N``, from the times its stages and evaluations took? (prints JSON)

    python bench/schedule.py table2 --root runs/experiments [--train-seeds 1 2 3] [--workers 2]

``reasonact experiments --jobs N`` starts each stage or evaluation once the jobs it needs are done, at most N
at a time. This replays that schedule without training anything: every job lasts the ``seconds`` recorded in
its ``done.json`` under ``--root`` (a finished run of the table, ideally one made with the same ``--jobs``: a
1-thread job is slower than a 2-thread one), and the replay reports the table's wall time from nothing under
two orders of the ready jobs: ``row_order`` (the table's rows and seeds in turn, the runner before it started
the longest waiting chains first) and ``highest_first`` (the runner now: ``eval.parallel.chain_heights``). It
also prints the two bounds no order beats: ``sum / workers`` and the longest chain (``critical_path``).
Jobs without a recorded time are listed under ``unmeasured`` and counted as 0 s. ``--since T`` (a Unix time)
replays only the jobs whose ``done.json`` is newer than T: what a run started at T had left to do.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from reasonact.eval.experiment_config import load_table  # noqa: E402
from reasonact.eval.experiments import Experiment  # noqa: E402
from reasonact.eval.parallel import chain_heights, experiment_jobs, ready_order  # noqa: E402


def replay(seconds: dict, after: dict, workers: int, height: dict) -> float:
    """The wall time of ``run_jobs``' schedule with these job times and start order (``ready_order``)."""
    t, done, started, running = 0.0, set(), set(), []
    while len(done) < len(seconds):
        for n in ready_order(seconds, after, done, started, height)[: max(workers, 1) - len(running)]:
            started.add(n)
            heapq.heappush(running, (t + seconds[n], n))
        if not running:
            raise ValueError(f"jobs that can never start: {sorted(set(seconds) - started)}")
        t, n = heapq.heappop(running)
        done.add(n)
    return t


def job_seconds(exp, jobs: dict, since: float | None = None) -> tuple[dict, list]:
    """{job: seconds} from each job's ``done.json`` (0 where there is none: the second list), and with ``since``
    (a Unix time) only the jobs finished after it: the jobs a run started then had left to do."""
    seconds, unmeasured = {}, []
    for name, (_, node, *order) in jobs.items():
        done = (exp.eval_dir(node, *order) if order else exp.stage_dir(node)) / "done.json"
        if not done.is_file():
            unmeasured.append(name)
        if since is None or not done.is_file() or done.stat().st_mtime > since:
            seconds[name] = json.loads(done.read_text())["seconds"] if done.is_file() else 0.0
    return seconds, unmeasured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("table")
    ap.add_argument("--root", default=str(ROOT / "runs" / "experiments"), help="a run of the table")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--since", type=float, default=None, help="Unix time: only the jobs finished after it")
    args = ap.parse_args()
    root = Path(args.root)
    exp = Experiment(load_table(args.table), args.profile, root=root, train_seeds=args.train_seeds)
    jobs, after = experiment_jobs(exp, exp.rows(None), skip_done=False)
    seconds, unmeasured = job_seconds(exp, jobs, args.since)
    after = {n: [d for d in after[n] if d in seconds] for n in seconds}
    height = chain_heights(seconds, after)
    path: dict[str, float] = {}
    for name in sorted(seconds, key=lambda n: -height[n]):  # a job's parents are higher: a topological order
        path[name] = seconds[name] + max((path[d] for d in after[name]), default=0.0)
    out = {
        "table": args.table,
        "root": str(root),
        "workers": args.workers,
        "jobs": len(seconds),
        "stages": sum(1 for n in seconds if not n.startswith("eval-")),
        "job_seconds_sum": round(sum(seconds.values()), 1),
        "unmeasured": unmeasured,
        "bound_sum_over_workers_s": round(sum(seconds.values()) / args.workers, 1),
        "critical_path_s": round(max(path.values(), default=0.0), 1),
        "row_order_s": round(replay(seconds, after, args.workers, dict.fromkeys(seconds, 0)), 1),
        "highest_first_s": round(replay(seconds, after, args.workers, height), 1),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
