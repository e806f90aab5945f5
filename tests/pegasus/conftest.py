"""Pegasus-facing tests run on the real Pegasus output under PEGASUS_DIR (default
`../shared/pegasus` beside the project): submit directories and stampede databases a
real installation wrote. In CI (CI=true) a missing folder is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def pegasus_dir() -> Path:
    value = os.environ.get("PEGASUS_DIR") or str(ROOT.parent / "shared" / "pegasus")
    if not Path(value, "process_wf_success").is_dir():
        message = f"PEGASUS_DIR must name the real Pegasus output folder (got {value!r})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(value).resolve()


@pytest.fixture
def db_copy(pegasus_dir: Path, tmp_path: Path):
    """A writable copy of one of the real stampede databases (to damage on purpose)."""

    def copy(relative: str) -> Path:
        target = tmp_path / Path(relative).name
        shutil.copyfile(pegasus_dir / relative, target)
        return target

    return copy


DATABASES = {
    "process_wf_success": "process_wf_success/process-0.stampede.db",
    "process_wf_failure": "process_wf_failure/process-0.stampede.db",
    "hierarchical_wf_success": "hierarchical_wf_success/hierarchical-workflow-0.stampede.db",
    "monitoring": "monitoring-rest-api-master.db",
}


@pytest.fixture(scope="session")
def broker(tmp_path_factory):
    """A real RabbitMQ node (the system's rabbitmq-server), for this test session."""
    from flowsentry.live.broker import Broker, available

    if not available():
        message = "rabbitmq-server is not installed (apt-get install rabbitmq-server)"
        if os.environ.get("FLOWSENTRY_REQUIRE_SYSTEM_PACKAGES"):
            pytest.fail(message)
        pytest.skip(message)
    node = Broker(tmp_path_factory.mktemp("rabbitmq")).start()
    yield node
    node.stop()


def _fit(features: str, folder: Path) -> Path:
    """A gradient-boosting detector on synthetic runs (tests/conftest.make_run) reading
    `features`: a real fitted model whose quality is not the point here."""
    import io

    import pandas as pd
    from tests.conftest import make_run

    from flowsentry.data.context import add_context
    from flowsentry.data.evidence import Profile
    from flowsentry.data.flowbench import read_run, to_jobs_table
    from flowsentry.models.baselines import FeatureDetector
    from flowsentry.text.sentences import features_of

    frames = []
    for r in range(24):
        raw = make_run(r, 6, anomalous_host=r % 3 == 0)
        text = raw.to_csv(index=False).encode()
        frames.append(to_jobs_table(read_run(io.BytesIO(text), f"run{r}", f"run{r}"), "tiny"))
    jobs = pd.concat(frames, ignore_index=True)
    late = jobs["run"].str.removeprefix("run").astype(int) >= 18
    train, val = jobs[~late], jobs[late]
    profile = Profile.fit(train)
    detector = FeatureDetector("gradient_boosting", features_of(features))
    detector.profile = profile
    detector.fit(add_context(train, profile), add_context(val, profile))
    return detector.save(folder)


@pytest.fixture(scope="session")
def monitord_model(tmp_path_factory) -> Path:
    """Reads only what monitord's default events carry (train.features=monitord)."""
    return _fit("monitord", tmp_path_factory.mktemp("models") / "monitord")


@pytest.fixture(scope="session")
def pegasus_model(tmp_path_factory) -> Path:
    """Reads what a stampede database records (train.features=pegasus)."""
    return _fit("pegasus", tmp_path_factory.mktemp("models") / "pegasus")


@pytest.fixture(scope="session")
def monitord_ready():
    """pegasus-monitord in its own virtual environment (made once, then reused)."""
    from flowsentry.live.replay import monitord

    try:
        return monitord()
    except Exception as exc:  # no package index reachable
        if os.environ.get("CI"):
            pytest.fail(f"pegasus-monitord unavailable: {exc}")
        pytest.skip(f"pegasus-monitord unavailable: {exc}")
