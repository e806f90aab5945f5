"""Package: build a Bento serving the registry's champion (`bentoml build`)."""

from __future__ import annotations

import logging
from pathlib import Path

from flowsentry.config import Config
from flowsentry.data.sources import missing_measures
from flowsentry.errors import FlowsentryError
from flowsentry.models.detector import read_metadata
from flowsentry.registry import store
from flowsentry.reports import GateReport, PackageReport

log = logging.getLogger(__name__)


def run(cfg: Config, bentofile: Path = Path("bentofile.yaml")) -> PackageReport:
    """`bentoml build` with the champion's tag as the Bento argument `model` and the
    `serve` params as the others; writes the PackageReport (`paths.package_report`)."""
    import bentoml

    gate = GateReport.read_or_none(cfg.paths)
    champion = store.champion_tag()
    if champion is None:
        raise FlowsentryError(
            f"no champion in the registry: nothing to package (see {cfg.paths.gate_report})"
        )
    features = read_metadata(store.get(champion).path).get("features") or []
    missing = missing_measures(cfg.serve.source, features)
    if missing:  # the service would refuse it at load: say so now, before building
        raise FlowsentryError(
            f"{champion} reads {', '.join(missing)}, which a '{cfg.serve.source}' source "
            f"(serve.source) never records; train it with train.features="
            f"{'monitord' if cfg.serve.source == 'monitord' else 'pegasus'}"
        )
    # reload: a long-lived process (a Prefect worker) imported the service module for an
    # earlier build; BentoML re-imports it so the class reads this build's argument.
    # The build context is the bentofile's real folder (a workspace links the project's).
    bentofile = bentofile.resolve()
    bento = bentoml.bentos.build_bentofile(
        str(bentofile),
        build_ctx=str(bentofile.parent),
        args={"model": champion, **cfg.serve.model_dump()},
        reload=True,
    )
    result = PackageReport(
        bento=str(bento.tag),
        model=champion,
        gate_decision=gate.decision if gate else None,
        path=str(bento.path),
        serve=cfg.serve.model_dump(mode="json"),
    )
    result.write(cfg.paths)
    log.info("built bento %s serving %s", bento.tag, champion)
    return result
