"""The one registry of detector kinds: build one from the config, load one from disk.

`create_detector(kind, cfg)` makes an unfitted detector of any kind from params.yaml;
`load_detector(folder)` reads the kind from the saved `flowsentry.json` and returns
the detector that kind's `load` restores. Both return `flowsentry.models.detector.Detector`.
"""

from __future__ import annotations

from pathlib import Path

from flowsentry.config import DETECTOR_KINDS as KINDS
from flowsentry.config import Config
from flowsentry.errors import FlowsentryError
from flowsentry.models.baselines import KINDS as FEATURE_KINDS
from flowsentry.models.detector import METADATA, Detector, read_metadata


def create_detector(kind: str, cfg: Config) -> Detector:
    """An unfitted detector of `kind`, configured by `cfg` (the language model's sentence
    from `text`, the feature detectors' features from `train.features`)."""
    from flowsentry.text.sentences import features_of

    if kind == "sft":
        from flowsentry.models.predictor import SentenceClassifier

        return SentenceClassifier(
            cfg.train,
            cfg.text.template,
            cfg.text.feature_set,
            cfg.base.seed,
            cfg.paths.checkpoints,
            device=cfg.base.device,
        )
    if kind in FEATURE_KINDS:
        from flowsentry.models.baselines import FeatureDetector

        return FeatureDetector(kind, features_of(cfg.train.features), cfg.base.seed)
    if kind == "icl":
        import pandas as pd

        from flowsentry.models.icl import ICLDetector
        from flowsentry.models.pretrained import load_decoder

        model, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
        return ICLDetector(
            model,
            tokenizer,
            pd.DataFrame(),
            cfg.icl,
            device,
            cfg.base.seed,
            checkpoints=cfg.paths.icl_checkpoints,
        )
    raise FlowsentryError(f"unknown detector kind '{kind}' (know {', '.join(KINDS)})")


def load_detector(folder: str | Path, device: str = "auto") -> Detector:
    """The detector saved in `folder`, of whatever kind its metadata names."""
    folder = Path(folder)
    kind = read_metadata(folder)["kind"]
    if kind == "sft":
        from flowsentry.models.predictor import SentenceClassifier

        return SentenceClassifier.load(folder, device=device)
    if kind == "icl":
        from flowsentry.models.icl import ICLDetector

        return ICLDetector.load(folder, device)
    if kind in FEATURE_KINDS:
        from flowsentry.models.baselines import FeatureDetector

        return FeatureDetector.load(folder)
    raise FlowsentryError(
        f"{folder / METADATA}: kind '{kind}' is unknown (know {', '.join(KINDS)})"
    )
