# Two commands for a fresh machine: `make demo` and `make test`. Each creates .venv and
# installs the project (with the temporal and temporal-test-server binaries) when missing.
# The harness's measurements (harness/, not installed with the product): `make bench`,
# `make sustained`, `make chaos`, `make histories`; ARGS="..." passes options, e.g.
# `make bench ARGS="--json --rounds 5"`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test lint typecheck unit bench sustained chaos histories clean

$(INSTALLED): pyproject.toml engine/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./engine -e '.[dev]'
	touch $@

demo: $(INSTALLED)
	$(BIN)/checkout-saga demo

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(INSTALLED)
	$(BIN)/mypy

unit: $(INSTALLED)
	$(BIN)/pytest

test: lint typecheck unit

bench: $(INSTALLED)
	$(BIN)/python -m harness.bench $(ARGS)

sustained: $(INSTALLED)
	$(BIN)/python -m harness.bench --sustained $(ARGS)

chaos: $(INSTALLED)
	$(BIN)/python -m harness.chaos $(ARGS)

histories: $(INSTALLED)
	$(BIN)/python -m harness.histories capture $(ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
