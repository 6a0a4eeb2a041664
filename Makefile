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

$(UV): | check-python
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check "uv==$(UV_VERSION)"

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --python "$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	@touch $@

install: $(VENV)/.synced

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py seed_demo
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

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
