"""Shared by the flow tests: the project root importable (for `flows`), one Prefect
test server for the session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    # The server's first start imports and migrates its database: on a cold CI machine
    # that has taken longer than Prefect's default 30 seconds.
    with prefect_test_harness(server_startup_timeout=300):
        yield


@pytest.fixture
def setup(harness, make_flowbench, project, tiny_encoder, tmp_path, bento_home):
    """A fresh DVC project (this repository's dvc.yaml, the default params with a tiny
    encoder and easy gate floors) in tmp_path, with a local DVC remote."""
    import shutil

    from dvc.repo import Repo

    home = tmp_path
    for name in ("dvc.yaml", "bentofile.yaml", "requirements.lock", "labels.csv"):
        shutil.copy(ROOT / name, home / name)
    shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "gx" / "expectations", home / "gx" / "expectations")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ingest"]["workflows"] = ["tiny"]
    params["text"].update(template="compact", feature_set="context")
    params["train"].update(
        # the flows orchestrate whatever trains: one quick kind (the sweep test trains
        # encoders through DVC; the kinds themselves are tested in tests/unit)
        candidates=["gradient_boosting"],
        model=str(tiny_encoder),
        epochs=1,
        batch_size=16,
        learning_rate=1e-3,
        max_train_samples=150,
    )
    params["base"]["device"] = "cpu"
    params["evaluate"].update(online_max_jobs=20, latency_calls=10)
    params["gate"].update(min_f1=0.0, min_roc_auc=0.0, max_bias_gap=1.0, max_p99_latency_ms=10000)
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    Repo.init(str(home), no_scm=True)
    with Repo(str(home)) as repo, repo.config.edit() as conf:
        conf["core"]["remote"] = "local"
        conf["remote"]["local"] = {"url": str(home / "remote")}

    def write(workflow_edit=None):
        return str(make_flowbench(n_runs=30, edit=workflow_edit, root=home / "flowbench"))

    return write, home
