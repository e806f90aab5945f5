"""Load any saved flowsentry model by its kind: a fine-tuned encoder or an ICL decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flowsentry.errors import FlowsentryError
from flowsentry.models.predictor import METADATA, SentenceClassifier


def load_predictor(model_dir: str | Path, device: str = "auto", int8: bool = False) -> Any:
    """A `SentenceClassifier` (kind sft) or an `ICLDetector` (kind icl): both take job
    records and return P(anomalous), with `threshold`, `features` and `metadata`."""
    model_dir = Path(model_dir)
    meta_path = model_dir / METADATA
    try:
        kind = json.loads(meta_path.read_text()).get("kind", "sft")
    except FileNotFoundError:
        raise FlowsentryError(f"{model_dir}: not a flowsentry model (no {METADATA})") from None
    except json.JSONDecodeError as exc:
        raise FlowsentryError(f"{meta_path}: not valid JSON ({exc})") from None
    if kind == "icl":
        from flowsentry.models.icl import ICLDetector

        return ICLDetector.load(model_dir, device)
    if kind != "sft":
        raise FlowsentryError(f"{meta_path}: kind '{kind}' is neither 'sft' nor 'icl'")
    return SentenceClassifier.load(model_dir, device=device, int8=int8)
