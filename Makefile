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

.PHONY: install demo check test results lint serve up down clean

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
test: $(STAMP) lint
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile --durations=25

# The README's result tables, measured on this machine (~25 min): benchmarks/results/ and README.md.
results: $(STAMP)
	$(BIN)/python benchmarks/results.py

lint: $(STAMP)
	$(BIN)/ruff check .

serve: $(STAMP)
	$(BIN)/affectflow serve --port $(PORT)

# A local Prefect server (UI on :4200) and MLflow UI (:5000) over this home, for watching runs.
up: $(STAMP)
	mkdir -p $(AFFECTFLOW_HOME)/logs
	PREFECT_HOME=$(AFFECTFLOW_HOME)/prefect nohup $(BIN)/prefect server start --host 127.0.0.1 > $(AFFECTFLOW_HOME)/logs/prefect.log 2>&1 & echo $$! > $(AFFECTFLOW_HOME)/prefect.pid
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false nohup $(BIN)/mlflow server --backend-store-uri sqlite:///$(AFFECTFLOW_HOME)/mlflow.db --default-artifact-root $(AFFECTFLOW_HOME)/mlartifacts --host 127.0.0.1 --port 5000 > $(AFFECTFLOW_HOME)/logs/mlflow.log 2>&1 & echo $$! > $(AFFECTFLOW_HOME)/mlflow.pid
	@echo "Prefect UI: http://127.0.0.1:4200  (export PREFECT_API_URL=http://127.0.0.1:4200/api)"
	@echo "MLflow UI:  http://127.0.0.1:5000"

down:
	-for f in $(AFFECTFLOW_HOME)/prefect.pid $(AFFECTFLOW_HOME)/mlflow.pid; do [ -f $$f ] && kill $$(cat $$f) && rm $$f; done

clean:
	rm -rf $(AFFECTFLOW_HOME)
