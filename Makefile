# KTRDR developer targets. Run `make help` for the list.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST := $(BIN)/pytest

.DEFAULT_GOAL := help
.PHONY: help setup test test-unit test-integration test-under-load test-e2e quality format docker images-offline demo bench clean

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/ktrdr: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Error: Python >= 3.11 is required (found $$($(PYTHON) --version 2>&1)); set PYTHON=..." >&2; exit 1; }
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
		rm -rf $(VENV); \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "setup: installing python3-venv (apt-get)" >&2; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null && \
			$(PYTHON) -m venv $(VENV); \
		else false; fi; } || \
		{ echo "Error: cannot create $(VENV): install python3-venv (apt-get install python3-venv) and retry" >&2; exit 1; }
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,agent]'
	@touch $@

setup: $(BIN)/ktrdr ## Create .venv and install ktrdr with the dev, server and agent extras
	@# Bytecode up front: with PYTHONDONTWRITEBYTECODE set (as on CI images) every `ktrdr` call
	@# would otherwise compile the modules it imports again (~60 ms of a create).
	@$(BIN)/python -m compileall -q ktrdr

quality: setup ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# Unit tests in one process: run on several cores (pytest-xdist), the background-start tests saw
# their stand-in process stopped by another worker's tests; serial is ~95 s longer and reliable.
UNIT := $(PYTEST) tests/unit

test-unit: setup ## Unit tests (no Docker, no running stack)
	$(UNIT)

docker: ## Install and start a Docker engine + Compose v2 where missing (idempotent)
	bash scripts/docker-engine.sh

images-offline: docker ## Build every stack image from Debian packages and PyPI (no registry)
	bash scripts/offline-images.sh

test-integration: setup ## Integration tests (real Docker); in an instance, against its DB port/password
	@eval "$$($(BIN)/ktrdr sandbox db-env)" && $(PYTEST) tests/integration

# A worktree has no .venv of its own: use this checkout's CLI, else `ktrdr` on PATH (e.g. the main
# checkout's venv, activated), and only then build a venv here.
test-e2e: ## E2E suite inside this instance's compose network (stack must be up)
	@if [ -x $(BIN)/ktrdr ]; then cli=$(BIN)/ktrdr; elif command -v ktrdr >/dev/null; then cli=ktrdr; \
	else $(MAKE) --no-print-directory setup && cli=$(BIN)/ktrdr; fi; \
	$$cli sandbox test-e2e $(PYTEST_ARGS)

# The tests marked `timing` (signals, timeouts, threads racing other processes) once more with
# every core busy (scripts/under-load.sh): they wait for events, not for time, and must pass so.
UNDER_LOAD := CI=$${CI:-true} bash scripts/under-load.sh $(PYTEST) -m timing tests/unit tests/integration

# The bystanders (another home's sandboxes) watch the integration tests: unit tests cannot reach
# an engine (tests/unit/conftest.py points DOCKER_HOST nowhere).
test: quality docker images-offline ## Everything CI runs: quality, unit, integration (real Docker), timing tests under load
	$(UNIT)
	CI=$${CI:-true} KTRDR_BYSTANDERS=1 $(PYTEST) tests/integration
	$(UNDER_LOAD)

test-under-load: setup docker images-offline ## The timing-sensitive tests (-m timing) with a CPU hog on every core
	$(UNDER_LOAD)

demo: ## Main job: install, engine, images, shared data, sandbox `demo` up to "Startability Gate: PASSED"
	bash scripts/demo.sh

bench: setup ## Benchmarks (never part of `make test`); writes docs/benchmarks.md
	$(BIN)/python -m bench.run_all $(BENCH)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
