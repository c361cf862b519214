# One entry point for humans and CI. `make run` and `make test` each create or refresh the virtualenv first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run flow test lint bench venv clean

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# The main job: the service in DEFAULT mode (server + in-process worker) on http://127.0.0.1:8288/
run: $(STAMP)
	$(PY) -m visionatrix run

# A bundled flow on the sample image from the command line, outputs in ./output
flow: $(STAMP)
	$(PY) -m visionatrix run-flow web_resize_sharpen --input image=flows/examples/sample.jpg \
		--param width=640 --out output

# The integration tier (tests/integration) runs on SQLite, PostgreSQL and MariaDB; .ci/db-up starts the servers.
test: $(STAMP)
	$(VENV)/bin/ruff check .
	./.ci/db-up
	./.ci/browser-up
	HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 $(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) scripts/bench_executor.py

clean:
	rm -rf $(VENV) output .pytest_cache .ruff_cache .mypy_cache
