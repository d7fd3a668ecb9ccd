# Two entry points (README): `make demo` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test test-slow lint fixtures package install-plugin benchmark clean

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

# Inference benchmark vs SAHI (README "Production-scale inference"): tens of minutes on a 2-core CPU.
benchmark: setup
	$(VENV)/bin/pip install -q -r requirements-bench.txt
	$(PY) scripts/benchmark_inference.py --sizes 2000,8000,16000 --sahi-max-size 16000

package: setup
	$(PY) scripts/package_plugin.py

# Developer install: link this checkout's plugin into the default QGIS profile (engine = this checkout's .venv).
QGIS_PLUGINS ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
install-plugin: setup
	mkdir -p "$(QGIS_PLUGINS)"
	cp metadata.txt rs_qgis_plugin/metadata.txt
	ln -sfn "$(CURDIR)/rs_qgis_plugin" "$(QGIS_PLUGINS)/rs_qgis_plugin"
	@echo "linked $(QGIS_PLUGINS)/rs_qgis_plugin -> $(CURDIR)/rs_qgis_plugin; enable it in Plugins > Manage and Install Plugins"

fixtures: setup
	$(PY) tests/data/make_fixtures.py tests/data/generated

clean:
	rm -rf out .pytest_cache .ruff_cache
