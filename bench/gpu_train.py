"""Long trainings for a GPU worker: language-model detectors on every training sample,
several epochs, against gradient boosting on the same split, scored on the same test runs.

    python bench/gpu_train.py --data data --model minilm --epochs 3 --out reports/gpu.json

`--data` holds what the pipeline wrote: `augmented/train.parquet` (the augmented
training set) and `prepared/{val,test}.parquet` (whole unseen runs under the default
`split.method: by_run`). Each `--run NAME:key=value,...` trains one sft detector with
those `train.*` overrides (default: the full fine-tune); every detector picks its
threshold on validation and is scored on test. Writes one JSON with the machine, the
card, the settings, time and metrics of each run. Bounded: one fit per run.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from flowsentry.config import load_config
from flowsentry.evaluation.metrics import binary_metrics
from flowsentry.io import write_json
from flowsentry.models.loading import create_detector


def machine() -> dict[str, object]:
    import os

    import torch

    info: dict[str, object] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30)
    return info


def parse_run(text: str) -> tuple[str, dict[str, object]]:
    name, _, settings = text.partition(":")
    overrides = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        overrides[f"train.{key.strip()}"] = yaml.safe_load(value)
    return name, overrides


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data"))
    parser.add_argument("--model", default="minilm", help="alias, Hugging Face id or path")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--run", action="append", default=[], help="NAME:key=value,...")
    parser.add_argument("--baselines", default="gradient_boosting,random_forest")
    parser.add_argument("--work", type=Path, default=Path("/tmp/flowsentry-gpu"))
    parser.add_argument("--out", type=Path, default=Path("reports/gpu_train.json"))
    args = parser.parse_args()

    train = pd.read_parquet(args.data / "augmented" / "train.parquet")
    val = pd.read_parquet(args.data / "prepared" / "val.parquet")
    test = pd.read_parquet(args.data / "prepared" / "test.parquet")
    labels = test["label"].astype(int).to_numpy()
    result: dict[str, object] = {
        "machine": machine(),
        "data": {"train_rows": len(train), "val_jobs": len(val), "test_jobs": len(test)},
        "runs": {},
    }
    base = {
        "train.model": args.model,
        "train.epochs": args.epochs,
        "train.batch_size": args.batch_size,
        "train.max_train_samples": None,
        "train.max_val_samples": None,
        "paths.checkpoints": str(args.work / "checkpoints"),
    }
    runs = [parse_run(r) for r in args.run] or [("full", {})]
    for kind in filter(None, args.baselines.split(",")):
        runs.append((kind, {"kind": kind}))
    for name, overrides in runs:
        kind = str(overrides.pop("kind", "sft"))
        cfg = load_config(
            "params.yaml", {**base, **overrides, "paths.checkpoints": str(args.work / name)}
        )
        began = time.perf_counter()
        detector = create_detector(kind, cfg).fit(train, val, cfg.train.threshold)
        fit_seconds = time.perf_counter() - began
        began = time.perf_counter()
        scores = detector.score(test)
        entry = {
            "kind": kind,
            "overrides": overrides,
            "fit_seconds": round(fit_seconds, 1),
            "test_score_seconds": round(time.perf_counter() - began, 1),
            "val": detector.validation_,
            "test": binary_metrics(labels, scores, detector.threshold_),
        }
        training = getattr(detector, "_metadata_saved", {}).get("training")
        if training:
            entry["training"] = {
                k: training[k]
                for k in ("train_jobs", "train_seconds", "train_samples_per_second", "device")
            }
        result["runs"][name] = entry
        print(json.dumps({name: entry["test"] | {"fit_s": entry["fit_seconds"]}}), flush=True)
        write_json(result, args.out)  # after every run
    return 0


if __name__ == "__main__":
    sys.exit(main())
