# Rapidfolio Runs. `make run` serves the demo, `make test` runs the whole suite.
# Both work from a fresh clone with only Python 3.12+ (selected by .python-version) and make:
# they bootstrap their own uv into .tools/ instead of trusting whatever uv is on PATH.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
# Test processes in parallel (pytest-xdist); a test file stays in one process, so a module's
# fixtures (the tiny benches' database) are made once. TEST_WORKERS=0 runs in this process.
TEST_WORKERS ?= 2

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/$(VENV)
export UV_NO_PROGRESS := 1

.PHONY: help install run serve test lint format bench check-python clean

help:
	@echo "make run    install, migrate, seed the demo and serve on http://$(HOST):$(PORT)/"
	@echo "make test   install and run the whole test suite (set DATABASE_URL and REDIS_URL"
	@echo "            to run it on PostgreSQL and Redis)"
	@echo "make lint   ruff check and format check, and the import layers (lint-imports)"
	@echo "make bench  benchmarks on PostgreSQL + Redis (see README)"

check-python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else "Python 3.12+ is needed; found " + sys.version.split()[0] + ". Install it (pyenv install 3.12) or run make PYTHON=/path/to/python3.12")'

# One line per step; the tools' own output only when they fail.
$(UV): | check-python
	@echo "==> Installing uv $(UV_VERSION) into $(TOOLS)/"
	@$(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	@echo "==> Installing the locked dependencies into $(VENV)/ (the first time: a minute or two)"
	@$(UV) sync --frozen --quiet --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	@touch $@

install: $(VENV)/.synced

# Migrations and the seed log only warnings (LOG_LEVEL), so the banner is what `serve` prints.
run: install
	@echo "==> Migrating the database"
	@LOG_LEVEL=WARNING $(PY) manage.py migrate --noinput --verbosity 0
	@echo "==> Seeding the demo (the engine executes its runs; the first time only)"
	@LOG_LEVEL=WARNING $(PY) manage.py seed_demo --verbosity 0 --host $(HOST) --port $(PORT)
	@echo "==> Starting the server"
	@$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install
	$(PY) -m bench $(if $(EXPLAIN),--explain,)

clean:
	rm -rf $(VENV) $(TOOLS) var staticfiles test-artifacts
