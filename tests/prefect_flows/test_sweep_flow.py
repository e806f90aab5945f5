"""The Dask sweep flow on tiny traces: candidates in parallel, the best through the gate."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_trains_candidates_on_two_dask_workers_and_gates_the_best(
    harness, make_flowbench, project, tiny_encoder, tmp_path, bento_home
):
    from flowsentry.prefect_flows.sweep import sweep

    project()
    params = {
        "ingest": {"workflows": ["tiny"]},
        "paths": {"gx_suite": str(ROOT / "gx" / "expectations" / "flowbench_jobs.json")},
        "text": {"template": "compact", "feature_set": "context"},
        "base": {"device": "cpu"},
        "train": {"epochs": 1, "batch_size": 16, "learning_rate": 1e-3},
        "evaluate": {"online_max_jobs": 20, "latency_calls": 10},
        "gate": {
            "min_f1": 0.0,
            "min_roc_auc": 0.0,
            "max_bias_gap": 1.0,
            "max_p99_latency_ms": 10000,
        },
        "sweep": {
            "workflows": ["tiny"],
            "models": [str(tiny_encoder)],
            "modes": ["full", "head"],
            "max_train_samples": 150,
            "n_workers": 2,
        },
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    traces = make_flowbench(n_runs=30)

    result = sweep(params="params.yaml", flowbench_dir=str(traces))
    names = [r["candidate"] for r in result["candidates"]]
    assert names == [f"tiny-{tiny_encoder.name}-full", f"tiny-{tiny_encoder.name}-head"]
    # Trained on Dask worker processes, not in this one.
    workers = {r["trained_on"].rsplit(":", 1)[1] for r in result["candidates"]}
    assert str(os.getpid()) not in workers
    for r in result["candidates"]:
        assert (Path(r["model_dir"]) / "model.safetensors").exists()
    # Selected on validation, never on test.
    best_f1 = max(r["val"]["f1"] for r in result["candidates"])
    assert result["best"]["val"]["f1"] == best_f1
    assert result["gate"]["decision"] == "promote" and result["bento"]
    # the gate ran in the best one's workspace (dvc repro package there)
    gated = Path(result["best"]["workspace"]) / result["gate"]["candidate"]["model_dir"]
    assert gated == Path(result["best"]["model_dir"])
    assert result["gate"]["winner"] == "sft"
