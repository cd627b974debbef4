"""Side by side: a table's independent stages and evaluations in several processes (``--jobs``).

``run_jobs`` runs each job once the jobs it needs have finished, at most ``workers`` at a time, each in a
spawned process with its own torch threads. On 2 cores, 2 jobs x 1 thread took 0.64 of the serial wall time for
a reduced Table 1 (BENCHMARKS.md, "Two stages side by side"). What jobs share (the data a stage trains on,
the test manifests, the tiny base) is made under ``paths.locked``: one job makes it, the others wait.
"""

from __future__ import annotations

import copy
import multiprocessing as mp
import os
import sys
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from reasonact import paths


def _worker(threads: int) -> None:
    """A worker's start: its torch threads, and stdout to stderr (the trainers print their logs; a
    ``--json`` command's stdout must stay one JSON object)."""
    import torch

    torch.set_num_threads(threads)
    sys.stdout = sys.stderr


def chain_heights(jobs, after) -> dict[str, int]:
    """Each job's longest chain of jobs waiting on it, itself included (a cycle counts 0). Ready jobs start
    highest first: a seed's training chain does not wait behind evaluations and end up running alone."""
    needed_by = {n: [m for m in jobs if n in after.get(m, ())] for n in jobs}
    height: dict[str, int] = {}

    def h(n, seen=()):
        if n in seen:
            return 0
        if n not in height:
            height[n] = 1 + max((h(m, (*seen, n)) for m in needed_by[n]), default=0)
        return height[n]

    return {n: h(n) for n in jobs}


def ready_order(jobs, after, done, taken, height) -> list[str]:
    """The jobs that can start now (not ``taken``, everything they need ``done``), highest ``height`` first;
    equal heights keep the order of ``jobs`` (``bench/schedule.py`` replays the runner with this)."""
    ready = [n for n in jobs if n not in taken and set(after.get(n, ())) <= done]
    return sorted(ready, key=lambda n: -height[n])


def run_jobs(jobs: dict[str, tuple], after: dict[str, list[str]], workers: int, threads: int | None = None,
             log=print) -> dict[str, Any]:  # fmt: skip
    """``jobs``: {name: (function, *args)} (picklable); ``after``: {name: [jobs it needs first]}. Returns
    {name: result}. ``threads``: torch threads per process (default: the cores shared out). When a job fails,
    the running ones finish, no other starts, and the error names the job (finished work stays on disk)."""
    unknown = sorted({d for need in after.values() for d in need} - set(jobs))
    if unknown:
        raise ValueError(f"jobs depend on unknown jobs: {unknown}")
    if workers > 1 and paths.fcntl is None:
        raise RuntimeError("jobs side by side need POSIX file locks (fcntl); run them one at a time here")
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    height = chain_heights(jobs, after)
    results, running, failed = {}, {}, None
    ctx = mp.get_context("spawn")  # a fresh interpreter: no torch state forked from the parent
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker, initargs=(threads,)) as pool:
        while True:
            ready = ready_order(jobs, after, set(results), set(results) | set(running.values()), height)
            for name in ready[: (workers - len(running)) if failed is None else 0]:
                fn, *args = jobs[name]
                running[pool.submit(fn, *args)] = name
                log(f"[jobs] {name}: started ({len(results)}/{len(jobs)} done)")
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                name = running.pop(future)
                try:
                    results[name] = future.result()
                except Exception as e:
                    failed = failed or (name, e)
    if failed:
        raise RuntimeError(f"job {failed[0]} failed: {failed[1]}") from failed[1]
    if len(results) < len(jobs):
        raise ValueError(f"jobs that can never start (a cycle): {sorted(set(jobs) - set(results))}")
    return results


def stderr_log(*args) -> None:
    """A worker's log: stderr, so that a ``--json`` command's stdout stays one JSON object."""
    print(*args, file=sys.stderr, flush=True)


def experiment_jobs(exp, rows, skip_done: bool = True) -> tuple[dict, dict]:
    """The stages and evaluations that ``rows`` of an ``Experiment`` need, as ``run_jobs``' ``(jobs, after)``;
    with ``skip_done`` only those not done yet."""
    child = copy.copy(exp)
    child.log, child.progress = stderr_log, False
    todo = lambda d: not (skip_done and (d / "done.json").is_file())  # noqa: E731
    jobs, after = {}, {}
    for t in exp.train_seeds:
        for row in rows:
            node = exp.chain(row, t)
            for n in node.lineage():
                if todo(exp.stage_dir(n)):
                    jobs[n.key] = (child.ensure_stage, n)
                    after[n.key] = [n.parent.key]
            for order in [False, True] if exp.order_clips else [False]:
                if todo(exp.eval_dir(node, order)):
                    name = exp.eval_dir(node, order).name
                    jobs[name], after[name] = (child.ensure_eval, node, order), [node.key]
    return jobs, {name: [d for d in need if d in jobs] for name, need in after.items()}


def run_experiment_jobs(exp, rows, workers: int) -> None:
    """Train and evaluate what ``rows`` of an ``Experiment`` need and is not done yet, side by side; the
    experiment's serial pass then finds every stage and evaluation done and assembles the table."""
    jobs, after = experiment_jobs(exp, rows)
    if jobs:
        run_jobs(jobs, after, workers, log=exp.log)
