# The two commands of the README: `make demo` and `make test`. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint install clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "autoinfer needs Python 3.11+"'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/autoinfer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

# The gate .ci/run passes before the tests: lint, formatting, and types (settings in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check autoinfer tests bench
	$(BIN)/ruff format --check autoinfer tests bench
	$(BIN)/mypy autoinfer

clean:
	rm -rf $(VENV) demo-workspace .autoinfer .pytest_cache
