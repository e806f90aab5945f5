"""results/this-run.md: the evaluate stage's plots of this checkout's last run, when present.

Run by mkdocs-gen-files at build time. `reports/` is a DVC output, never committed, so a
fresh clone has no plots: the page then says which command makes them. Where
`dvc repro` (or `make run`) has run, the PNGs that `evaluate` wrote are copied into the
site as they are.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import mkdocs_gen_files

from flowsentry.config import load_config

PAGE = "results/this-run.md"
ROOT = Path(__file__).resolve().parent.parent
CAPTIONS = {
    "roc": "ROC curve of every candidate on the test split",
    "precision_recall": "Precision-recall curve of every candidate on the test split",
    "early_detection": "Accuracy from the first k features (online detection)",
}


HOW_TO_MAKE = (
    "This checkout holds no run's plots. Make them, then build the site again:",
    "",
    "```bash",
    "FLOWBENCH_DIR=../shared/flowbench make run   # the pipeline, evaluate included",
    "dvc plots show                               # ROC, precision-recall, confusion,",
    "                                             # early detection, as one HTML page",
    "make docs",
    "```",
    "",
)


def caption(stem: str) -> str:
    """What a plot of `evaluate` shows, from its file name."""
    if stem.startswith("confusion_"):
        return f"Confusion matrix of {stem.removeprefix('confusion_')} on the test split"
    return CAPTIONS.get(stem, stem.replace("_", " "))


def page(reports: Path, pngs: list[Path], metrics: Path) -> str:
    """The page: the plots with the date their metrics were written, or how to make them."""
    out = [
        "# Plots of this checkout's run",
        "",
        "`evaluate` draws its plots into `reports/evaluate/png/` and the same data, one curve",
        "per candidate, into DVC's plots (`dvc.yaml` `plots:`). `reports/` is not committed:",
        "these plots exist where the pipeline has run. The published, dated figures are in",
        "[Quality on unseen runs](quality.md) and [Online detection](online.md).",
        "",
    ]
    if not pngs:
        return "\n".join([*out, *HOW_TO_MAKE])
    when = datetime.fromtimestamp(metrics.stat().st_mtime, UTC) if metrics.exists() else None
    prepare = reports / "prepare.json"
    split = json.loads(prepare.read_text()).get("split_method") if prepare.exists() else None
    facts = [f"written {when:%Y-%m-%d %H:%M} UTC"] if when else []
    facts += [f"split `{split}`"] if split else []
    said = "; ".join(facts)
    shown = reports.relative_to(ROOT) if reports.is_relative_to(ROOT) else reports
    out += [f"From `{shown}/evaluate/png/`" + (f" ({said})." if said else "."), ""]
    for png in pngs:
        out += [f"## {caption(png.stem)}", "", f"![{caption(png.stem)}](this-run/{png.name})", ""]
    return "\n".join(out)


_paths = load_config(ROOT / "params.yaml").paths.under(ROOT)  # absolute paths stay
_reports = _paths.reports
_pngs = sorted((_reports / "evaluate" / "png").glob("*.png"))
for _png in _pngs:
    with mkdocs_gen_files.open(f"results/this-run/{_png.name}", "wb") as handle:
        handle.write(_png.read_bytes())
with mkdocs_gen_files.open(PAGE, "w") as handle:
    handle.write(page(_reports, _pngs, _paths.evaluate_report))
