"""New traces arriving in an inbox: accepted, skipped or quarantined; never double-counted."""

from __future__ import annotations

from flowsentry.stages import inbox, ingest


def _drop(folder, name, frame):
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)


def test_new_runs_join_the_next_ingest_exactly_once(make_flowbench, project, tmp_path, run_frame):
    make_run = run_frame
    cfg = project()
    root = make_flowbench(n_runs=10, n_jobs=6)
    assert ingest.run(cfg, root, progress=False)["tables"]["tiny"]["runs"] == 10

    box = tmp_path / "inbox" / "tiny"
    _drop(box, "tiny-run0100", make_run(100))  # new, good
    _drop(box, "tiny-run0101", make_run(101, anomalous_host=True))  # new, good
    _drop(box, "tiny-run0003", make_run(3))  # already ingested
    bad = make_run(102)
    bad.loc[2, "runtime"] = -4.0
    _drop(box, "tiny-run0102", bad)  # breaks an expectation
    _drop(box, "tiny-run0103", make_run(103).drop(columns="queue_delay"))  # broken file

    report = inbox.run(cfg, tmp_path / "inbox")
    assert [r["run"] for r in report["accepted"]] == ["tiny-run0100", "tiny-run0101"]
    assert [r["run"] for r in report["skipped"]] == ["tiny-run0003"]
    reasons = {r["run"]: r["reason"] for r in report["quarantined"]}
    assert "runtime is negative" in reasons["tiny-run0102"]
    assert "'queue_delay'" in reasons["tiny-run0103"]
    assert (cfg.paths.quarantine / "inbox" / "tiny" / "tiny-run0103.reason.txt").exists()
    assert not list(box.glob("*.csv"))  # the inbox is emptied

    summary = ingest.run(cfg, root, progress=False)["tables"]["tiny"]
    assert summary["runs"] == 12 and summary["jobs"] == 72

    _drop(box, "tiny-run0100", make_run(100))  # the same run again
    again = inbox.run(cfg, tmp_path / "inbox")
    assert again["accepted"] == [] and [r["run"] for r in again["skipped"]] == ["tiny-run0100"]
    assert ingest.run(cfg, root, progress=False)["tables"]["tiny"]["runs"] == 12
