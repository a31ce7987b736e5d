# Two entry points: `make up` runs the stack, `make test` runs everything CI checks.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: up test chaos lint typecheck pytest servers images kube-play kube-play-down lock install install-runtime clean

# setuptools' notice on every editable build ("Editable installation ... be careful with
# folders named like your package") says nothing actionable here; every other warning shows.
PIP_QUIET := PYTHONWARNINGS="ignore:Editable installation"

# Two installs into one venv: the runtime (what `make up` needs) and, on top, the dev
# tools (what `make test` needs: mypy, locust, Helm SDK, schemathesis...), each exactly
# as locked with hashes (`make lock`): requirements/runtime.txt is the subset of
# requirements/dev.txt that the images install too, so the tests run the versions that
# ship. Redone when pyproject.toml or a lock changes.
$(VENV)/.runtime: pyproject.toml requirements/runtime.txt
	@echo "installing Flotilla into $(VENV) (runtime only; the first time takes a minute) ..."
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --no-deps --require-hashes --requirement requirements/runtime.txt
	$(PIP_QUIET) $(BIN)/pip install -q --no-deps -e .
	@touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements/dev.txt
	@echo "installing the development tools into $(VENV) ..."
	$(BIN)/pip install -q --no-deps --require-hashes --requirement requirements/dev.txt
	$(BIN)/pip check
	@touch $@

install-runtime: $(VENV)/.runtime

install: $(VENV)/.dev

## up: run the whole stack on embedded defaults (SQLite, in-process cache) at 127.0.0.1:8000;
## options for `flotilla up` go in ARGS, e.g. `make up ARGS="--port-offset 100"`
ARGS ?=
up: install-runtime
	$(BIN)/flotilla up $(ARGS)

## servers: install PostgreSQL, Redis, Prometheus, wrk and Chromium via apt when missing (needs root)
servers:
	bash scripts/ensure-servers.sh

## images: build every image (five services, operator) with podman and smoke-test each as the
## charts run it (UID 10001, read-only root, no capabilities, health 200, SIGTERM); installs
## podman & co. via apt and builds a Debian stand-in base when missing (needs root);
## IMAGES="tasks operator" builds only those; times and sizes in ~/.cache/flotilla-images/report.tsv
IMAGES ?=
images:
	bash scripts/images.sh $(IMAGES)

## kube-play: the umbrella chart with values-dev.yaml, rendered by Helm's engine and run as
## containers with `podman kube play` (no cluster): builds the images, PostgreSQL/Redis
## stand-ins from Debian packages, runs migrations, probes and the chart's helm tests, then
## prints the gateway's 127.0.0.1 URL; `python -m scripts.kubeplay gaps` lists what is emulated
kube-play: install
	$(BIN)/python -m scripts.kubeplay up $(ARGS)

kube-play-down: install
	$(BIN)/python -m scripts.kubeplay down $(ARGS)

## lock: regenerate requirements/{dev,runtime,service,operator,build}.txt (pinned, with
## hashes) from pyproject.toml; `make install` and the Dockerfile install only these
lock: install
	bash scripts/lock.sh

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy services operator/flotilla_operator loadtest scripts/kubeplay

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
