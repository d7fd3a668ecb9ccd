# Two entry points (README): `make demo` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test test-slow lint fixtures package clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) scripts/demo.py

lint: setup
	$(VENV)/bin/ruff check .

test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

fixtures: setup
	$(PY) tests/data/make_fixtures.py tests/data/generated

clean:
	rm -rf out .pytest_cache .ruff_cache
