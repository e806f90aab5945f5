"""Fine-tuning modes, saving with safetensors, loading through the detector contract."""

from __future__ import annotations

import numpy as np
import pytest

from flowsentry.config import LoraParams, TrainParams
from flowsentry.models import sft
from flowsentry.models.detector import Detector
from flowsentry.models.encoder import SentenceClassifier
from flowsentry.text.sentences import PAPER_FEATURES, sentence


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < 0.5).astype(int)
    texts = [
        sentence(
            {"wms_delay": 5.0, "queue_delay": 20.0, "runtime": 900.0 if y else 100.0},
            "paper",
            PAPER_FEATURES[:3],
        )
        for y in labels
    ]
    return texts, labels


def _settings(tiny_encoder, mode, **extra):
    values = dict(
        model=str(tiny_encoder),
        mode=mode,
        epochs=2,
        batch_size=16,
        learning_rate=5e-3,
        max_length=64,
        lora=LoraParams(r=4, alpha=8, target_modules=("query", "value")),
    )
    return TrainParams(**{**values, **extra})


@pytest.mark.parametrize("mode", ["full", "lora", "head"])
def test_modes_train_only_their_parameters(tiny_encoder, mode):
    _tokenizer, model = sft.build_model(_settings(tiny_encoder, mode))
    trainable, total = sft.trainable_parameters(model)
    if mode == "full":
        assert trainable == total
    elif mode == "head":
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert names and all(n.startswith("classifier") for n in names)
    else:
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        assert any("lora_" in n for n in names) and trainable < total / 5


@pytest.mark.parametrize("mode", ["full", "lora", "head"])
def test_fine_tune_save_load_round_trip(tiny_encoder, tmp_path, mode):
    texts, labels = _data()
    model, tokenizer, summary = sft.fine_tune(
        texts,
        labels,
        texts[:16],
        labels[:16],
        _settings(tiny_encoder, mode),
        tmp_path / "ckpt",
        progress=False,
    )
    assert summary["train_jobs"] == 64 and "f1" in summary["val"]
    assert list((tmp_path / "ckpt").glob("checkpoint-*"))  # checkpoints were kept
    metadata = {
        "mode": mode,
        "base_model": str(tiny_encoder),
        "template": "paper",
        "kind": "sft",
        "features": list(PAPER_FEATURES[:3]),
        "threshold": 0.5,
        "max_length": 64,
    }
    detector = SentenceClassifier.from_model(model, tokenizer, metadata)
    in_memory = detector.score_texts(texts[:8])

    detector.save(tmp_path / "model")
    saved = {p.name for p in (tmp_path / "model").iterdir()}
    assert any(name.endswith(".safetensors") for name in saved)
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in saved)
    loaded = SentenceClassifier.load(tmp_path / "model", device="cpu")
    assert isinstance(loaded, Detector)
    np.testing.assert_allclose(loaded.score_texts(texts[:8]), in_memory, atol=1e-5)
    records = [{"wms_delay": 5.0, "queue_delay": 20.0, "runtime": 900.0}]
    assert loaded.score(records).shape == (1,)
    assert loaded.predict(records)[0] in (0, 1)


def test_full_mode_learns_an_obvious_signal(tiny_encoder, tmp_path):
    texts, labels = _data(128)
    _model, _tokenizer, summary = sft.fine_tune(
        texts,
        labels,
        texts[:32],
        labels[:32],
        # no early stop: F1 stays 0 for the first epochs while the scores already rank
        _settings(tiny_encoder, "full", epochs=4, early_stopping_patience=4),
        tmp_path / "ckpt",
        progress=False,
    )
    assert summary["val"]["roc_auc"] >= 0.95  # separates slow from fast jobs


def test_resume_only_from_matching_checkpoints(tiny_encoder, tmp_path):
    texts, labels = _data(32)
    settings = _settings(tiny_encoder, "head", epochs=1)
    args = (texts, labels, texts[:8], labels[:8], settings, tmp_path / "ckpt")
    _, _, first = sft.fine_tune(*args, data_version="v1", progress=False)
    assert not first["resumed"]
    _, _, again = sft.fine_tune(*args, data_version="v1", progress=False)
    assert again["resumed"]  # same settings and data: continue from the last checkpoint
    _, _, other = sft.fine_tune(*args, data_version="v2", progress=False)
    assert not other["resumed"]  # other data: never resume a stale checkpoint


def test_the_gpu_profile_applies_on_cuda_only(tiny_encoder, tmp_path, monkeypatch):
    """On a CUDA GPU sft trains on every row for `train.gpu.epochs`; on the CPU the
    budget settings hold; the profile can be switched off."""
    import pandas as pd

    from flowsentry.config import GpuProfile
    from flowsentry.models import device as devices

    params = TrainParams(model=str(tiny_encoder), max_train_samples=20, epochs=1)
    assert params.on("cpu") == params and params.on("mps") == params
    gpu = params.on("cuda")
    assert (gpu.epochs, gpu.max_train_samples) == (3.0, None)
    off = params.model_copy(update={"gpu": GpuProfile(enabled=False)})
    assert off.on("cuda") == off

    texts, labels = _data(40)
    train = pd.DataFrame({"sentence": texts, "label": labels, "workflow": "wf"})
    val = train.head(10).assign(wms_delay=5.0, queue_delay=20.0, runtime=100.0)
    seen = {}

    def fine_tune(texts, labels, val_texts, val_labels, settings, *args, **kwargs):
        seen.update(rows=len(texts), epochs=settings.epochs, device=kwargs["device"])
        raise RuntimeError("seen enough")

    monkeypatch.setattr(sft, "fine_tune", fine_tune)
    for placed, expected in (
        ("cpu", {"rows": 20, "epochs": 1.0}),
        ("cuda", {"rows": 40, "epochs": 3.0}),
    ):
        monkeypatch.setattr(
            devices, "select", lambda preferred="auto", d=placed: devices.Placement(d, False, False)
        )
        detector = SentenceClassifier(params, checkpoints=tmp_path, device="auto")
        with pytest.raises(RuntimeError, match="seen enough"):
            detector.fit(train, val)
        assert seen == {**expected, "device": "auto"}


def _tiny_classifier(tiny_encoder):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(tiny_encoder, num_labels=2)
    return model.eval(), AutoTokenizer.from_pretrained(tiny_encoder)


def test_the_onnx_export_scores_as_torch_and_int8_ignores_batch_mates(tiny_encoder, tmp_path):
    """float32 ONNX gives torch's logits; static int8 gives each sentence the same score
    alone or batched with others of other lengths (dynamic int8 would not)."""
    import torch

    from flowsentry.models.encoder import OnnxModel, export_onnx

    model, tokenizer = _tiny_classifier(tiny_encoder)
    texts, _ = _data(40, seed=3)
    texts = [t + " stage_in_delay is 12.0" * (i % 4) for i, t in enumerate(texts)]
    files = export_onnx(model, tokenizer, tmp_path, calibration=texts[:24], max_length=64)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="np")
    with torch.inference_mode():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(OnnxModel(files["fp32"]).logits(batch), expected, atol=1e-4)
    int8 = OnnxModel(files["int8"])
    together = int8.logits(batch)
    for i, text in enumerate(texts[:10]):
        alone = int8.logits(tokenizer([text], return_tensors="np"))
        np.testing.assert_array_equal(alone[0], together[i])


@pytest.mark.parametrize("setting", ["on", "off", "auto"])
def test_the_runtime_choice_follows_train_int8(tiny_encoder, setting):
    import pandas as pd

    model, tokenizer = _tiny_classifier(tiny_encoder)
    metadata = {"kind": "sft", "template": "paper", "features": list(PAPER_FEATURES[:3])}
    detector = SentenceClassifier.from_model(model, tokenizer, metadata)
    rng = np.random.default_rng(0)
    val = pd.DataFrame(
        {"wms_delay": 5.0, "queue_delay": 20.0, "runtime": rng.uniform(100, 900, 40)}
    ).assign(label=lambda f: (f["runtime"] > 500).astype(int))
    params = TrainParams(int8=setting, max_length=64)
    chosen = detector._choose_runtime(val, params, detector.sentences(val)[:16])
    measured = chosen["validation"]
    assert chosen["engine"] == "onnxruntime" and set(measured) <= {"fp32", "int8"}
    if setting == "off":
        assert set(measured) == {"fp32"} and not chosen["int8"]
    elif setting == "on":
        assert chosen["int8"] and detector.onnx.path.name == "model.int8.onnx"
    else:  # auto: int8 only when faster without losing F1
        faster = measured["int8"]["jobs_per_s"] > measured["fp32"]["jobs_per_s"]
        kept = measured["int8"]["f1"] >= measured["fp32"]["f1"] - params.int8_max_f1_loss
        assert chosen["int8"] == (faster and kept)
    assert len(detector.score(val)) == 40
