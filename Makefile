# polymix: two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow lint bench docs docs-serve docs-figures clean

install: $(STAMP)

# torch==2.13.0 first: it resolves to the CPU wheel on this machine's disk; a bare
# `torch` requirement would make pip fetch a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/polymix train $(ARGS)

# tests marked slow (the full ishigami_pce experiment, about a minute) run with `make test-slow`.
# The modules are spread over TEST_WORKERS processes (pytest-xdist; auto: one per core), a
# module on one worker (--dist loadscope: its module-scoped fixtures run once);
# TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= auto
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -n $(TEST_WORKERS) --dist loadscope $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# speed and memory against the peer library; writes bench/results/<date>.json and bench/RESULTS.md
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# the documentation site (docs/, mkdocs.yml) into site/; --strict: a broken link, a missing
# page or a docstring warning fails the build. reference/config.md is generated from the
# config schema by docs/hooks.py. `make docs-serve` serves it on http://127.0.0.1:8000.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

# ruff's lint rules and its formatting (line length 100): both must pass (.ci/run runs this)
lint: $(STAMP)
	$(BIN)/ruff check polymix_cli hydra_plugins tests bench docs
	$(BIN)/ruff format --check polymix_cli hydra_plugins tests bench docs

# the pictures of docs/tutorial.md: reruns its commands and copies the plots into docs/tutorial/
docs-figures: $(STAMP)
	$(BIN)/python docs/scripts/tutorial_figures.py
	$(BIN)/python docs/scripts/design_figure.py

clean:
	rm -rf $(VENV) .pytest_cache site
