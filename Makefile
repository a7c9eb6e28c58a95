# Two commands need no setup: `make demo` and `make test` build the environments they miss.
PYTHON ?= python3.11
VENV := .venv
ARGILLA_VENV := .argilla-venv
# The CPU build lies on disk on the project's machines; elsewhere pip downloads it.
TORCH ?= torch==2.13.0
# Everything offline: no model or dataset hub is reachable, and nothing may silently try one.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1

.PHONY: setup demo test test-fast lint docs clean

setup: $(VENV)/.installed $(ARGILLA_VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet "$(TORCH)"
	$(VENV)/bin/pip install --quiet -e '.[dev,serving,semantic,profanity]'
	touch $@

# argilla-server pins typer<0.10 and click<8.2, which clash with ours: it gets its own environment.
$(ARGILLA_VENV)/.installed: annotation/server-requirements.txt
	$(PYTHON) -m venv $(ARGILLA_VENV)
	$(ARGILLA_VENV)/bin/pip install --quiet --upgrade pip
	$(ARGILLA_VENV)/bin/pip install --quiet -r annotation/server-requirements.txt
	touch $@

demo: setup
	$(OFFLINE) $(VENV)/bin/workbench demo

test: setup
	$(OFFLINE) $(VENV)/bin/python -m pytest

# While working: everything but the tests marked slow (training, the demo), server and browser; under 3 minutes.
test-fast: setup
	$(OFFLINE) $(VENV)/bin/python -m pytest -m "not slow and not server and not browser"

# The CLI reference, generated from the Typer app (a test fails when it is out of date).
docs: setup
	$(VENV)/bin/typer workbench.cli utils docs --name workbench --output docs/cli.md

lint: setup
	$(VENV)/bin/ruff check workbench pipelines annotation eval_suites tests bench

clean:
	rm -rf $(VENV) $(ARGILLA_VENV) runs .pytest_cache
