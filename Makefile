# Fresh machine with Python 3.11:  `make demo` runs the pipeline on the built-in sample, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The torch build installed when the virtualenv has none (2.13.0 is the CPU build where a local wheel exists).
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# Test workers (pytest-xdist); the tests that share the fitted sample run on one of them.
PYTEST_WORKERS ?= auto

.PHONY: install demo test lint cuda-check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

install: $(BIN)/python
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"

demo: install
	$(BIN)/avatar demo --out out/demo

test: install
	$(BIN)/python -m ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS); status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$status

cuda-check: install
	$(BIN)/python scripts/check_cuda_sources.py

lint: install
	$(BIN)/python -m ruff check . && $(BIN)/python -m ruff format --check .

clean:
	rm -rf $(VENV) out build *.egg-info
