# Two entry points: `make up` runs the stack, `make test` runs everything CI checks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up test chaos lint typecheck pytest servers install clean

$(BIN)/flotilla: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	@touch $@

install: $(BIN)/flotilla

## up: run the whole stack on embedded defaults (SQLite, in-process cache) at 127.0.0.1:8000
up: install
	$(BIN)/flotilla up

## servers: install PostgreSQL, Redis and Prometheus via apt when missing (needs root)
servers:
	bash scripts/ensure-servers.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy services operator/flotilla_operator loadtest

## pytest: the whole suite in random order (pytest-randomly prints the seed; replay an order
## with `make pytest PYTEST_ARGS=--randomly-seed=<seed>`), then the 15 slowest tests
PYTEST_ARGS ?=
pytest: install servers
	$(BIN)/pytest --durations=15 $(PYTEST_ARGS)

## test: lint, type-check and the whole suite against real PostgreSQL and Redis
test: servers lint typecheck pytest

## chaos: the chaos suite at full size (drain, outages, data crash, fuzzing, hostile input,
## Prometheus, secrets in logs); `make test` runs a bounded version of it
chaos: install servers
	FLOTILLA_CHAOS=full $(BIN)/pytest tests/chaos -m chaos

clean:
	rm -rf $(VENV) .flotilla .mypy_cache .ruff_cache .pytest_cache
