"""Headless Chromium (through selenium) and a throwaway JupyterLab server, for the browser tests.

The browser tests look at the notebooks the way a reader does: executed notebooks exported to HTML
(tests/test_notebooks.py) and notebook 01 live in JupyterLab (tests/test_browser.py). They drive the
system Chromium and its chromedriver (Debian packages `chromium` and `chromium-driver`; `make browser`
installs them). Selenium Manager is never asked to download a browser or a driver, and the browser
resolves no host but 127.0.0.1, so a test never depends on the network (the CDN scripts an exported
notebook refers to simply fail to load). A missing or broken browser FAILS the tests; it never skips them.

`python -m tests.browser <folder of executed notebooks>` runs the rendering checks of
test_07_notebooks_render_in_a_browser on any folder (e.g. `runs/tiny/notebooks` after `make pipeline`).
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from reasonact.config import REPO_ROOT

CHROMIUM = os.environ.get("REASONACT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("REASONACT_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = (
    "install them with `make browser` (as root on Debian/Ubuntu: apt-get install chromium chromium-driver), "
    "or point REASONACT_CHROMIUM / REASONACT_CHROMEDRIVER at a Chromium and its matching chromedriver"
)
WINDOW = (1400, 1000)

# What nbconvert's lab template renders for the outputs the rendering checks forbid (nbconvert 7.17):
# an `error` output and a stderr stream look the same (the error's traceback in a stderr box), so the
# checks tell them apart by the notebook's output_type; a widget view whose model state was saved in the
# notebook becomes a `.jupyter-widgets` div with the view's JSON in a script (without the state, its
# text/plain repr is rendered instead, e.g. a progress bar frozen at "0%").
STDERR_MIME = "application/vnd.jupyter.stderr"  # `.jp-OutputArea-output[data-mime-type="<this>"]`
WIDGET_SELECTOR = (
    '.jp-OutputArea-output.jupyter-widgets, script[type="application/vnd.jupyter.widget-view+json"]'
)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
MATPLOTLIB_REPR = re.compile(r"<Figure size [\d.]+x[\d.]+ with \d+ Axes>|<matplotlib\.[\w.]+")


# --------------------------------------------------------------------------------------------- Chromium


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


@contextmanager
def chromium(window: tuple[int, int] = WINDOW) -> Iterator:
    """A headless Chromium WebDriver with a fresh profile, quit on exit.

    Fails the calling test (with the reason and how to install) when Chromium, chromedriver or selenium
    is missing or the browser does not start.
    """
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.isfile(p) and os.access(p, os.X_OK))]
    if missing:
        pytest.fail(
            f"the browser tests need Chromium and chromedriver; not found: {', '.join(missing)}. {INSTALL_HINT}"
        )
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError as e:
        pytest.fail(f"selenium is not installed ({e}): run `make setup` (it is in the dev extra)")
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download a browser or a driver
    with tempfile.TemporaryDirectory(prefix="reasonact-chromium-") as tmp:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--window-size={window[0]},{window[1]}",
            f"--user-data-dir={tmp}/profile",
            "--force-device-scale-factor=1",
            "--lang=en-US",
            # no network: CDN scripts of exported notebooks fail at once instead of hanging or, on a
            # machine with network, rendering differently (only the local JupyterLab is reachable)
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        ):
            options.add_argument(flag)
        log = Path(tmp) / "chromedriver.log"
        t0 = time.perf_counter()
        try:
            driver, error = (
                webdriver.Chrome(service=Service(CHROMEDRIVER, log_output=str(log)), options=options),
                None,
            )
        except WebDriverException as e:
            driver, error = None, e.msg or str(e)
        if error is not None:  # failed outside the except block: no chained traceback around the message
            pytest.fail(
                f"Chromium ({CHROMIUM}) did not start through chromedriver ({CHROMEDRIVER}): {error}\n"
                f"chromedriver log (end):\n{_tail(log, 1500)}\n{INSTALL_HINT}"
            )
        driver.reasonact_start_s = time.perf_counter() - t0
        try:
            driver.set_page_load_timeout(120)
            driver.set_window_size(*window)
            yield driver
        finally:
            driver.quit()


def full_page_screenshot(driver, path: Path, max_height: int = 30000) -> Path:
    """Save the whole page (not only the window) as a PNG, through the DevTools protocol."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], max_height), "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


# ------------------------------------------------------------------------------------------- JupyterLab


@dataclass
class Lab:
    """A running JupyterLab: its base URL, token, root folder, log file and server process."""

    url: str
    token: str
    root: Path
    log: Path
    process: subprocess.Popen
    start_s: float

    def tree(self, path: str) -> str:
        """The URL that opens `path` (relative to the root) in JupyterLab."""
        return f"{self.url}/lab/tree/{path}?token={self.token}"

    def log_tail(self, n: int = 3000) -> str:
        return _tail(self.log, n)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Lab settings for a test: no news or update popups, every cell rendered (no virtual scrolling), no autosave
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


@contextmanager
def jupyterlab(root: Path, timeout: float = 90) -> Iterator[Lab]:
    """Start `.venv/bin/jupyter lab` on 127.0.0.1 (free port, random token) serving `root`; stop it on exit.

    Settings, workspaces and runtime files go to a temp folder, so neither the user's JupyterLab
    settings nor this run leak in or out. `window.jupyterapp` is exposed for the test to drive.
    """
    jupyter = REPO_ROOT / ".venv" / "bin" / "jupyter"
    if not jupyter.is_file():
        pytest.fail(f"{jupyter} not found: run `make setup`")
    token, port = secrets.token_hex(16), _free_port()
    with tempfile.TemporaryDirectory(prefix="reasonact-lab-") as tmp:
        tmp = Path(tmp)
        for name, value in LAB_SETTINGS.items():
            (tmp / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp / "settings" / name).write_text(json.dumps(value))
        (tmp / "workspaces").mkdir()
        env = {
            **os.environ,
            "JUPYTER_CONFIG_DIR": str(tmp / "config"),
            "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        cmd = [
            str(jupyter), "lab", "--no-browser", "--allow-root",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
            f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={token}",
            "--ServerApp.terminals_enabled=False",
            "--LabApp.expose_app_in_browser=True",
            "--LabApp.news_url=None",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            f"--LabServerApp.user_settings_dir={tmp / 'settings'}",
            f"--LabServerApp.workspaces_dir={tmp / 'workspaces'}",
        ]  # fmt: skip
        log = tmp / "jupyterlab.log"
        t0 = time.perf_counter()
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        lab = Lab(f"http://127.0.0.1:{port}", token, Path(root), log, proc, 0.0)
        try:
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"JupyterLab exited with code {proc.returncode} on start:\n{lab.log_tail()}")
                if time.perf_counter() - t0 > timeout:
                    pytest.fail(f"JupyterLab did not answer within {timeout:.0f} s:\n{lab.log_tail()}")
                try:
                    req = urllib.request.Request(
                        f"{lab.url}/api/status", headers={"Authorization": f"token {token}"}
                    )
                    with urllib.request.urlopen(req, timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.25)
            lab.start_s = time.perf_counter() - t0
            yield lab
        finally:
            _stop(lab)


def _stop(lab: Lab) -> None:
    """Shut the server down (it stops its kernels), then terminate, then kill its process group."""
    proc = lab.process
    if proc.poll() is None:
        try:
            req = urllib.request.Request(
                f"{lab.url}/api/shutdown", method="POST", headers={"Authorization": f"token {lab.token}"}
            )
            urllib.request.urlopen(req, timeout=5).close()
            proc.wait(timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    try:  # kernels the server started and left behind (same process group, started by us)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------ executed notebooks, rendered as HTML


def export_html(notebook: Path, out_dir: Path) -> Path:
    """Convert an executed notebook to HTML with nbconvert's lab template (what `jupyter nbconvert --to
    html` and GitHub-like viewers show); return the .html path."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(notebook, as_version=4)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(
        nb, resources={"metadata": {"name": notebook.stem}}
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{notebook.stem}.html"
    path.write_text(body, encoding="utf-8")
    return path


# One round trip: per rendered cell, its id, headings, paragraphs and outputs (mime type, text, images)
_COLLECT_JS = """
const widgetSel = arguments[0];
const cells = [...document.querySelectorAll('.jp-Cell')].map(cell => ({
  id: cell.id.replace(/^cell-id=/, ''),
  markdown: cell.classList.contains('jp-MarkdownCell'),
  h1: [...cell.querySelectorAll('h1')].map(h => h.innerText.replace(/¶$/, '').trim()),
  paragraphs: cell.querySelectorAll('.jp-MarkdownOutput p').length,
  outputs: [...cell.querySelectorAll('.jp-OutputArea-child')].map(child => {
    const out = child.querySelector('.jp-OutputArea-output');
    return {
      mime: out ? out.getAttribute('data-mime-type') : null,
      widget: !!(child.matches(widgetSel) || child.querySelector(widgetSel)),
      text: out ? out.innerText.slice(0, 4000) : '',
      images: [...child.querySelectorAll('img')].map(img => ({
        loaded: img.complete && img.naturalWidth > 0, width: img.naturalWidth, height: img.naturalHeight,
        src: (img.getAttribute('src') || '').slice(0, 40)})),
    };
  }),
}));
return {cells: cells, h1: document.querySelectorAll('h1').length};
"""


def _label(nb_name: str, index: int, cell) -> str:
    first = next((ln.strip() for ln in cell.source.splitlines() if ln.strip()), "")
    return f"{nb_name} cell {index} ({first[:60]!r})"


_LIST_OR_BLOCK = re.compile(r"^([-*+]\s|\d+[.)]\s|\||<|!\[|>|(-{3,}|\*{3,}|_{3,}|={3,})$|\$\$)")


def has_prose(markdown: str) -> bool:
    """Whether a markdown cell's source has prose (a sentence that must render as a <p>).

    Lists, tables, HTML, images, rules, math blocks, code and continuation lines don't count; a heading
    line counts when it reads like prose behind `#` marks (over ten words, or a sentence ending in '.'),
    which is the bug of markdown cells whose every line started with `# `.
    """
    fence = False
    for line in markdown.splitlines():
        s = line.strip()
        if s.startswith(("```", "~~~")):
            fence = not fence
            continue
        if fence or not s or line[:1] in (" ", "\t"):
            continue
        heading = re.match(r"^#{1,6}(\s+|$)", s)
        text = s[heading.end() :] if heading else s
        if heading:
            words = re.findall(r"[^\W\d_][\w'’-]*", text)
            if len(words) > 10 or (len(words) >= 3 and text.endswith(".")):
                return True
        elif not _LIST_OR_BLOCK.match(s) and re.search(r"[^\W\d_]{2,}", s):
            return True
    return False


def rendered_notebook_problems(
    driver, html: Path, notebook: Path, min_images: int = 0, allowed_stderr: dict[str, str] | None = None
) -> list[str]:
    """Load `html` (exported from the executed `notebook`) in Chromium; return what a reader would see
    wrong, one line per problem naming the notebook and the cell. Checks:

    - exactly one <h1> (the title), and a <p> in every markdown cell that has prose;
    - no matplotlib repr (`<Figure size ...>`) as an output, every output image loaded, at least
      `min_images` of them;
    - no error output, and no stderr output unless its text matches a pattern of `allowed_stderr`
      ({name: regex});
    - no widget output (saved widget views show "Error displaying widget: model not found" when the
      notebook is reopened, and nothing in an exported page).
    """
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    name, allowed = notebook.name, allowed_stderr or {}
    driver.get(html.resolve().as_uri())
    data = driver.execute_script(_COLLECT_JS, WIDGET_SELECTOR)
    by_id = {c.get("id"): i for i, c in enumerate(nb.cells) if c.get("id")}
    problems, images = [], 0
    h1s = []
    for pos, rendered in enumerate(data["cells"]):
        index = by_id.get(rendered["id"], pos)
        cell = nb.cells[index]
        where = _label(name, index, cell)
        h1s += [f"{where}: {t[:70]!r}" for t in rendered["h1"]]
        if rendered["markdown"]:
            if rendered["paragraphs"] == 0 and has_prose(cell.source):
                problems.append(f"{where}: markdown with prose renders no <p> (every line a heading?)")
            continue
        outputs = cell.get("outputs", [])
        for k, out in enumerate(rendered["outputs"]):
            source = outputs[k] if len(outputs) == len(rendered["outputs"]) else {}
            text = out["text"].strip()
            if source.get("output_type") == "error":
                problems.append(
                    f"{where}: error output {source.get('ename')}: {str(source.get('evalue'))[:300]}"
                )
            elif out["mime"] == STDERR_MIME:
                ok = [n for n, pattern in allowed.items() if re.search(pattern, text)]
                if not ok:
                    problems.append(f"{where}: stderr output (not in the allow-list): {text[:300]!r}")
            if MATPLOTLIB_REPR.search(text):
                problems.append(
                    f"{where}: a matplotlib repr instead of a figure: {MATPLOTLIB_REPR.search(text)[0]!r}"
                )
            if out["widget"] or WIDGET_MIME in source.get("data", {}):
                shown = text or str(source.get("data", {}).get("text/plain", ""))
                problems.append(
                    f"{where}: a widget output ({shown[:80]!r}); reopened, it shows 'Error displaying widget: "
                    "model not found' (with INTERACTIVE False, show a static output: tqdm without widgets...)"
                )
            for img in out["images"]:
                if img["loaded"]:
                    images += 1
                else:
                    problems.append(f"{where}: an output image did not load ({img['src']}...)")
        if len(outputs) != len(rendered["outputs"]):
            errors = [o for o in outputs if o.get("output_type") == "error"]
            problems += [
                f"{where}: error output {o.get('ename')}: {str(o.get('evalue'))[:300]}" for o in errors
            ]
            problems += [f"{where}: a widget output" for o in outputs if WIDGET_MIME in o.get("data", {})]
    if data["h1"] != 1:
        more = [f"... and {len(h1s) - 8} more"] if len(h1s) > 8 else []
        problems.append(
            f"{name}: {data['h1']} <h1> headings, expected exactly one (the title):\n    "
            + "\n    ".join(h1s[:8] + more)
        )
    if images < min_images:
        problems.append(f"{name}: {images} output image(s) shown, expected at least {min_images}")
    return problems


def screenshot_output_image(driver, html: Path, notebook: Path, needle: str, path: Path) -> str | None:
    """Save an element screenshot of the first output image of the (first) cell whose source contains
    `needle`, from the rendered `html`. Return a problem (str) when there is no such cell or image."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    hits = [(i, c) for i, c in enumerate(nb.cells) if c.cell_type == "code" and needle in c.source]
    if not hits:
        return f"{notebook.name}: no code cell contains {needle!r}"
    index, cell = hits[0]
    if driver.current_url != html.resolve().as_uri():
        driver.get(html.resolve().as_uri())
    img = driver.execute_script(
        "const c = document.getElementById(arguments[0]) || document.querySelectorAll('.jp-Cell')[arguments[1]];"
        "return c && c.querySelector('.jp-OutputArea-output img');",
        f"cell-id={cell.get('id')}",
        index,
    )
    if img is None:
        return f"{_label(notebook.name, index, cell)}: no output image to screenshot"
    path.parent.mkdir(parents=True, exist_ok=True)
    img.screenshot(str(path))
    return None


def check_folder(folder: Path, out: Path | None = None) -> list[str]:
    """The rendering checks (no image minimums) on every NN_*.ipynb of a folder; HTML and screenshots go
    to `out` (default: a temp folder). For trying the checks outside pytest."""
    out = out or Path(tempfile.mkdtemp(prefix="reasonact-render-"))
    problems = []
    with chromium() as driver:
        for nb in sorted(folder.glob("[0-9][0-9]_*.ipynb")):
            html = export_html(nb, out / "html")
            problems += rendered_notebook_problems(driver, html, nb)
            full_page_screenshot(driver, out / "screenshots" / f"{nb.stem}.png")
    print(f"HTML and screenshots in {out}")
    return problems


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.browser <folder with executed NN_*.ipynb>")
    found = check_folder(Path(sys.argv[1]))
    print("\n".join(found) or "no problems")
    sys.exit(1 if found else 0)
