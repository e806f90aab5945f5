"""What the OS refuses, made to happen for real: a path that is a file, a folder without
write permission (everywhere: as root the command runs without the capabilities that pass
permission bits), a full disk (a small
tmpfs) and a read-only folder (a read-only bind mount); both need root and skip elsewhere.
Each is one line naming the path and what to do, exit code 1, and nothing stored before
is changed."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

GX_SUITE = Path(__file__).resolve().parents[2] / "gx" / "expectations" / "flowbench_jobs.json"


def _project(root: Path, make_flowbench, n_runs: int = 3) -> Path:
    """params.yaml and tiny Flow-Bench traces under `root`; returns the traces folder."""
    params = {
        "base": {"device": "cpu"},
        "ingest": {"workflows": ["tiny"]},
        "paths": {"gx_suite": str(GX_SUITE)},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    return make_flowbench(n_runs=n_runs, n_jobs=6, root=root / "flowbench")


def _flowsentry(
    root: Path, *args: str, prefix: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "flowsentry.cli", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "COLUMNS": "400"},
        check=False,
    )


# Root passes permission bits by its capabilities: without them, it meets them like anyone.
AS_ANYONE = (
    ("setpriv", "--bounding-set=-dac_override,-dac_read_search",
     "--inh-caps=-dac_override,-dac_read_search")
    if os.geteuid() == 0
    else ()
)  # fmt: skip


def _one_line_error(done: subprocess.CompletedProcess, *words: str) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, done.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_a_path_that_is_a_file(make_flowbench, tmp_path):
    traces = _project(tmp_path, make_flowbench)
    (tmp_path / "data").write_text("not a folder\n")
    done = _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces))
    _one_line_error(done, "data/", "is a file, not a folder")
    assert (tmp_path / "data").read_text() == "not a folder\n"


def test_a_folder_without_write_permission(make_flowbench, tmp_path):
    """Runs everywhere (as root, without the capabilities that pass permission bits)."""
    if AS_ANYONE and shutil.which("setpriv") is None:
        pytest.skip("root without setpriv (util-linux) cannot be refused by chmod")
    traces = _project(tmp_path, make_flowbench)
    assert _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces)).returncode == 0
    table = tmp_path / "data" / "jobs" / "tiny.parquet"
    before = table.read_bytes()
    (tmp_path / "data" / "jobs").chmod(0o555)
    try:
        _project(tmp_path, make_flowbench, n_runs=5)  # more runs: a new table to write
        done = _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces), prefix=AS_ANYONE)
        _one_line_error(done, "data/jobs", "permission denied")
        assert table.read_bytes() == before
    finally:
        (tmp_path / "data" / "jobs").chmod(0o755)


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")


needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="mounts need root"
)


@needs_root
def test_a_full_disk_during_ingest(make_flowbench, tmp_path):
    traces = _project(tmp_path, make_flowbench)
    data = tmp_path / "data"
    data.mkdir()
    _mount("-t", "tmpfs", "-o", "size=512k", "tmpfs", str(data))
    try:
        assert _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces)).returncode == 0
        table = data / "jobs" / "tiny.parquet"
        before = table.read_bytes()
        fd = os.open(data / "filler", os.O_WRONLY | os.O_CREAT)  # fill it to the last byte
        try:
            while os.write(fd, b"\0" * 512):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        _project(tmp_path, make_flowbench, n_runs=8)
        done = _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces))
        _one_line_error(done, "data/", "no space left on the device")
        assert table.read_bytes() == before
        assert [p.name for p in (data / "jobs").iterdir()] == ["tiny.parquet"]  # no leftovers
    finally:
        subprocess.run(["umount", str(data)], check=False)


@needs_root
def test_a_read_only_folder(make_flowbench, tmp_path):
    traces = _project(tmp_path, make_flowbench)
    assert _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces)).returncode == 0
    data = tmp_path / "data"
    before = (data / "jobs" / "tiny.parquet").read_bytes()
    _mount("--bind", str(data), str(data))
    try:
        _mount("-o", "remount,ro,bind", str(data))
        done = _flowsentry(tmp_path, "ingest", "--flowbench-dir", str(traces))
        _one_line_error(done, "data/", "read-only file system")
        assert (data / "jobs" / "tiny.parquet").read_bytes() == before
    finally:
        subprocess.run(["umount", str(data)], check=False)
