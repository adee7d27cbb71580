# graylane developer tasks (GNU make). CI runs `make test` (.ci/run).
#
#   make venv         .venv with graylane installed editable + test tools; builds the C extensions
#   make test         system packages, venv, the whole suite, the twin-sensitive suites again on
#                     the pure-Python twins, then ruff
#   make run          graylane run -c $(CONF)
#   make demo | bench | lint | system-deps | clean | distclean

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
MAKEFLAGS += --no-builtin-rules

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONF ?= conf/basic.yaml
PYTEST_ARGS ?=

# Re-install (and so rebuild the extensions) when any of these changes.
STAMP := $(VENV)/.graylane-installed
BUILD_INPUTS := pyproject.toml setup.py $(wildcard proxy/_fast/*.py proxy/_fast/*.pxd proxy/_fast/*.pyx)

# Suites that exercise proxy._fast; they run a second time with the extensions switched off.
# The loader's own tests come along so that the run always collects tests.
TWIN_SUITES := tests/test_fast_loader.py $(wildcard tests/_fast tests/routing)

.PHONY: help venv install system-deps test test-twins lint run demo bench clean distclean

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BUILD_INPUTS) | $(BIN)/python
	GRAYLANE_REQUIRE_EXTENSIONS=$${GRAYLANE_REQUIRE_EXTENSIONS-1} $(BIN)/python -m pip install -q -e '.[test,otel]'
	touch $@

venv install: $(STAMP)

system-deps:
	@bash scripts/install-system-deps.sh

# pytest exits 5 when it collects nothing: make stops on any non-zero status, so an empty run fails.
test: system-deps venv
	GRAYLANE_EXPECT_EXTENSIONS=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS) tests
	$(MAKE) --no-print-directory test-twins
	$(BIN)/ruff check .

test-twins: venv
	GRAYLANE_NO_EXTENSIONS=1 $(BIN)/python -m pytest -q $(PYTEST_ARGS) $(TWIN_SUITES)

lint: venv
	$(BIN)/ruff check .

run: venv
	$(BIN)/graylane run -c $(CONF)

demo: venv
	$(BIN)/graylane demo

bench: system-deps venv
	@if [[ -f loadtest/__main__.py ]]; then \
		$(BIN)/python -m loadtest $(BENCH_ARGS); \
	else \
		echo "bench: loadtest/__main__.py does not exist yet"; \
	fi

.PHONY: bench-memory
bench-memory: system-deps venv
	$(BIN)/python -m loadtest.memory $(MEMORY_ARGS)

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache $(STAMP)
	find proxy -name '*.so' -delete
	rm -f proxy/_fast/*.c proxy/_fast/*.html
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) .hypothesis
