# `make run` starts the local sandbox; `make test` runs every check CI runs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help install run test lint format typecheck pytest bench clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## create .venv and install the package with its dev tools

run: $(STAMP) ## start the local sandbox (emulated API server + webhooks over TLS)
	$(PY) -m tests.sandbox

test: lint typecheck pytest ## ruff lint + format check, mypy --strict, pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

typecheck: $(STAMP)
	$(VENV)/bin/mypy common functions

pytest: $(STAMP)
	$(VENV)/bin/pytest

bench: $(STAMP) ## print admission throughput and latency figures
	$(PY) bench/admission_bench.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
