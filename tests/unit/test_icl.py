"""In-context learning: prompts, example selection, likelihood scoring, chain of thought."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from flowsentry.config import ICLLoraParams, ICLParams
from flowsentry.errors import FlowsentryError
from flowsentry.models.decoder_lora import fine_tune_decoder
from flowsentry.models.examples import ExamplePicker
from flowsentry.models.in_context import ICLDetector
from flowsentry.models.likelihood import LikelihoodScorer, reference_scores
from flowsentry.text.prompts import (
    CATEGORIES,
    PromptSpec,
    build_prompt,
    class_statistics,
    parse_category,
)
from flowsentry.text.sentences import PAPER_FEATURES


def _params(**changes):
    """The icl section with the paper's features and `changes`."""
    return ICLParams(feature_set="paper", **changes)


def _tune(model, tokenizer, detector, jobs, folder, **lora):
    """Decoder LoRA on `jobs` with `detector`'s training prompts."""
    prefixes, suffixes = detector.prompts(jobs, from_train=True)
    params = ICLLoraParams(**{"learning_rate": 5e-3, **lora})
    labels = jobs["label"].astype(int).tolist()
    return fine_tune_decoder(
        model, tokenizer, prefixes, suffixes, labels, params, folder, device="cpu", progress=False
    )


@pytest.fixture
def train():
    rng = np.random.default_rng(0)
    n = 60
    labels = np.array([1 if i % 3 == 0 else 0 for i in range(n)])
    frame = pd.DataFrame({f: rng.normal(10, 1, n).round(1) for f in PAPER_FEATURES})
    frame["runtime"] = np.where(labels == 1, 900.0, 100.0) + np.arange(n)
    frame["label"] = labels
    frame["workflow"] = "wf"
    return frame


def _count_words(text):
    return len(text.split())


def test_statistics_per_class(train):
    text = class_statistics(train, PAPER_FEATURES)
    assert "Normal jobs:" in text and "Abnormal jobs:" in text and "runtime 1" in text


def test_budget_drops_examples_never_the_job():
    examples = [(f"runtime is {i}.0 " * 20, i % 2) for i in range(10)]
    spec = PromptSpec(max_prompt_tokens=200)
    prefix, suffix, kept = build_prompt("runtime is 5.0", examples, spec, _count_words)
    assert 0 < kept < 10 and suffix.endswith("Instruct: runtime is 5.0\nCategory:")
    assert _count_words(prefix + suffix) + 4 <= 200
    assert examples[-1][0] in prefix  # the last (nearest) examples are kept
    with pytest.raises(FlowsentryError, match="the job alone needs"):
        build_prompt("x " * 500, examples, spec, _count_words)


def test_example_sets(train):
    picker = ExamplePicker(train, PAPER_FEATURES, seed=1)
    assert set(picker.fixed("negative", 5)["label"]) == {0}
    assert set(picker.fixed("positive", 5)["label"]) == {1}
    assert picker.fixed("balanced", 4)["label"].sum() == 2
    assert len(picker.fixed("random", 7)) == 7 and len(picker.fixed("balanced", 0)) == 0
    job = train.iloc[[3]].assign(runtime=903.5)  # closest to the slow job 3
    nearest = picker.nearest(job, 3)
    assert nearest.index[-1] == 3 and set(nearest["label"]) == {1}
    # Training on job 3: it must never be its own example (that would leak its label).
    assert 3 not in picker.nearest(job, 3, exclude=3).index
    assert len(picker.nearest(job, 3, exclude=3)) == 3


def test_training_prompts_never_show_the_job_its_own_label(tiny_decoder, train):
    model, tokenizer = tiny_decoder
    detector = ICLDetector(model, tokenizer, train, _params(examples="nearest", n_examples=1))
    jobs = train.head(5)
    scoring, _ = detector.prompts(jobs)
    training, suffixes = detector.prompts(jobs, from_train=True)
    for prefix, suffix in zip(scoring, suffixes, strict=True):  # scoring: its own twin
        assert suffix.removeprefix("\n").removesuffix("Category:") in prefix
    for prefix, suffix in zip(training, suffixes, strict=True):
        assert suffix.removeprefix("\n").removesuffix("Category:") not in prefix


SUFFIXES = [
    "\nInstruct: runtime is 2.0\nCategory:",
    "\nInstruct: runtime is 900.0\nCategory:",
    "\nInstruct: wms_delay is 3.0\nCategory:",
]


@pytest.mark.parametrize(
    "prefixes",
    [
        # one shared prefix (fixed examples): all of it is cached
        ["Instruct: classify.\nInstruct: runtime is 1.0\nCategory: Normal"] * 3,
        # per-job examples (nearest neighbours): only the common task line is cached
        [
            "Instruct: classify.\nInstruct: runtime is 1.0\nCategory: Normal",
            "Instruct: classify.\nInstruct: runtime is 800.0\nCategory: Abnormal",
            "Instruct: classify.",
        ],
        # nothing in common: no cache at all
        ["Alpha.", "Beta gamma.", "Delta."],
    ],
)
@pytest.mark.parametrize("one_token_categories", [True, False])
def test_cached_scores_equal_direct_scores(tiny_decoder, prefixes, one_token_categories):
    model, tokenizer = tiny_decoder
    scorer = LikelihoodScorer(model, tokenizer, batch_size=2)
    assert all(len(c) == 1 for c in scorer.continuations)  # SmolLM2: one pass per job
    if not one_token_categories:  # the general path: one row per category
        scorer.continuations = [
            tokenizer(t, add_special_tokens=False)["input_ids"]
            for t in (" Normal job", " Abnormal")
        ]
        assert len(scorer.continuations[0]) > 1
    scores = scorer.score(prefixes, SUFFIXES)
    direct = reference_scores(model, tokenizer, scorer.continuations, prefixes, SUFFIXES)
    np.testing.assert_allclose(scores, direct, atol=1e-4)
    assert ((scores > 0) & (scores < 1)).all()


def test_a_decoder_with_adapters_projects_only_the_positions_it_reads(tiny_decoder):
    """LoRA-wrapped (PEFT), the decoder still skips the vocabulary projection of every
    position but the last: the same scores, a fraction of the work."""
    from peft import LoraConfig, get_peft_model

    model, tokenizer = tiny_decoder
    tuned = get_peft_model(
        model, LoraConfig(r=2, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    ).eval()
    projected = []
    hook = tuned.get_base_model().lm_head.register_forward_hook(
        lambda module, args, out: projected.append(out.shape[1])
    )
    prefixes = ["Instruct: classify.\nInstruct: runtime is 1.0\nCategory: Normal"] * 3
    try:
        scorer = LikelihoodScorer(tuned, tokenizer, batch_size=3)
        scores = scorer.score(prefixes, SUFFIXES)
        # the shared prefix: its last position; the batch: where each job's category is
        # read (the three suffixes end at three positions), not every position of the batch
        assert projected == [1, len(SUFFIXES)]
        direct = reference_scores(tuned, tokenizer, scorer.continuations, prefixes, SUFFIXES)
        np.testing.assert_allclose(scores, direct, atol=1e-4)
    finally:
        hook.remove()
        tuned.unload()  # the session's tiny decoder, without adapters again


def test_parse_category():
    assert parse_category("runtime is high. Category: Abnormal") == "Abnormal"
    assert parse_category("first Category: Normal, then category: abnormal") == "Abnormal"
    assert parse_category("the numbers look fine") is None


@pytest.mark.parametrize("examples", ["balanced", "negative", "positive", "random", "nearest"])
def test_icl_detector_follows_the_detector_contract(tiny_decoder, train, examples):
    model, tokenizer = tiny_decoder
    params = _params(examples=examples, n_examples=2, max_prompt_tokens=1024)
    detector = ICLDetector(model, tokenizer, train, params)
    jobs = train.head(4)
    scores = detector.score(jobs)
    assert scores.shape == (4,) and ((scores > 0) & (scores < 1)).all()
    assert set(detector.predict(jobs.to_dict("records"))) <= {0, 1}
    assert detector.examples_kept == [2, 2, 2, 2]
    assert detector.score(jobs, k=2).shape == (4,)  # online: a prefix of the job
    assert detector.metadata["kind"] == "icl"


def test_explain_reports_reasoning_and_never_guesses(tiny_decoder, train, monkeypatch):
    model, tokenizer = tiny_decoder
    detector = ICLDetector(model, tokenizer, train, _params())
    job = train.iloc[0].to_dict()
    assert isinstance(detector.explain(job, max_new_tokens=8)["reasoning"], str)  # real decoding

    def replying(text):  # the decoder "writes" `text` after the prompt
        def generate(input_ids, **kwargs):
            assert input_ids.shape[1] > 20 and kwargs["do_sample"] is False  # greedy
            reply = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
            return torch.cat([input_ids, reply], dim=1)

        return generate

    monkeypatch.setattr(model, "generate", replying(" runtime is far above. Category: Abnormal"))
    said = detector.explain(job)
    assert said == {
        "reasoning": "runtime is far above. Category: Abnormal",
        "category": "Abnormal",
        "parsed": True,
    }
    monkeypatch.setattr(model, "generate", replying(" the numbers look fine"))
    said = detector.explain(job)
    assert said["category"] is None and not said["parsed"]  # no category: none invented


def test_lora_fine_tuning_runs_and_changes_scores(tiny_decoder, train, tmp_path):
    model, tokenizer = tiny_decoder
    import copy

    base = copy.deepcopy(model)
    params = _params(n_examples=0, statistics=False)
    detector = ICLDetector(base, tokenizer, train, params)
    before = detector.score(train.head(6))
    tuned = _tune(base, tokenizer, detector, train.head(16), tmp_path, epochs=2)
    assert {n for n, _ in tuned.named_parameters() if "lora_" in n} and all(
        ("q_proj" in n or "v_proj" in n) for n, _ in tuned.named_parameters() if "lora_" in n
    )  # peft's default modules for Llama
    after = ICLDetector(tuned, tokenizer, train, params).score(train.head(6))
    assert not np.allclose(before, after)


def test_icl_stage_writes_the_table(tiny_decoder_folder, make_flowbench, project):
    from flowsentry.reports import IclReport
    from flowsentry.stages import icl, ingest, prepare, validate

    folder = tiny_decoder_folder
    cfg = project(
        icl={
            "model": str(folder),
            "sample": 12,
            "n_examples": 1,
            "curve": [0, 1, 2],
            "lora": {"train_samples": 12},
        },
    )
    ingest.run(cfg, make_flowbench(n_runs=20), progress=False)
    validate.run(cfg)
    prepare.run(cfg)
    report = icl.run(cfg, progress=False)
    assert IclReport.read(cfg.paths) == report
    rows = report.rows
    assert len(rows) == 5 + 1 + 5  # the table, n=2 on the curve, the table after LoRA
    assert {r.examples for r in rows} == {"none", "negative", "positive", "balanced", "nearest"}
    assert [r.fine_tuned for r in rows].count(True) == 5
    assert (cfg.paths.reports / "icl" / "table.csv").exists()
    assert (cfg.paths.reports / "icl" / "curve.png").stat().st_size > 0
    saved = json.loads((cfg.paths.icl_model / "flowsentry.json").read_text())
    assert saved["kind"] == "icl" and saved["adapter"] and saved["examples"] == "nearest"


def test_a_saved_detector_loads_with_its_adapter_and_scores_the_same(
    tiny_decoder, tiny_decoder_folder, train, tmp_path
):
    import copy

    from flowsentry.errors import FlowsentryError
    from flowsentry.models.loading import load_detector

    model, tokenizer = tiny_decoder
    params = _params(model=str(tiny_decoder_folder), examples="nearest", n_examples=2)
    base = copy.deepcopy(model)
    untuned = ICLDetector(base, tokenizer, train, params)
    tuned = _tune(base, tokenizer, untuned, train.head(8), tmp_path / "ckpt")
    detector = ICLDetector(tuned, tokenizer, train, params)
    saved = detector.save(tmp_path / "icl-model")
    assert (saved / "adapter" / "adapter_model.safetensors").exists()
    loaded = load_detector(saved, device="cpu")
    assert isinstance(loaded, ICLDetector) and loaded.metadata["kind"] == "icl"
    jobs = train.tail(5)
    np.testing.assert_allclose(loaded.score(jobs), detector.score(jobs), atol=1e-5)
    (saved / "flowsentry.json").write_text('{"kind": "gbm"}')
    with pytest.raises(FlowsentryError, match="kind 'gbm'"):
        load_detector(saved)


def test_the_default_gguf_decoder_loads_as_a_trainable_float_model():
    """SmolLM2 from its GGUF file: float weights, and no quantizer mark that would make
    Trainer refuse LoRA ("quantized with GGUF ... do not support training")."""
    from transformers.trainer_utils import validate_quantization_for_training

    from flowsentry.models.pretrained import load_decoder

    model, tokenizer, device = load_decoder("smollm2", "cpu")
    assert device == "cpu" and model.config.model_type == "llama"
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    validate_quantization_for_training(model)  # raises for a quantized model
    assert [len(tokenizer(f" {c}", add_special_tokens=False)["input_ids"]) for c in CATEGORIES] == [
        1,
        1,
    ]


def test_icl_fits_through_the_contract_threshold_on_validation(tiny_decoder, train, tmp_path):
    """fit(train, val): the example pool from train, LoRA when asked, the threshold
    chosen on validation like every other kind."""
    import copy

    from flowsentry.models.detector import choose_threshold

    model, tokenizer = tiny_decoder
    params = _params(model="tiny", n_examples=1, lora={"train_samples": 10})
    detector = ICLDetector(
        copy.deepcopy(model), tokenizer, train.iloc[:0], params, checkpoints=tmp_path / "ckpt"
    )
    val = train.tail(10)
    detector.fit(train.head(30), val)
    assert hasattr(detector.model, "peft_config")  # decoder LoRA ran
    assert len(detector.picker.train) == 30
    assert detector.threshold_ == choose_threshold(val["label"], detector.score(val))
    assert detector.validation_["jobs"] == 10


def test_icl_prompts_get_sibling_context_from_the_shared_function(tiny_decoder, train):
    """Records without context columns (as the service receives them): the prompt shows
    the host's slowdown computed from the run's other jobs, never nan."""
    model, tokenizer = tiny_decoder
    params = ICLParams(model="tiny", template="compact", feature_set="context", n_examples=0)
    detector = ICLDetector(model, tokenizer, train, params)
    jobs = [
        {"workflow": "wf", "run": "r1", "task": "t", "kickstart_hostname": host, "runtime": rt}
        for host, rt in (("slow", 400.0), ("fast", 100.0), ("fast", 100.0))
    ]
    prefixes, suffixes = detector.prompts(jobs)
    prompts = [p + s for p, s in zip(prefixes, suffixes, strict=True)]
    assert "hrun=400" in prompts[0] and "hrun=100" in prompts[1]
    assert "nan" not in " ".join(suffixes)
