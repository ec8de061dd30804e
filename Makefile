# polymix: two commands for a fresh clone: `make run` and `make test`.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install run test test-slow lint bench clean

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

# tests marked slow (the full ishigami_pce experiment, about a minute) run with `make test-slow`
test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

# speed and memory against the peer library; writes bench/results/<date>.json and bench/RESULTS.md
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# ruff's lint rules and its formatting (line length 100): both must pass (.ci/run runs this)
lint: $(STAMP)
	$(BIN)/ruff check polymix_cli hydra_plugins tests bench
	$(BIN)/ruff format --check polymix_cli hydra_plugins tests bench

clean:
	rm -rf $(VENV) .pytest_cache
