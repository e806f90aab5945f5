"""Faults: kill -9 in the middle of training, ingest and validate; a gate that fails.

Each kill is a real SIGKILL to a subprocess: no cleanup handler runs, as after a crash
or an out-of-memory kill. The next run must resume or start clean, and no stored table
may be half-written.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

TRAIN = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    from flowsentry.config import TrainParams
    from flowsentry.models import sft
    model, ckpt, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    rng = np.random.default_rng(0)
    labels = (rng.random(480) < 0.5).astype(int)
    texts = [f"wms_delay is 5.0 runtime is {900 + i % 7 if y else 100 + i % 5}.0"
             for i, y in enumerate(labels)]
    settings = TrainParams(model=model, mode="full", epochs=3, batch_size=4,
                           learning_rate=5e-3, max_length=32)
    trained, tokenizer, summary = sft.fine_tune(
        texts, labels, texts[:64], labels[:64], settings, ckpt, data_version="v1",
        progress=False, device="cpu")
    import torch
    with torch.no_grad():
        batch = tokenizer(texts[:16], padding=True, return_tensors="pt")
        logits = trained(**batch).logits.tolist()
    out.write_text(json.dumps({"resumed": summary["resumed"], "logits": logits}))
    """
)


def _train(tiny_encoder: Path, ckpt: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", TRAIN, str(tiny_encoder), str(ckpt), str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait(predicate, process: subprocess.Popen, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            process.kill()
            raise AssertionError("timed out")
        time.sleep(0.02)


def test_training_killed_mid_run_resumes_to_the_same_model(tiny_encoder, tmp_path):
    import numpy as np

    clean = _train(tiny_encoder, tmp_path / "clean", tmp_path / "clean.json")
    assert clean.wait(timeout=600) == 0, clean.stderr.read().decode()[-2000:]

    ckpt = tmp_path / "killed"
    victim = _train(tiny_encoder, ckpt, tmp_path / "killed.json")
    _wait(lambda: any(ckpt.glob("checkpoint-*/trainer_state.json")), victim)
    victim.send_signal(signal.SIGKILL)  # mid-way through the second epoch
    victim.wait(timeout=60)
    assert not (tmp_path / "killed.json").exists()
    (ckpt / "checkpoint-99999").mkdir()  # as if killed mid-save: no trainer_state.json

    again = _train(tiny_encoder, ckpt, tmp_path / "killed.json")
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()[-2000:]
    first = json.loads((tmp_path / "clean.json").read_text())
    resumed = json.loads((tmp_path / "killed.json").read_text())
    assert resumed["resumed"] and not first["resumed"]
    np.testing.assert_allclose(resumed["logits"], first["logits"], atol=1e-4)
    assert not (ckpt / "checkpoint-99999").exists()


def _params(root: Path) -> Path:
    suite = Path(__file__).resolve().parents[2] / "gx" / "expectations" / "flowbench_jobs.json"
    params = root / "params.yaml"
    params.write_text(
        f"ingest:\n  workflows: [tiny]\npaths:\n  gx_suite: {suite}\n"
        "validate:\n  max_quarantine_fraction: 1.0\n"
    )
    return params


def _flowsentry(root: Path, *args: str) -> subprocess.Popen:
    cli = Path(sys.executable).with_name("flowsentry")
    return subprocess.Popen(
        [str(cli), *args, "--params", str(root / "params.yaml")],
        cwd=root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.mark.parametrize("stage", ["ingest", "validate"])
def test_a_killed_stage_never_leaves_a_half_written_table(make_flowbench, tmp_path, stage):
    """Kill the stage at several moments: each stored table is always the old or the
    new one, whole; the next run succeeds and leaves no temporary files behind."""
    root = tmp_path / "project"
    root.mkdir()
    _params(root)
    small = make_flowbench(n_runs=6, root=tmp_path / "small")
    big = make_flowbench(n_runs=400, root=tmp_path / "big")
    for args in (["ingest", "--flowbench-dir", str(small)], ["validate"]):
        assert _flowsentry(root, *args).wait(timeout=300) == 0
    table = root / "data" / ("jobs" if stage == "ingest" else "validated") / "tiny.parquet"
    old = table.read_bytes()
    if stage == "validate":  # validate the big tables, killed part-way
        assert _flowsentry(root, "ingest", "--flowbench-dir", str(big)).wait(timeout=300) == 0
    args = ["ingest", "--flowbench-dir", str(big)] if stage == "ingest" else ["validate"]

    for delay in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0):
        process = _flowsentry(root, *args)
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
        now = table.read_bytes()
        if now != old:
            assert len(pd.read_parquet(table)) > 0  # a whole, readable new table
    process = _flowsentry(root, *args)
    assert process.wait(timeout=300) == 0, process.stderr.read().decode()[-2000:]
    assert len(pd.read_parquet(table)) == 400 * 6
    leftovers = [p.name for p in (root / "data").rglob(".*")]
    assert leftovers == [], leftovers  # what the kills left is cleaned by the next write


def test_a_gate_that_fails_midway_never_moves_the_champion(trained_project, monkeypatch):
    from flowsentry.registry import store
    from flowsentry.stages import gate

    cfg, champion = trained_project

    def broken(*args, **kwargs):
        raise OSError("disk full while scoring the champion")

    monkeypatch.setattr(gate, "champion_metrics", broken)
    with pytest.raises(OSError):
        gate.run(cfg)
    assert store.champion_tag() == champion


@pytest.fixture
def trained_project(tiny_tournament, project, tiny_encoder, bento_home):
    """A copy of the session's trained and evaluated tournament, with a champion."""
    import shutil

    from tests.conftest import tournament_settings

    from flowsentry.registry import store
    from flowsentry.stages import gate

    shutil.copytree(tiny_tournament, Path.cwd(), dirs_exist_ok=True)
    cfg = project(**tournament_settings(tiny_encoder))
    result = gate.run(cfg)
    assert result.promoted
    return cfg, store.champion_tag()
