# make run: set up .venv and run the default search; make test: set up and run the whole suite
# (make test-fast: without the end-to-end tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SPEC ?= digits-quick

.PHONY: run test test-fast setup bench clean

run: $(STAMP)
	$(BIN)/hpsearch run $(SPEC)

test: $(STAMP)
	$(BIN)/python -m pytest -ra

# Everything but the end-to-end tests (no real search on Ray): a few minutes, for iterating.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not e2e"

setup: $(STAMP)

# Every version is pinned in constraints.txt (torch 2.14.1 / torchvision 0.29.1 among them).
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test]"
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py

clean:
	rm -rf $(VENV) hpsearch_results mlflow.db mlruns mlartifacts
