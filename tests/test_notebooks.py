"""Notebooks run headless with papermill on the tiny profile; tests assert on their metrics.json.

They run in order into one run folder (as `make pipeline` does), since later notebooks read what
earlier ones wrote. Each notebook is also executed by `reasonact run`, so this tests the runner too.
Last, test_07 opens every executed notebook, exported to HTML, in headless Chromium (tests/browser.py).
"""

import json

import pytest

from reasonact.config import REPO_ROOT, load_config
from reasonact.notebooks import run_notebooks
from tests.browser import (
    chromium,
    export_html,
    full_page_screenshot,
    rendered_notebook_problems,
    screenshot_output_image,
)

pytestmark = [pytest.mark.notebook, pytest.mark.slow]

# Executed notebooks outside the shared `run` folder (test_06 runs in its own), for test_07 to render
EXECUTED = {}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return tmp_path_factory.mktemp("run")


def _metrics(run, stage):
    return json.loads((run / stage / "metrics.json").read_text())


def test_00_data(run):
    run_notebooks("tiny", run=run, start="00", end="00")
    m = _metrics(run, "00_data")
    assert m["synthact_classes"] >= 12 and m["synthact_clips"] > 0
    assert m["sit_stand_reversed"] is True
    assert m["num_frames"] == 16 and m["frame_size"] == 56
    assert m["video_tokens"] == 8 * (56 // 28) ** 2
    assert 0 < m["model_parameters"] < 3_000_000
    assert m["generated_tokens"] > 0


def test_01_subaction_library(run):
    run_notebooks("tiny", run=run, start="01", end="01")
    m = _metrics(run, "01_subaction_library")
    assert m["actions"] == 552 and m["classes_missing"] == 0
    assert m["unique_sub_actions"] > 1000 and m["shared_across_datasets"] > 0
    assert m["phrasing_cohesion_share"] >= 0.9
    assert m["embedding_cache_speedup"] >= 10
    r = m["example_rewards"]
    assert r["good"] > r["shuffled"] > r["missing"] > r["wrong"]
    assert (run / "01_subaction_library" / "embedding_map.png").is_file()


def test_02_cot_generation(run):
    run_notebooks("tiny", run=run, start="02", end="02")
    m = _metrics(run, "02_cot_generation")
    assert m["kept"] > 0 and m["kept_share_of_teacher_chains"] >= 0.9
    assert sum(m["rejected_by_rule"].values()) == m["rejected"] > 0
    assert m["fre_rows"] > 0
    from datasets import load_from_disk

    assert len(load_from_disk(m["cot_dataset"])) == m["kept"]


def test_03_fre(run):
    run_notebooks("tiny", run=run, start="03", end="03")
    m = _metrics(run, "03_fre")
    nb = m["notebook"]
    assert m["steps"] == 200 and (run / "03_fre" / "adapter" / "adapter_config.json").is_file()
    assert m["train_loss_last"] < m["train_loss_first"] - 2  # the reasoning vocabulary is learned
    assert nb["held_out_format_after"] > nb["held_out_format_before"]
    assert (run / "03_fre" / "loss.png").is_file()


def test_04_video_sft(run):
    run_notebooks("tiny", run=run, start="04", end="04")
    m = _metrics(run, "04_video_sft")
    nb = m["notebook"]
    assert m["merged_adapters"] == [str(run / "03_fre" / "adapter")]  # V-SFT starts from FRE
    assert nb["val_clips"] == 96 and nb["val_format_after"] > 0.9
    # it must learn: chance is 1/12; measured 0.81 greedy after 300 steps (BENCHMARKS.md)
    assert nb["val_accuracy_after"] > 3 * nb["chance"] > nb["val_accuracy_before"]
    vsft = load_config("tiny").vsft
    assert [e["step"] for e in m["eval_curve"]] == list(range(0, vsft.max_steps + 1, vsft.eval_steps))
    assert (run / "04_video_sft" / "curves.png").is_file()


def test_05_tgrpo(run):
    run_notebooks("tiny", run=run, start="05", end="05")
    m = _metrics(run, "05_tgrpo")
    nb = m["notebook"]
    assert m["steps"] == load_config("tiny").tgrpo.max_steps
    assert (run / "05_tgrpo" / "adapter" / "adapter_config.json").is_file()
    assert nb["val_before"]["clips"] == nb["val_after"]["clips"] == 24
    assert m["last_log"]["kl"] > 0  # the policy moved away from the start model
    assert "rewards/accuracy" in m["last_log"] and "tgrpo/bonus_group_share" in m["last_log"]
    assert (run / "05_tgrpo" / "reward_curves.png").is_file()


def test_06_evaluation_on_its_own_run(tmp_path):
    """Notebook 06 alone (independent of notebooks 03-05): a fresh run has no adapter, so it evaluates the
    base on one test clip per class, and shows the experiment table it finds in EXPERIMENTS."""
    from reasonact.data.synthact import CLASSES
    from reasonact.eval import tables as xt
    from reasonact.eval.experiments import load_table

    spec_file = tmp_path / "t.yaml"
    spec_file.write_text("rows:\n  - {name: b, label: Base, stages: []}\n")
    spec = load_table(spec_file)
    acc = {"per_seed": {"1": 0.25, "11": 0.5}}
    runs = [
        {"row": "b", "train_seed": None, "stages": [], "eval": {"key": "e", "metrics": {"accuracy": acc}}}
    ]
    xt.write_outputs(xt.build_table(spec, spec.select(), runs), tmp_path / "xp" / "t_tiny")
    run = tmp_path / "run"
    EXECUTED["06"] = run / "notebooks" / "06_evaluation.ipynb"
    run_notebooks("tiny", run=run, start="06", end="06", params={"EXPERIMENTS": str(tmp_path / "xp")})
    m = _metrics(run, "06_evaluation")
    assert (m["stage"], m["source"], m["clips"]) == ("base", "evaluated here", len(CLASSES))
    assert m["seeds"] == [1, 11, 21, 31, 41] and 0 <= m["accuracy"] <= 1
    assert m["format"] >= 0.8  # the committed base writes the answer format (95.0% in Table 1), no class name
    assert set(m["per_class"]) == set(CLASSES) and set(m["order_only"]) == {"ordered", "shuffled"}
    assert m["examples"]["wrong"] + m["examples"]["right"] >= 1 and m["experiment_tables"] == ["t_tiny"]
    for name in ("per_class.png", "confusion.png", "order_only.png"):
        assert (run / "06_evaluation" / name).is_file()


# Output images (figures) each executed notebook must show at least, by notebook number
MIN_IMAGES = {"00": 3, "01": 2, "02": 1, "03": 1, "04": 2, "05": 1, "06": 2}
# stderr outputs a rendered notebook may show: name -> regex on the output's text. Empty on purpose: a
# warning in a notebook is a bug to fix there. To accept one, name it and match it narrowly, e.g.
#   "torch sdpa fallback": r"UserWarning: .*scaled_dot_product_attention",
ALLOWED_STDERR: dict[str, str] = {}
# The README's picture of notebook 00's decoded frames: the image output of the cell with this source
FRAMES_CELL = ("00", "frame_strip(video.frames", REPO_ROOT / "figures" / "notebook00_frames.png")


@pytest.mark.browser
def test_07_notebooks_render_in_a_browser(run):
    """Every notebook the tests above executed, exported to HTML (nbconvert, lab template) and opened in
    headless Chromium, reads right: one <h1> (the title) and prose in paragraphs, not a heading per line;
    figures as images that load (at least MIN_IMAGES of them), not `<Figure size ...>` reprs; no error
    or stderr output (but ALLOWED_STDERR); no widget outputs, which a reopened notebook shows as "Error
    displaying widget: model not found". Every failure names the notebook and the cell.

    Full-page screenshots go to `run`/screenshots, and notebook 00's decoded frames to
    figures/notebook00_frames.png (the README shows it).
    """
    books = {p.name[:2]: p for p in sorted((run / "notebooks").glob("[0-9][0-9]_*.ipynb"))}
    books |= {k: p for k, p in EXECUTED.items() if p.is_file()}
    problems = [
        f"notebook {key} was not executed in this session: run the whole file (test_{key}_... executes it)"
        for key in sorted(set(MIN_IMAGES) - set(books))
    ]
    with chromium() as driver:
        for key, notebook in sorted(books.items()):
            html = export_html(notebook, run / "html")
            problems += rendered_notebook_problems(
                driver, html, notebook, MIN_IMAGES.get(key, 0), ALLOWED_STDERR
            )
            full_page_screenshot(driver, run / "screenshots" / f"{notebook.stem}.png")
            if key == FRAMES_CELL[0]:
                problem = screenshot_output_image(driver, html, notebook, FRAMES_CELL[1], FRAMES_CELL[2])
                problems += [problem] if problem else []
    assert not problems, (
        f"{len(problems)} problem(s) in the rendered notebooks (HTML and screenshots under {run}):\n"
        + "\n".join(problems)
    )
