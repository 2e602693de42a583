# Everything bootstraps .venv on a fresh machine first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit fuzz bench-core bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/bayeux serve

test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# Core coverage must be 100% (branches included); the whole run is reported.
unit: $(STAMP)
	$(BIN)/coverage erase
	$(BIN)/coverage run -m pytest -p no:cacheprovider $(PYTEST_ARGS)
	$(BIN)/coverage report --include='bayeux_core/*' --fail-under=100
	$(BIN)/coverage report

FUZZ_SECONDS ?= 60
fuzz: $(STAMP)
	for target in fuzz/fuzz_*.py; do \
	  $(BIN)/python $$target -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 || exit 1; \
	done

bench-core: $(STAMP)
	$(BIN)/python bench/core_fanout.py

bench: bench-core

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .coverage htmlcov
