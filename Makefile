# make demo / make test create .venv from pyproject.toml when it is missing, then run.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-all lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	P2PDIST_NETWORK=local $(BIN)/p2pdist demo

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	P2PDIST_NETWORK=local $(BIN)/python -m pytest -m "not slow" --durations=15 $(PYTEST_ARGS)

test-all: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	P2PDIST_NETWORK=local $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(STAMP)
	P2PDIST_NETWORK=local $(BIN)/python bench/transfer.py
	P2PDIST_NETWORK=local $(BIN)/python bench/receipts_transfer.py
	$(BIN)/python bench/receipts.py
	$(BIN)/python bench/ledger.py
	$(BIN)/python bench/encryption.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/settle.py --reference-commit e9efa27
	$(BIN)/python bench/purchase.py
	P2PDIST_NETWORK=local $(BIN)/python bench/api_receipts.py
	P2PDIST_NETWORK=local $(BIN)/python bench/swarm.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
