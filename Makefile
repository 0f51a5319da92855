# The two quick-start commands: `make demo` (set up, train the demo model if the store is empty, predict)
# and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo test lint bench

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,bench,cluster]"
	touch $@

setup: $(VENV)/.installed

demo: setup
	$(VENV)/bin/hotline demo

test: setup
	$(VENV)/bin/ruff check classifier training service live serve.py tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q

lint: setup
	$(VENV)/bin/ruff check classifier training service live serve.py tests benchmarks
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/run.py
