"""Build a detector of any kind from the config, or load one from disk, through the
registry of kinds (`flowsentry.models.kinds`).

`create_detector(kind, cfg)` makes an unfitted detector of any kind from params.yaml;
`load_detector(folder)` reads the kind from the saved `flowsentry.json` and returns
the detector that kind's `load` restores. Both return `flowsentry.models.detector.Detector`.
"""

from __future__ import annotations

from pathlib import Path

from flowsentry.config import Config
from flowsentry.errors import FlowsentryError
from flowsentry.models import kinds
from flowsentry.models.detector import METADATA, Detector, read_metadata


def create_detector(kind: str, cfg: Config) -> Detector:
    """An unfitted detector of `kind`, configured by `cfg` (the language model's sentence
    from `text`, the feature detectors' features from `train.features`)."""
    return kinds.get(kind).detector_class().from_config(kind, cfg)


def load_detector(folder: str | Path, device: str = "auto") -> Detector:
    """The detector saved in `folder`, of whatever kind its metadata names."""
    folder = Path(folder)
    kind = read_metadata(folder)["kind"]
    if kind not in kinds.KINDS:
        raise FlowsentryError(
            f"{folder / METADATA}: kind '{kind}' is unknown (know {', '.join(kinds.KINDS)})"
        )
    return kinds.KINDS[kind].detector_class().load(folder, device=device)
