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
