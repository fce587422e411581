# Developer entry points; `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

PYTHON ?= $(shell command -v python3.11 >/dev/null 2>&1 && echo python3.11 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
# Touched after each install, so pip runs again only when pyproject.toml changes.
STAMP := $(VENV)/.installed

.PHONY: help venv redis prometheus chromium test test-reliability test-unit demo worker broker kafka bench lint clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: $(STAMP) ## Create .venv and install the project with its dev dependencies

$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
		echo "cannot create $(VENV) with $(PYTHON); on Debian: apt-get install python3-venv" >&2; \
		exit 1; }

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $@

redis: ## Make sure Redis answers at REDIS_URL (installs and starts one if needed)
	@scripts/ensure-redis.sh

prometheus: ## Make sure Debian's prometheus and promtool are installed (for the tests)
	@scripts/ensure-prometheus.sh

chromium: ## Make sure Debian's chromium is installed (a test renders the scorecard page headless)
	@scripts/ensure-chromium.sh

# Integration and fault tests run on Tansu and on Apache Kafka (TEST_BROKERS=tansu or kafka for
# one; KAFKA_BOOTSTRAP for a broker of your own). Kafka's jars are fetched first, visibly.
test: venv redis prometheus chromium ## Run the whole suite: unit, then integration on Tansu and Apache Kafka
	@scripts/ensure-kafka.sh >/dev/null
	$(BIN)/pytest -q -m "not slow"

test-reliability: venv redis ## Fault tests: crashes, rebalances, outages, soak (slow ones included)
	@scripts/ensure-kafka.sh >/dev/null
	$(BIN)/pytest -q tests/reliability

test-unit: venv ## Run the unit tests only (no broker, no Redis)
	$(BIN)/pytest -q tests/unit

demo: venv redis ## Run the end-to-end demo (python -m streams demo)
	$(BIN)/python -m streams demo

worker: venv redis ## Run the worker (embedded broker unless KAFKA_BOOTSTRAP is set)
	$(BIN)/python -m streams worker

bench: venv redis ## Measure throughput, latency and memory beside framework anchors (~10 min; BENCH_ARGS="--quick --broker kafka")
	$(BIN)/python -m bench $(BENCH_ARGS)

broker: venv ## Run the embedded Kafka broker (Tansu) until Ctrl-C
	$(BIN)/python -m streams broker

kafka: venv ## Run an Apache Kafka 4 broker (KRaft, one node; jars via Maven) until Ctrl-C
	$(BIN)/python -m streams kafka

lint: venv ## Check style and types (ruff, mypy)
	$(BIN)/ruff check streams tests bench
	$(BIN)/mypy streams bench

clean: ## Remove run data and caches (keeps .venv)
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
