# make demo: set up .venv, generate the embedded data, run the main job
# (one self-training round from the released teacher: teacher evaluated,
# pseudo labels, student, fair control). make demo-full trains the teacher
# too (its warm start and teacher stages: ~30 more minutes on 2 CPU cores).
# make test: same set-up, then the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= runs/shapes_selftrain_demo
FULL_MODEL_DIR ?= runs/shapes_selftrain_demo_full

.PHONY: install data demo demo-full test test-unit test-e2e test-fast lint format build clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: install
	$(PY) tools/create_shapes_tfrecords.py --gin_file=shapes_selftrain_demo.gin

demo: data
	$(PY) -m official_selftrain.train --gin_file=shapes_selftrain_demo.gin --model_dir=$(MODEL_DIR)

demo-full: data
	$(PY) -m official_selftrain.train --gin_file=shapes_selftrain_demo_full.gin --model_dir=$(FULL_MODEL_DIR)

test: install
	$(PY) -m pytest -q --durations=30 tests

# The two tiers: in-process unit tests, and end-to-end tests that run the
# commands as a user does (subprocesses). `make test` runs both.
test-unit: install
	$(PY) -m pytest -q -m 'not e2e' tests

test-e2e: install
	$(PY) -m pytest -q -m e2e tests

# Everything that does not train for more than a few seconds.
test-fast: install
	$(PY) -m pytest -q -m 'not slow' tests

# BUILD is generated from the imports; `make build` rewrites it.
build: install
	$(PY) tools/update_build.py

lint: install
	$(VENV)/bin/ruff check official_selftrain tools tests setup.py
	$(VENV)/bin/ruff format --check official_selftrain tools tests setup.py
	$(PY) tools/update_build.py --check

format: install
	$(VENV)/bin/ruff format official_selftrain tools tests setup.py

clean:
	rm -rf runs .pytest_cache
