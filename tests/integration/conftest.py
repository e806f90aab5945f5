"""Integration tests read the real Flow-Bench traces under FLOWBENCH_DIR.

In CI (CI=true) a missing FLOWBENCH_DIR is a failure, never a silent skip.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def flowbench_dir() -> Path:
    value = os.environ.get("FLOWBENCH_DIR")
    if not value or not Path(value).is_dir():
        message = f"FLOWBENCH_DIR must name the Flow-Bench data folder (got {value!r})"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return Path(value).resolve()
