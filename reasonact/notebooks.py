"""Run the numbered notebooks in order with papermill (``reasonact run``, ``make pipeline``).

First the profile's model is made ready (``train.base.ensure_model``: the tiny profile's perception base
is built if it is missing, since loading in a notebook never trains). Each notebook gets its
``parameters`` cell overridden (PROFILE, RUN, SEED, INTERACTIVE=False) and is saved, executed, under
``<run>/notebooks/``. A failing notebook stops the run with an error that names the notebook and the
cell, and the executed copy keeps the traceback for reading.
"""

from __future__ import annotations

import functools
import re
import time
from pathlib import Path

from reasonact.config import REPO_ROOT, load_config
from reasonact.train.base import ensure_model

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
KERNEL = "reasonact"  # registered inside .venv by `make setup`


class NotebookFailed(RuntimeError):
    """Names the notebook, the failing cell (its index in the executed copy and first line) and the error."""

    def __init__(self, notebook: Path, cell: int, source: str, ename: str, evalue: str, executed: Path):
        self.notebook, self.cell = notebook, cell
        first = (source.strip().splitlines() or [""])[0][:80]
        super().__init__(
            f"{notebook.name} failed in cell {cell} ({first!r}): {ename}: {evalue}\n"
            f"  executed copy with the traceback: {executed}"
        )


def list_notebooks(
    start: str | None = None, end: str | None = None, directory: Path = NOTEBOOK_DIR
) -> list[Path]:
    """Notebooks named ``NN_*.ipynb`` in order, from ``start`` to ``end`` inclusive (``"03"`` or ``3``)."""
    books = sorted(p for p in directory.glob("*.ipynb") if re.match(r"^\d\d_", p.name))
    lo = int(start) if start is not None else -1
    hi = int(end) if end is not None else 100
    return [p for p in books if lo <= int(p.name[:2]) <= hi]


def run_notebooks(
    profile: str = "tiny",
    run: str | Path | None = None,
    start: str | None = None,
    end: str | None = None,
    seed: int = 42,
    params: dict | None = None,
    directory: Path = NOTEBOOK_DIR,
    kernel: str = KERNEL,
    log=None,
) -> list[dict]:
    """Execute the notebooks; return one dict per notebook with its name, seconds and output path."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    log = log or functools.partial(print, flush=True)
    run_dir = Path(run) if run else REPO_ROOT / "runs" / profile
    run_dir = run_dir if run_dir.is_absolute() else (Path.cwd() / run_dir)
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    books = list_notebooks(start, end, directory)
    if not books:
        raise FileNotFoundError(f"no notebooks NN_*.ipynb in {directory} between {start} and {end}")
    parameters = {
        "PROFILE": profile,
        "RUN": str(run_dir),
        "SEED": seed,
        "INTERACTIVE": False,
        **(params or {}),
    }
    results = []
    log(f"model: {ensure_model(load_config(profile), progress=True)}")
    log(f"running {len(books)} notebook(s) on profile '{profile}' -> {run_dir}")
    for nb in books:
        executed = out_dir / nb.name
        t0 = time.time()
        log(f"  {nb.name} ...")
        try:
            pm.execute_notebook(
                str(nb),
                str(executed),
                parameters=parameters,
                kernel_name=kernel,
                cwd=str(directory),
                language="python",
                progress_bar=False,
                log_output=False,
            )
        except PapermillExecutionError as e:
            log(f"  {nb.name} FAILED after {time.time() - t0:.1f} s")
            raise NotebookFailed(nb, e.cell_index, e.source, e.ename, e.evalue, executed) from None
        dt = time.time() - t0
        log(f"  {nb.name} ok ({dt:.1f} s)")
        results.append({"notebook": nb.name, "seconds": round(dt, 1), "executed": str(executed)})
    return results
