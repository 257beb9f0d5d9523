# Two entry points on a fresh machine: `make quickstart` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# pytest options: two pytest-xdist workers by default (the 2-core CI box); e.g.
# `make test PYTEST_ARGS=` runs serially, `PYTEST_ARGS="-n 4"` on a bigger machine.
PYTEST_ARGS ?= -n 2

.PHONY: install quickstart test lint format bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

# The harness runs from this checkout (no install of the repo itself): `bssn`, `harness`,
# `models` and `data` import from here. `pip install .` ships the `bssn` library alone.
$(VENV)/.installed: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

quickstart: install
	$(BIN)/python -m scripts.quickstart

test: install lint
	$(BIN)/python -m pytest -q --durations=15 $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: install
	$(BIN)/python -m scripts.bench_norm

clean:
	rm -rf $(VENV) .pytest_cache
