"""ICL scoring benchmark: flowsentry's likelihood scorer vs. the naive computation.

    python bench/icl_scoring.py --jobs 24

Naive: every prompt run whole, once per category (" Normal", " Abnormal"), full
vocabulary logits at every position. flowsentry: the token prefix all prompts share run
once (its key/value cache reused), one pass per job for one-token categories, the
vocabulary projection only where read. Same SmolLM2 model, same prompts, side by side;
reports jobs/s, the ratio, the largest score difference and the machine.

A last row scores the decoder with LoRA adapters attached (PEFT, as a decoder tuned by
`icl.lora` is loaded) twice with flowsentry's scorer: projecting every position of the
batch onto the vocabulary, as the scorer did when it read the wrapper's signature, and
only the positions it reads. Written to bench/results/icl_scoring.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--jobs", type=int, default=24, help="Test jobs per configuration.")
    args = parser.parse_args()

    from peft import LoraConfig, get_peft_model

    from flowsentry.config import load_config
    from flowsentry.data.evidence import read_profile
    from flowsentry.data.splits import stratified_sample
    from flowsentry.io import read_table, write_json
    from flowsentry.models.in_context import ICLDetector
    from flowsentry.models.likelihood import reference_scores
    from flowsentry.models.pretrained import load_decoder

    cfg = load_config(args.params)
    train = read_table(cfg.paths.prepared / "train.parquet")
    test = stratified_sample(read_table(cfg.paths.prepared / "test.parquet"), args.jobs, 42)
    model, tokenizer, device = load_decoder(cfg.icl.model, cfg.base.device)
    profile = read_profile(cfg.paths.profile)  # the evidence sentences read it
    results = {"machine": machine(), "jobs": len(test), "model": cfg.icl.model, "rows": []}
    for examples in ("balanced", "nearest"):
        params = cfg.icl.model_copy(update={"examples": examples, "n_examples": 4})
        detector = ICLDetector(model, tokenizer, train, params, device, cfg.base.seed)
        detector.profile = profile
        prefixes, suffixes = detector.prompts(test)
        started = time.perf_counter()
        naive = reference_scores(
            model, tokenizer, detector.scorer.continuations, prefixes, suffixes
        )
        naive_s = time.perf_counter() - started
        started = time.perf_counter()
        fast = detector.scorer.score(prefixes, suffixes)
        fast_s = time.perf_counter() - started
        results["rows"].append(
            {
                "examples": f"4 {examples}",
                "naive_jobs_per_s": round(len(test) / naive_s, 2),
                "flowsentry_jobs_per_s": round(len(test) / fast_s, 2),
                "speedup": round(naive_s / fast_s, 2),
                "max_score_difference": float(np.abs(naive - fast).max()),
            }
        )
        print(json.dumps(results["rows"][-1]), flush=True)

    tuned = get_peft_model(model, LoraConfig(r=8, target_modules=["q_proj", "v_proj"])).eval()
    detector = ICLDetector(tuned, tokenizer, train, params, device, cfg.base.seed)
    detector.profile = profile
    prefixes, suffixes = detector.prompts(test)
    timed = {}
    for keeps in (False, True):
        detector.scorer._keeps_logits = keeps
        started = time.perf_counter()
        timed[keeps] = (detector.scorer.score(prefixes, suffixes), time.perf_counter() - started)
    (every, every_s), (kept, kept_s) = timed[False], timed[True]
    results["rows"].append(
        {
            "examples": "4 nearest, LoRA adapters",
            "every_position_jobs_per_s": round(len(test) / every_s, 2),
            "flowsentry_jobs_per_s": round(len(test) / kept_s, 2),
            "speedup": round(every_s / kept_s, 2),
            "max_score_difference": float(np.abs(every - kept).max()),
        }
    )
    print(json.dumps(results["rows"][-1]), flush=True)
    write_json(results, Path(__file__).resolve().parent / "results" / "icl_scoring.json")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
