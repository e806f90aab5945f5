"""The one registry of detector kinds: each kind's name, class and needs, read without
importing any model.

`KINDS` maps a kind's name (what `train.candidates` lists and `flowsentry.json` saves) to
a `Kind`: the class that implements the detector contract, as a "module:Class" path
imported only when a detector of that kind is built or loaded, and what the rest of the
project needs to know of it beforehand: whether it learns from labels, whether it reads
sentences through a language model, whether it can explain a verdict in words, and the
packages a container needs to serve it. Config validation, loading, the studies, the
service and the container's package list all read this table, so importing it costs no
torch, transformers or pyod.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flowsentry.errors import FlowsentryError

if TYPE_CHECKING:
    from flowsentry.models.detector import Detector

#: What serving needs whatever the kind; versions come from the project's lock.
SERVE_COMMON = (
    "bentoml", "pandas", "numpy", "pydantic", "pyyaml", "scikit-learn", "skops", "redis",
)  # fmt: skip
#: A fine-tuned encoder run from its ONNX file: the tokenizer and onnxruntime, no torch.
SERVE_ONNX = ("transformers", "tokenizers", "onnxruntime")
#: A language model run from its torch weights.
SERVE_TORCH = ("torch", "transformers", "peft", "accelerate", "safetensors", "gguf")


@dataclass(frozen=True)
class Kind:
    """One detector kind as the project knows it before importing its class."""

    name: str
    #: the class implementing `flowsentry.models.detector.Detector`, as "module:Class"
    detector: str
    #: learns from training labels; False: unsupervised, labels only choose its threshold
    reads_labels: bool
    #: reads job sentences or prompts through a language model, not feature columns
    language_model: bool = False
    #: can reason about a job in words (the service's `explain`)
    explains: bool = False
    #: packages a container needs to serve it, beyond `SERVE_COMMON`
    serving: tuple[str, ...] = ()
    #: the packages instead of `serving` when the saved model runs on onnxruntime
    #: (its metadata's `runtime.engine`); None: it never does
    serving_onnx: tuple[str, ...] | None = None
    #: a feature detector whose model scores each row of its matrix alone, so rows can be
    #: scored in any batch (its online prefixes in one call); pyod's ECOD and COPOD rank
    #: a batch against the training data together with the batch itself
    rows_alone: bool = False

    def detector_class(self) -> type[Detector]:
        """The class of this kind's detectors (its module imported now)."""
        module, _, name = self.detector.partition(":")
        return getattr(importlib.import_module(module), name)

    def requirements(self, runtime: Mapping[str, Any] | None = None) -> list[str]:
        """The top-level packages a saved detector of this kind needs to serve; `runtime`
        is its metadata's `runtime` (the fine-tuned encoder's ONNX engine), if any."""
        onnx = (runtime or {}).get("engine") == "onnxruntime"
        extra = self.serving_onnx if onnx and self.serving_onnx is not None else self.serving
        return [*SERVE_COMMON, *extra]


_FEATURE_DETECTOR = "flowsentry.models.baselines:FeatureDetector"

#: Every detector kind, by name, in the order the config lists them.
KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind(
            "sft",
            "flowsentry.models.encoder:SentenceClassifier",
            reads_labels=True,
            language_model=True,
            serving=SERVE_TORCH,
            serving_onnx=SERVE_ONNX,
        ),
        Kind(
            "icl",
            "flowsentry.models.in_context:ICLDetector",
            reads_labels=True,
            language_model=True,
            explains=True,
            serving=SERVE_TORCH,
        ),
        # stacking: trees over the evidence and the fine-tuned encoder's score
        Kind(
            "hybrid",
            "flowsentry.models.hybrid:HybridDetector",
            reads_labels=True,
            language_model=True,
            serving=SERVE_TORCH,
            serving_onnx=SERVE_ONNX,
        ),
        Kind("gradient_boosting", _FEATURE_DETECTOR, reads_labels=True, rows_alone=True),
        Kind("random_forest", _FEATURE_DETECTOR, reads_labels=True, rows_alone=True),
        # unsupervised: scikit-learn's IsolationForest and pyod's empirical-CDF, copula
        # and histogram outlier scores (no training labels, no tuning)
        Kind("isolation_forest", _FEATURE_DETECTOR, reads_labels=False, rows_alone=True),
        Kind("ecod", _FEATURE_DETECTOR, reads_labels=False, serving=("pyod",)),
        Kind("copod", _FEATURE_DETECTOR, reads_labels=False, serving=("pyod",)),
        Kind("hbos", _FEATURE_DETECTOR, reads_labels=False, serving=("pyod",), rows_alone=True),
    )
}


def names(**traits: bool) -> tuple[str, ...]:
    """The kinds' names, in registry order, whose traits equal `traits`
    (e.g. `names(language_model=False)`: the feature detectors)."""
    return tuple(
        name
        for name, kind in KINDS.items()
        if all(getattr(kind, trait) == value for trait, value in traits.items())
    )


def get(name: str) -> Kind:
    """The kind called `name`, or a one-line error naming the kinds there are."""
    try:
        return KINDS[name]
    except KeyError:
        raise FlowsentryError(f"unknown detector kind '{name}' (know {', '.join(KINDS)})") from None
