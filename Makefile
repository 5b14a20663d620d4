# Developer entry points. The venv is (re)built only when pyproject.toml changes: the stamp
# file records the last successful install, so `make test` is quick on every later run.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PACKAGES := workflows activities adapters starter domain devstack reports security service documents observability bench drills $(wildcard worker.py)

.PHONY: dev test test-fast test-cluster lint constraints

# The make targets are development: keys nobody configured are generated once under .data/
# (adapters/settings.py, dev_keys). A production host sets none and must configure keys.
export PETITION_DEV_KEYS ?= true

dev: $(STAMP)
	$(BIN)/petition dev

# No pipes or `|| true` here: pytest's exit status (5 = no tests collected) must reach make.
test: $(STAMP)
	$(BIN)/python -m devstack.prepare
	$(BIN)/python -m pytest

# The fast tier: the pure domain core and single-service (PostgreSQL) tests, under 60 s.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m fast -q

# The integration scenarios on a production-shaped Temporal cluster (docs/cluster.md):
# temporal-server built once with Go (4-6 minutes, cached), its stores on PostgreSQL,
# each service a process, mTLS. Not part of `make test`.
test-cluster: $(STAMP)
	$(BIN)/python -m devstack.temporal_cluster provision
	PETITION_TEST_TEMPORAL=cluster $(BIN)/python -m pytest tests/cluster

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy $(PACKAGES)
	$(BIN)/lint-imports

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -c constraints.txt -e '.[dev]'
	touch $@

# Pins the versions the tests last passed with (run after changing pyproject.toml's ranges).
constraints:
	$(BIN)/python -m pip install -U -e '.[dev]'
	(sed -n 1,2p constraints.txt; $(BIN)/python -m pip freeze --exclude-editable) > constraints.txt.new
	mv constraints.txt.new constraints.txt
