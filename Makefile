# Slot Recovery: `make run` starts the embedded demo, `make test` runs lint and every test.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: help run test lint format bench audit clean
.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# Installs are stamped against the files that define them, so a change reinstalls.
$(VENV)/.runtime: $(BIN)/python pyproject.toml requirements.lock
	$(BIN)/pip install --quiet -c requirements.lock -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime
	$(BIN)/pip install --quiet -c requirements.lock -e ".[dev]"
	touch $@

run: $(VENV)/.runtime ## Run the embedded demo on http://127.0.0.1:5000 (SQLite, sandbox SMS and payments)
	$(BIN)/flask --app app demo

lint: $(VENV)/.dev ## ruff: lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint ## Lint, then the whole test suite (needs PostgreSQL and Redis on 127.0.0.1; installs Chromium)
	$(BIN)/python -m tests.preflight
	$(BIN)/pytest

bench: $(VENV)/.dev ## Benchmarks on real processes (~30 min; BENCH_ARGS=--quick for a smoke run)
	$(BIN)/python -m bench --write-doc $(BENCH_ARGS)

# Not part of `make test`: it needs the advisory data online (PyPI's JSON API, or OSV with
# AUDIT_ARGS="-s osv"); without it, it says so in one line and fails.
audit: $(VENV)/.dev ## pip-audit of requirements.lock: known advisories, or one line saying why it could not check
	$(BIN)/python -m tools.audit requirements.lock -- $(AUDIT_ARGS)

format: $(VENV)/.dev ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean: ## Remove the virtualenv and the demo database
	rm -rf $(VENV) instance
