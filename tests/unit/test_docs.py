"""The documentation site builds with `mkdocs build --strict`: no broken link or anchor, no
page missing from the nav, every generated reference (params, CLI, service API, the
detector contract) rendered from the code. Built twice: as a fresh clone has it (no
`reports/`, so no run's plots) and as this checkout has it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# mkdocs-material and mkdocs-gen-files print a banner about MkDocs 2 on every build.
QUIET = {"NO_MKDOCS_2_WARNING": "1", "DISABLE_MKDOCS_2_WARNING": "true"}


def fresh_clone(target: Path) -> Path:
    """What `make docs` sees in a clean clone: the site's sources, params.yaml, the code."""
    target.mkdir()
    shutil.copy2(ROOT / "mkdocs.yml", target / "mkdocs.yml")
    shutil.copy2(ROOT / "params.yaml", target / "params.yaml")
    shutil.copytree(ROOT / "docs", target / "docs")
    (target / "src").symlink_to(ROOT / "src", target_is_directory=True)
    return target


def build(project: Path, site: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **QUIET, "BENTOML_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize("checkout", ["fresh clone", "this checkout"])
def test_the_site_builds_strict_with_every_generated_page(tmp_path, checkout):
    project = fresh_clone(tmp_path / "clone") if checkout == "fresh clone" else ROOT
    site = tmp_path / "site"
    result = build(project, site, tmp_path / "bentoml")
    log = result.stdout + result.stderr
    warnings = [line for line in log.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0 and not warnings, log[-4000:]
    for page in ("reference/params", "reference/cli", "reference/api", "reference/detector"):
        assert (site / page / "index.html").is_file(), page
    params = (site / "reference/params/index.html").read_text()
    assert "split.method" in params and "train.candidates" in params
    api = (site / "reference/api/index.html").read_text()
    assert "/classify_partial" in api and "JobRecord" in api
    assert (site / "reference/openapi.json").is_file()
    cli = (site / "reference/cli/index.html").read_text()
    assert "flowsentry registry rollback" in cli
    plots = (site / "results/this-run/index.html").read_text()
    if checkout == "fresh clone":
        assert "holds no run" in plots


def test_readme_links_point_at_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", readme)
    local = [target for target in targets if "://" not in target]
    assert local, "the README links into docs/"
    missing = [target for target in local if not (ROOT / target).exists()]
    assert not missing, missing
