"""Progress bars that render in JupyterLab, print to a terminal, and stay quiet in batch logs.

tqdm's notebook bar is an ipywidget: once the notebook is saved and reopened its model is gone and
JupyterLab shows "Error displaying widget: model not found". In a Jupyter kernel this bar is plain HTML
(a ``<progress>`` element updated through a display handle), which survives saving; at the end it is
replaced by one line saying what was done and how long it took. In a terminal it is tqdm on stderr.
Callers pass ``enabled=False`` in batch runs (papermill, ``--json``), where nothing is printed.

Hugging Face's own bars (loading weights, saving a dataset: seconds at most here) are switched off by
``import reasonact`` through ``HF_HUB_DISABLE_PROGRESS_BARS`` / ``HF_DATASETS_DISABLE_PROGRESS_BARS``
(set them to 0 to get them back).
"""

from __future__ import annotations

import html
import time


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progress:
    """``with Progress(total, "what") as bar: ... bar.update(n)``; or iterate ``progress(items, ...)``."""

    def __init__(self, total: int | None, desc: str = "", unit: str = "it", enabled: bool = True):
        self.total, self.desc, self.unit, self.n = total, desc, unit, 0
        self.enabled = enabled
        self._handle = self._tqdm = None
        self._t0 = self._shown = time.perf_counter()
        if not enabled:
            return
        if _in_kernel():
            from IPython.display import HTML, display

            self._handle = display(HTML(self._html()), display_id=True)
        else:
            from tqdm import tqdm

            self._tqdm = tqdm(total=total, desc=desc, unit=unit)

    def _html(self, done: bool = False) -> str:
        elapsed = time.perf_counter() - self._t0
        what = html.escape(self.desc)
        if done:
            return f"<span style='font-size:12px'>{what}: {self.n} {self.unit} in {elapsed:.1f} s</span>"
        of = f" / {self.total}" if self.total else ""
        bar = f"<progress value='{self.n}' max='{self.total or 1}' style='width:240px'></progress>"
        return f"<span style='font-size:12px'>{bar} {what}: {self.n}{of} {self.unit} ({elapsed:.0f} s)</span>"

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self._handle is not None and time.perf_counter() - self._shown > 0.25:  # at most 4 redraws/s
            from IPython.display import HTML

            self._shown = time.perf_counter()
            self._handle.update(HTML(self._html()))

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self._handle is not None:
            from IPython.display import HTML

            self._handle.update(HTML(self._html(done=True)))
        self._tqdm = self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def progress(iterable, total: int | None = None, desc: str = "", unit: str = "it", enabled: bool = True):
    """Iterate ``iterable`` with a progress bar (see the module's docstring)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)
    with Progress(total, desc, unit, enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)
