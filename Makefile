# Two commands set up a fresh machine: `make demo` and `make test`. Both create/refresh .venv first.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export AFFECTFLOW_HOME ?= $(CURDIR)/.affectflow
PORT ?= 3000
TEST_WORKERS ?= 2

.PHONY: install demo check test results lint serve postgres up down status clean

install: $(STAMP)

# Reinstall only when the dependency list changes; pip's notes about local index folders are noise.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/affectflow demo

# The edit loop: lint and the unit tier (no model fit, no server, no subprocess CLI), in under 3 minutes.
# One process: two xdist workers measured no faster here (72.6 s vs 75.9 s), each pays TensorFlow's import.
check: $(STAMP) lint
	$(BIN)/python -m pytest tests/unit --durations=10

# Everything CI runs: unit, integration (Prefect, MLflow, BentoML, servers, CLI) and model tiers.
test: $(STAMP) lint postgres
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile --durations=25

# The README's result tables, measured on this machine (~25 min): benchmarks/results/ and README.md.
results: $(STAMP)
	$(BIN)/python benchmarks/results.py

lint: $(STAMP)
	$(BIN)/ruff check .

serve: $(STAMP)
	$(BIN)/affectflow serve --port $(PORT)

# PostgreSQL's server programs (Debian's package), for make up and the operations test; installed when absent.
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null || \
		{ apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql; }

# The operations stack on this machine (docs/operations.md): PostgreSQL, Prefect and MLflow servers on it, a worker.
# Prints the exports that point a shell at it. HOST=0.0.0.0 to let other machines in.
HOST ?= 127.0.0.1
up: $(STAMP) postgres
	$(BIN)/affectflow servers up --host $(HOST)

down: $(STAMP)
	$(BIN)/affectflow servers down

status: $(STAMP)
	$(BIN)/affectflow servers status

clean:
	rm -rf $(AFFECTFLOW_HOME)
