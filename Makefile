# One entry point for humans and CI. `make run` and `make test` each create or refresh the virtualenv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench venv clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The main job: run a bundled flow on the bundled sample image and write its outputs to ./output
run: $(STAMP)
	$(PY) -m visionatrix run-flow web_resize_sharpen --input image=flows/examples/sample.jpg \
		--param width=640 --out output

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) scripts/bench_executor.py

clean:
	rm -rf $(VENV) output .pytest_cache .ruff_cache .mypy_cache
