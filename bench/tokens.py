"""Tokens per job of every template x feature set: what each sentence costs the encoder.

For each workflow the pipeline's own stages (ingest, validate, prepare) run in a
workspace under `reports/experiments/work/<workflow>` (nothing is redone once prepared);
then up to `--jobs` of its training jobs are written as each template's sentence of each
feature set, as a detector reads them (the profile fitted on its training runs, the peer
features from each job's siblings in its run), and counted by params.yaml's
`text.tokenizer`, special tokens included. The `prepare` stage reports the configured
sentence alone (`reports/prepare.json`, `tokens_per_job`). Writes a JSON (with the
machine) and prints a Markdown table.

    python bench/tokens.py --workflows 1000genome
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from flowsentry.config import load_config
from flowsentry.experiments import prepared
from flowsentry.io import write_json
from flowsentry.models.detector import with_context
from flowsentry.models.pretrained import token_counter
from flowsentry.text.sentences import FEATURE_SETS, TEMPLATES, features_of, sentences


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workflows", nargs="+", default=["1000genome"])
    parser.add_argument("--jobs", type=int, default=1000, help="training jobs per workflow")
    parser.add_argument("--out", type=Path, default=Path("reports/bench/tokens.json"))
    args = parser.parse_args()
    cfg = load_config()
    count = token_counter(cfg.text.tokenizer)
    work = cfg.paths.reports / "experiments" / "work"
    result: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "tokenizer": cfg.text.tokenizer,
        "workflows": {},
    }
    for workflow in args.workflows:
        splits = prepared(cfg, workflow, work, os.environ.get("FLOWBENCH_DIR"))
        train = splits.train
        rows = train.sample(min(args.jobs, len(train)), random_state=cfg.base.seed).index
        table: dict = {"jobs": len(rows)}
        for feature_set in FEATURE_SETS:
            features = features_of(feature_set)
            # each set as a detector reads it: the run's siblings give the peer features
            jobs = with_context(train, features, splits.profile).loc[rows]
            for template in TEMPLATES:
                texts = sentences(jobs, template, features, profile=splits.profile)
                counts = count(texts)
                table[f"{template}/{feature_set}"] = {
                    "mean": round(sum(counts) / len(counts), 2),
                    "max": max(counts),
                }
        result["workflows"][workflow] = table
        write_json(result, args.out)

    print(f"\n{result['machine']}; tokenizer {result['tokenizer']}\n")
    for workflow, table in result["workflows"].items():
        print(f"{workflow}, {table['jobs']} training jobs: mean (max) tokens per job\n")
        print("| template | " + " | ".join(f"`{f}`" for f in FEATURE_SETS) + " |")
        print("| --- |" + " --- |" * len(FEATURE_SETS))
        for template in TEMPLATES:
            cells = (table[f"{template}/{f}"] for f in FEATURE_SETS)
            print(
                f"| `{template}` | " + " | ".join(f"{c['mean']} ({c['max']})" for c in cells) + " |"
            )
        print()


if __name__ == "__main__":
    main()
