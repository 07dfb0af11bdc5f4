# make demo: set up .venv, generate the embedded data, run the main job
# (one self-training round: teacher, pseudo labels, student, fair control).
# make test: same set-up, then the test suite.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MODEL_DIR ?= runs/shapes_selftrain

.PHONY: install data demo test test-fast lint format clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

data: install
	$(PY) tools/create_shapes_tfrecords.py --gin_file=shapes_selftrain.gin

demo: data
	$(PY) -m official_selftrain.train --gin_file=shapes_selftrain.gin --model_dir=$(MODEL_DIR)

test: install
	$(PY) -m pytest -q tests

test-fast: install
	$(PY) -m pytest -q -m 'not slow' tests

lint: install
	$(VENV)/bin/ruff check official_selftrain tools tests setup.py
	$(VENV)/bin/ruff format --check official_selftrain tools tests setup.py

format: install
	$(VENV)/bin/ruff format official_selftrain tools tests setup.py

clean:
	rm -rf runs .pytest_cache
