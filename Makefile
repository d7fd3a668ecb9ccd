# Two entry points (README): `make demo` and `make test`. Both install what is missing first.
VENV ?= .venv
PY := $(VENV)/bin/python
DATA ?= ../shared/data

.PHONY: setup demo test test-slow test-research lint fixtures package install-plugin benchmark \
	benchmark-distributed demo-scene \
	screenshots docs-cli clean

setup:
	bash scripts/setup.sh

demo: setup
	$(PY) -m scripts.demo

lint: setup
	$(VENV)/bin/ruff check .

# Everything but the checks marked `slow`: engine, plugin (headless QGIS) and research tests, in TEST_WORKERS
# processes (pytest-xdist; 0: all in this one). loadgroup: each test goes to whichever worker is free, except
# that the groups of tests/conftest.py (WHOLE: tests/distributed, test_resume.py) each run whole in one worker.
# (Never --dist without workers, nor in pyproject's addopts: pytest-qgis then takes the run for an xdist controller
# and starts no QGIS.)
TEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)
test: setup
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q $(XDIST)

test-slow: setup
	$(PY) -m pytest -q -m slow

# Only the tests of research/ and benchmarks/ (tests/research, marker `research`).
test-research: setup
	$(PY) -m pytest -q -m "research and not slow"

# Inference benchmark vs SAHI (docs/benchmarks.md): tens of minutes on a 2-core CPU.
benchmark: setup
	$(VENV)/bin/pip install -q -r requirements-bench.txt
	$(PY) -m benchmarks.benchmark_inference --sizes 2000,8000,16000 --sahi-max-size 16000

# Single process (2 threads) vs `--dask local:2` (2 workers of 1 thread) on 8k and 16k scenes (docs/cluster.md).
benchmark-distributed: setup
	$(PY) -m benchmarks.benchmark_distributed --sizes 8000,16000 --workers 2 --threads 2

package: setup
	$(PY) -m scripts.package_plugin

# Developer install: link this checkout's plugin into the default QGIS profile (engine = this checkout's .venv).
QGIS_PLUGINS ?= $(HOME)/.local/share/QGIS/QGIS3/profiles/default/python/plugins
install-plugin: setup
	mkdir -p "$(QGIS_PLUGINS)"
	cp metadata.txt rs_qgis_plugin/metadata.txt
	ln -sfn "$(CURDIR)/rs_qgis_plugin" "$(QGIS_PLUGINS)/rs_qgis_plugin"
	@echo "linked $(QGIS_PLUGINS)/rs_qgis_plugin -> $(CURDIR)/rs_qgis_plugin; enable it in Plugins > Manage and Install Plugins"

fixtures: setup
	$(PY) tests/data/make_fixtures.py tests/data/generated

# Rebuild the bundled demo scene from the HRSID sample tiles (data/demo/README.md).
demo-scene: setup
	$(PY) -m data.demo.build_demo_scene --src $(DATA)/hrsid_samples

# The README's pictures (docs/images), made by the real plugin and engine, headless.
screenshots: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m docs.screenshot_dock

# Regenerate the option listings of docs/cli.md from the CLI's own --help.
docs-cli: setup
	$(PY) -m docs.build_cli_reference

clean:
	rm -rf out .pytest_cache .ruff_cache
