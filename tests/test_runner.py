import json

import nbformat
import pytest

from reasonact.notebooks import NotebookFailed, list_notebooks, run_notebooks


def _nb(path, *cells):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('PROFILE = "tiny"\nRUN = None\nSEED = 0\nINTERACTIVE = True')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params] + [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


def test_list_notebooks_range(tmp_path):
    for name in ["00_a.ipynb", "01_b.ipynb", "03_c.ipynb", "notes.ipynb"]:
        _nb(tmp_path / name, "x = 1")
    assert [p.name for p in list_notebooks(directory=tmp_path)] == ["00_a.ipynb", "01_b.ipynb", "03_c.ipynb"]
    assert [p.name for p in list_notebooks("01", "02", tmp_path)] == ["01_b.ipynb"]


@pytest.mark.notebook
def test_runner_injects_parameters_and_names_failing_cell(tmp_path):
    books = tmp_path / "nb"
    books.mkdir()
    _nb(
        books / "00_ok.ipynb",
        "import json, pathlib\npathlib.Path(RUN, 'p.json').write_text(json.dumps([PROFILE, SEED, INTERACTIVE]))",
    )
    _nb(books / "01_bad.ipynb", "x = 1", "raise ValueError('broken on purpose')")
    logs = []
    with pytest.raises(NotebookFailed) as e:
        run_notebooks("tiny", run=tmp_path / "run", seed=7, directory=books, log=logs.append)
    msg = str(e.value)
    assert "01_bad.ipynb" in msg and "broken on purpose" in msg and "raise ValueError" in msg
    assert json.loads((tmp_path / "run" / "p.json").read_text()) == ["tiny", 7, False]
    assert (tmp_path / "run" / "notebooks" / "01_bad.ipynb").exists()
    assert any("00_ok.ipynb ok" in line for line in logs)


def test_the_runner_makes_the_model_ready_before_the_first_notebook(tmp_path, monkeypatch):
    """Loading in a notebook never trains: `reasonact run` builds the profile's model first."""
    import papermill

    import reasonact.notebooks as nbs

    calls = []
    monkeypatch.setattr(nbs, "ensure_model", lambda recipe, progress: calls.append(("model", recipe.profile)))
    monkeypatch.setattr(papermill, "execute_notebook", lambda src, *a, **k: calls.append(("run", src[-11:])))
    for name in ["00_a.ipynb", "01_b.ipynb"]:
        _nb(tmp_path / name, "x = 1")
    run_notebooks("tiny", run=tmp_path / "run", directory=tmp_path, log=lambda *a: None)
    assert calls == [("model", "tiny"), ("run", "/00_a.ipynb"), ("run", "/01_b.ipynb")]
