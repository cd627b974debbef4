"""Notebook 01 live in JupyterLab, in headless Chromium: the reward inspector works for a reader.

The unit tests of the inspector (tests/test_inspector.py) check the widget's Python side; this test
checks what only a browser shows: that the notebook runs in JupyterLab with the `reasonact` kernel,
that the widget renders and re-scores when the completion is switched or edited (the ipywidgets round
trip through the kernel), and that its layout fits the notebook column. It also refreshes the README's
screenshot of the inspector (figures/reward_inspector.png). Screenshots go to runs/browser/.
"""

import json
import re
import time

import nbformat
import pytest

from reasonact.config import REPO_ROOT
from reasonact.notebooks import KERNEL  # the kernel `make setup` registers in .venv
from tests.browser import WINDOW, chromium, jupyterlab

pytestmark = [pytest.mark.slow, pytest.mark.browser]

NOTEBOOK = REPO_ROOT / "notebooks" / "01_subaction_library.ipynb"
SHOTS = REPO_ROOT / "runs" / "browser"
FIGURE = REPO_ROOT / "figures" / "reward_inspector.png"
# The inspector's DOM contract (reasonact/viz/inspector.py adds these classes to its widgets)
INSPECTOR = ".ra-inspector"
PARTS = (".ra-legend", ".ra-scores", ".ra-detections", ".ra-timeline svg", ".ra-reasoning")
NEW_COMPLETION = "<think>frames 1-4: the person stands still.</think><answer>wave</answer>"
RUN_TIMEOUT = 240  # s, from "run all" to the inspector on screen (the first run builds data/cache: ~60 s)
SCREEN = 1000  # px: the frames + timeline and the reasoning must fit one screen together

_STATE_JS = """
const app = window.jupyterapp;
if (!app) return {state: 'no jupyterapp'};
const w = app.shell.currentWidget;
if (!w || !w.sessionContext || !w.content) return {state: 'no notebook'};
const kernel = w.sessionContext.session && w.sessionContext.session.kernel;
const node = w.content.node;
// error outputs, from the notebook model: JupyterLab renders an error like a stderr stream
const errors = [];
w.content.widgets.forEach((cell, index) => {
  const json = cell.model.toJSON();
  for (const out of json.outputs || []) {
    if (out.output_type !== 'error') continue;
    const source = [].concat(json.source).join('').trim().split('\\n')[0].slice(0, 70);
    const traceback = (out.traceback || []).join('\\n').replace(/\\x1b\\[[0-9;]*m/g, '');
    errors.push({index: index, cell: source, text: traceback.slice(-1500)});
  }
});
const brokenWidgets = [...node.querySelectorAll('.jp-OutputArea-output')]
  .filter(o => /Error displaying widget/.test(o.innerText))
  .map(o => o.innerText.slice(0, 300));
return {
  state: 'ok', kernel: kernel ? kernel.name : null, status: kernel ? kernel.status : null,
  connection: kernel ? kernel.connectionStatus : null, ready: w.context.isReady,
  found: !!node.querySelector(arguments[0]), errors: errors, brokenWidgets: brokenWidgets,
  runAll: window.raRunAll || null,
};
"""


def _prepare(folder):
    """Copy notebook 01 into `folder` with RUN pointing inside it (INTERACTIVE stays True) and the
    `reasonact` kernel; return its file name."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next((c for c in nb.cells if "parameters" in c.metadata.get("tags", [])), None)
    assert params is not None, f"{NOTEBOOK.name}: no code cell tagged 'parameters'"
    source, n = re.subn(r"(?m)^RUN = None\b.*$", f"RUN = {json.dumps(str(folder / 'run'))}", params.source)
    assert n == 1, f"{NOTEBOOK.name}: the parameters cell has no `RUN = None` line:\n{params.source}"
    params.source = re.sub(r"(?m)^INTERACTIVE = .*$", "INTERACTIVE = True", source)
    nb.metadata["kernelspec"] = {"name": KERNEL, "display_name": "ReasonAct (.venv)", "language": "python"}
    nbformat.write(nb, folder / NOTEBOOK.name)
    return NOTEBOOK.name


def _poll(driver, selector, until, timeout, what):
    """Poll the notebook's state until `until(state)` is true. Fail with `what` and the last state on
    timeout; at once on an error output or a broken widget; and when "run all" has finished (its
    promise resolved, see RUN_ALL_JS) for a few seconds without `until` coming true."""
    t0, state, finished = time.perf_counter(), {}, None
    while time.perf_counter() - t0 < timeout:
        state = driver.execute_script(_STATE_JS, selector)
        if state.get("errors"):
            e = state["errors"][0]
            pytest.fail(f"notebook 01 failed in cell {e['index']} ({e['cell']!r}):\n{e['text']}")
        if state.get("brokenWidgets"):
            pytest.fail(f"notebook 01: a widget does not render: {state['brokenWidgets'][0]}")
        if until(state):
            return state
        if (state.get("runAll") or "").startswith("done") and state.get("status") == "idle":
            finished = finished or time.perf_counter()
            if time.perf_counter() - finished > 5:  # widgets render a moment after their cell finishes
                pytest.fail(f"{what}: the notebook ran to the end without it; last state: {state}")
        time.sleep(0.5)
    pytest.fail(f"{what} within {timeout:.0f} s; last state: {state}")


# Run all cells; record in `window.raRunAll` when the command's promise settles (all cells have run)
RUN_ALL_JS = """
window.raRunAll = 'running';
jupyterapp.commands.execute('notebook:run-all-cells').then(
  ok => { window.raRunAll = 'done: ' + ok; }, err => { window.raRunAll = 'done, failed: ' + err; });
"""


def _total(driver, inspector):
    """The weighted total the inspector shows (the first number of `.ra-total`), its text, the kernel's status."""
    text, status = driver.execute_script(
        "return [arguments[0].querySelector('.ra-total').innerText,"
        " jupyterapp.shell.currentWidget.sessionContext.session.kernel.status];",
        inspector,
    )
    match = re.search(r"-?\d+(?:\.\d+)?", text)
    assert match, f"`.ra-total` shows no number: {text!r}"
    return float(match[0]), text, status


def _wait_total(driver, inspector, changed_from, timeout=30):
    """Wait until the total differs from `changed_from` and has stayed so, with the kernel idle, for a second."""
    t0, last, since = time.perf_counter(), None, time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        value, text, status = _total(driver, inspector)
        if value != last or status != "idle":
            last, since = value, time.perf_counter()
        elif value != changed_from and time.perf_counter() - since >= 1.0:
            return value, text
        time.sleep(0.2)
    pytest.fail(f"`.ra-total` did not change from {changed_from} within {timeout} s (shows {last})")


def _element_screenshot(driver, element, path):
    """Screenshot a whole element even when it is taller than the notebook's scroll area: make the window
    tall enough for a moment (same width, so the same layout), then restore it."""
    width, height = WINDOW
    driver.set_window_size(width, max(height, element.size["height"] + 400))
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    time.sleep(0.5)  # let JupyterLab lay out the taller panel
    element.screenshot(str(path))
    driver.set_window_size(width, height)
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", element)
    time.sleep(0.5)


_LAYOUT_JS = """
const root = arguments[0];
const describe = el => {  // the element, and the nearest ra-* part it is in
  const own = el.tagName.toLowerCase() + [...el.classList].filter(c => !c.startsWith('lm-')).map(c => '.' + c).join('');
  const part = el.parentElement && el.parentElement.closest('[class*="ra-"]');
  const name = part ? [...part.classList].find(c => c.startsWith('ra-')) : null;
  if (!name || el.classList.contains(name)) return own;
  return `.${name} > ${part === el.parentElement ? '' : '… > '}${own}`;
};
const overflowing = [];
for (const el of [root, ...root.querySelectorAll('*')]) {
  if (!(el instanceof HTMLElement) || el.clientWidth === 0) continue;
  const display = getComputedStyle(el).display;
  if (!['block', 'flex', 'grid', 'flow-root', 'list-item', 'table'].includes(display)) continue;
  if (el.scrollWidth <= el.clientWidth + 2) continue;
  const inner = el.getBoundingClientRect().left + el.clientLeft + el.clientWidth;
  const culprits = [...el.children].filter(c => c.getBoundingClientRect().right > inner + 0.5).map(c => {
    const r = c.getBoundingClientRect(), m = getComputedStyle(c);
    return `${describe(c)} (width ${r.width.toFixed(0)} px, margins ${m.marginLeft} ${m.marginRight}, ` +
           `${(r.right - inner).toFixed(0)} px past the edge)`;
  });
  overflowing.push(`${describe(el)}: scrollWidth ${el.scrollWidth} > clientWidth ${el.clientWidth}` +
                   (culprits.length ? '; sticking out: ' + culprits.join('; ') : ''));
}
const box = el => { const r = el.getBoundingClientRect(); return {top: r.top, bottom: r.bottom, right: r.right}; };
const area = root.closest('.jp-Cell-outputArea') || root.closest('.jp-OutputArea');
return {overflowing: overflowing, inspector: box(root), area: area ? box(area) : null,
        timeline: box(root.querySelector('.ra-timeline svg')), reasoning: box(root.querySelector('.ra-reasoning'))};
"""


def test_reward_inspector_in_jupyterlab(tmp_path):
    """Run notebook 01 in JupyterLab (INTERACTIVE = True) and use the reward inspector like a reader:
    switch the completion, then edit its text; the weighted total must follow both (each is a round trip
    through the kernel). Then the layout: nothing overflows the notebook column, every part is visible,
    and the frames + timeline and the highlighted reasoning fit one screen together, so they can be
    read side by side."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    root = tmp_path / "lab"
    root.mkdir()
    name = _prepare(root)
    SHOTS.mkdir(parents=True, exist_ok=True)
    timings = {}
    with chromium() as driver, jupyterlab(root) as lab:
        timings["jupyterlab_start_s"] = round(lab.start_s, 1)
        timings["chromium_start_s"] = round(driver.reasonact_start_s, 1)
        t0 = time.perf_counter()
        driver.get(lab.tree(name))
        try:
            state = _poll(
                driver,
                INSPECTOR,
                lambda s: s.get("ready") and s.get("status") == "idle" and s.get("connection") == "connected",
                90,
                "the notebook did not open with an idle kernel",
            )
            assert state["kernel"] == KERNEL, (
                f"notebook 01 opened with kernel {state['kernel']!r}, not {KERNEL!r}"
            )
            timings["open_notebook_s"] = round(time.perf_counter() - t0, 1)
            driver.execute_script("jupyterapp.shell.collapseLeft(); jupyterapp.shell.collapseRight();")
            t0 = time.perf_counter()
            driver.execute_script(RUN_ALL_JS)
            _poll(driver, INSPECTOR, lambda s: s["found"], RUN_TIMEOUT, f"no `{INSPECTOR}` appeared")
            timings["run_all_to_inspector_s"] = round(time.perf_counter() - t0, 1)

            inspector = driver.find_element(By.CSS_SELECTOR, INSPECTOR)
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", inspector)
            first, first_text, _ = _total(driver, inspector)
            driver.save_screenshot(str(SHOTS / "inspector_before_edit.png"))
            _element_screenshot(driver, inspector, FIGURE)  # the README's picture: the first completion

            menu = Select(inspector.find_element(By.CSS_SELECTOR, ".ra-completion select"))
            current = menu.first_selected_option.get_attribute("value")
            others = [o for o in menu.options if o.get_attribute("value") != current]
            assert others, "the completion dropdown has a single option: nothing to switch to"
            t0 = time.perf_counter()
            menu.select_by_value(others[0].get_attribute("value"))
            switched, switched_text = _wait_total(driver, inspector, first)
            timings["rescore_after_switch_s"] = round(time.perf_counter() - t0, 1)

            editor = inspector.find_element(By.CSS_SELECTOR, ".ra-editor textarea")
            editor.click()
            editor.send_keys(Keys.CONTROL, "a")
            editor.send_keys(NEW_COMPLETION)
            t0 = time.perf_counter()
            edited, edited_text = _wait_total(driver, inspector, switched)
            timings["rescore_after_edit_s"] = round(time.perf_counter() - t0, 1)
            assert editor.get_attribute("value") == NEW_COMPLETION
            driver.execute_script("arguments[0].scrollIntoView({block: 'start'});", inspector)
            driver.save_screenshot(str(SHOTS / "inspector_after_edit.png"))

            for part in PARTS:
                found = inspector.find_elements(By.CSS_SELECTOR, part)
                assert found, f"the inspector has no `{part}`"
                size = found[0].size
                assert found[0].is_displayed() and size["width"] > 0 and size["height"] > 0, (
                    f"`{part}` is not visible (size {size})"
                )
            layout = driver.execute_script(_LAYOUT_JS, inspector)
            assert not layout["overflowing"], "the inspector overflows horizontally:\n" + "\n".join(
                layout["overflowing"]
            )
            assert layout["area"], "the inspector is not inside a notebook cell's output area"
            assert layout["inspector"]["right"] <= layout["area"]["right"] + 1, (
                f"the inspector (right edge {layout['inspector']['right']:.0f} px) sticks out of the notebook "
                f"column (output area right edge {layout['area']['right']:.0f} px)"
            )
            boxes = (layout["timeline"], layout["reasoning"])
            span = max(b["bottom"] for b in boxes) - min(b["top"] for b in boxes)
            assert span <= SCREEN, (
                f"the frames + timeline and the reasoning span {span:.0f} px, more than one screen ({SCREEN} px): "
                "they can't be read together"
            )
        except BaseException:
            driver.save_screenshot(str(SHOTS / "failure.png"))
            print(f"screenshot of the failure: {SHOTS / 'failure.png'}\nJupyterLab log:\n{lab.log_tail()}")
            raise
        finally:
            (SHOTS / "timings.json").write_text(json.dumps(timings, indent=1))
            print("timings:", timings)
    print(f"total: {first_text!r} -> (switched) {switched_text!r} -> (edited) {edited_text!r}")
