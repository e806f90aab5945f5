"""The registry of detector kinds is the one source: the config, loading and the container
read it, and reading it imports no model library."""

from __future__ import annotations

import inspect
import subprocess
import sys
from typing import get_args

import pytest

from flowsentry.config import (
    Config,
    DetectorKind,
    NewWorkflowParams,
    TrainParams,
    config_from_dict,
)
from flowsentry.deploy import container
from flowsentry.errors import ConfigError, FlowsentryError
from flowsentry.models import kinds
from flowsentry.models.detector import Detector
from flowsentry.models.loading import create_detector


@pytest.mark.parametrize("name", list(kinds.KINDS))
def test_every_kind_names_a_class_that_keeps_the_contract(name):
    cls = kinds.get(name).detector_class()
    assert issubclass(cls, Detector) and not inspect.isabstract(cls)


def test_the_config_accepts_exactly_the_registrys_kinds():
    assert get_args(DetectorKind) == tuple(kinds.KINDS)
    for field in (TrainParams.model_fields["candidates"], NewWorkflowParams.model_fields["kinds"]):
        item = get_args(field.annotation)[0]  # tuple[DetectorKind, ...]
        assert get_args(item) == tuple(kinds.KINDS)
    for name in kinds.KINDS:
        assert Config.model_validate({"train": {"candidates": [name]}}).train.candidates == (name,)
    with pytest.raises(ConfigError, match="train.candidates"):
        config_from_dict({"train": {"candidates": ["xgboost"]}})


def test_the_study_takes_the_registrys_feature_kinds_only():
    feature_kinds = kinds.names(language_model=False)
    assert feature_kinds and set(feature_kinds) < set(kinds.KINDS)
    cfg = config_from_dict({"new_workflow": {"kinds": list(feature_kinds)}})
    assert cfg.new_workflow.kinds == feature_kinds
    for name in kinds.names(language_model=True):
        with pytest.raises(ConfigError, match="new_workflow.kinds"):
            config_from_dict({"new_workflow": {"kinds": [name]}})


@pytest.mark.parametrize("name", kinds.names(language_model=False))
def test_create_detector_builds_the_registrys_class(name):
    detector = create_detector(name, Config())
    assert type(detector) is kinds.get(name).detector_class() and detector.kind == name


def test_an_unknown_kind_is_one_line_naming_the_known_ones():
    with pytest.raises(FlowsentryError, match=r"unknown detector kind 'xgboost' \(know sft, icl"):
        create_detector("xgboost", Config())
    with pytest.raises(FlowsentryError, match="unknown detector kind 'xgboost'"):
        container.requirements_for("xgboost")


def test_requirements_for_reads_the_registry(monkeypatch):
    for name, kind in kinds.KINDS.items():
        assert container.requirements_for(name) == kind.requirements()
    onnx = {"engine": "onnxruntime", "int8": False}
    assert container.requirements_for("sft", onnx) == [*kinds.SERVE_COMMON, *kinds.SERVE_ONNX]
    assert container.requirements_for("icl", onnx) == [*kinds.SERVE_COMMON, *kinds.SERVE_TORCH]
    extra = kinds.Kind(
        "extra", "flowsentry.models.baselines:FeatureDetector", False, serving=("extra-package",)
    )
    monkeypatch.setitem(kinds.KINDS, "extra", extra)
    assert container.requirements_for("extra") == [*kinds.SERVE_COMMON, "extra-package"]


def test_reading_the_registry_and_the_config_imports_no_model_library():
    code = (
        "import sys, flowsentry.config, flowsentry.models.kinds as k; "
        "[x.requirements() for x in k.KINDS.values()]; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'transformers', 'pyod', 'sklearn', 'onnxruntime', 'peft'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
