# ReasonAct. `make pipeline` runs every notebook on the tiny profile; `make test` runs the tests.
# Both call `make setup`, which is idempotent (a stamp file makes a second run take seconds).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-done
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup git-filters browser pipeline lab test test-fast lint format lock clean

setup: $(STAMP) git-filters

# nbstripout as a git filter: outputs of a notebook run in JupyterLab never show up in `git diff`.
# Not 'required': with .venv gone (make clean) git passes notebooks through instead of failing.
# Cheap and idempotent, so it also runs on an already set-up checkout; a no-op outside a git work tree.
git-filters: $(STAMP)
	@if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then $(VENV)/bin/nbstripout --install && git config filter.nbstripout.required false; fi

# torch first: on a CPU machine `torch==2.13.0` is the local CPU wheel; any other torch request
# pulls several GB of CUDA packages (README, "Notes on the stack"). Everything else then installs under
# constraints.txt, which pins torch==2.13.0 and the exact versions CI tested.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	PIP_CONSTRAINT=$(CURDIR)/constraints.txt $(PY) -m pip install -q -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name reasonact --display-name "ReasonAct (.venv)" >/dev/null
	@touch $@
	@echo "setup done: $(VENV) ($$($(PY) -c 'import torch; print("torch", torch.__version__)'))"

pipeline: setup
	$(VENV)/bin/reasonact run --profile tiny

# JupyterLab on the notebooks; pick the kernel "ReasonAct (.venv)" (registered by setup).
lab: setup
	$(VENV)/bin/jupyter lab notebooks/

# The browser tests (tests/browser.py) drive the system Chromium through its chromedriver. CI runs as
# root on a fresh Debian machine, so this installs both with apt-get when either is missing.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	 echo "installing chromium and chromium-driver with apt-get (the browser tests need them)"; \
	 { apt-get update -q && apt-get install -y -q chromium chromium-driver; } || \
	   { echo "make browser: chromium/chromium-driver could not be installed with apt-get:" \
	          "the browser tests need them (as root: apt-get install chromium chromium-driver)" >&2; exit 1; }; \
	 command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	   { echo "make browser: apt-get ran but chromium or chromedriver is still not on PATH" >&2; exit 1; }

test: setup browser
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not notebook"

lint: setup
	$(VENV)/bin/ruff check reasonact tests bench notebooks
	$(VENV)/bin/ruff format --check reasonact tests bench
	$(VENV)/bin/nbstripout --verify notebooks/*.ipynb

format: setup
	$(VENV)/bin/ruff check --fix reasonact tests bench notebooks
	$(VENV)/bin/ruff format reasonact tests bench

# Re-pin constraints.txt from the current venv (after deliberately upgrading a package).
lock: setup
	(echo "# Exact versions CI tested (make setup installs under this constraint). Regenerate: make lock"; \
	 echo "torch==2.13.0"; $(PY) -m pip freeze --exclude-editable | grep -viE '^(torch|reasonact)==') > constraints.txt

clean:
	rm -rf $(VENV) runs .pytest_cache
