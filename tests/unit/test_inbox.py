"""New traces arriving in an inbox: accepted, skipped or quarantined; never double-counted."""

from __future__ import annotations

from flowsentry.reports import InboxReport
from flowsentry.stages import inbox, ingest


def _drop(folder, name, frame):
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / f"{name}.csv", index=False)


def test_new_runs_join_the_next_ingest_exactly_once(make_flowbench, project, tmp_path, run_frame):
    make_run = run_frame
    cfg = project()
    root = make_flowbench(n_runs=10, n_jobs=6)
    assert ingest.run(cfg, root, progress=False).tables["tiny"].runs == 10

    box = tmp_path / "inbox" / "tiny"
    _drop(box, "tiny-run0100", make_run(100))  # new, good
    _drop(box, "tiny-run0101", make_run(101, anomalous_host=True))  # new, good
    _drop(box, "tiny-run0003", make_run(3, anomalous_host=True))  # already ingested
    bad = make_run(102)
    bad.loc[2, "runtime"] = -4.0
    _drop(box, "tiny-run0102", bad)  # breaks an expectation
    _drop(box, "tiny-run0103", make_run(103).drop(columns="queue_delay"))  # broken file

    report = inbox.run(cfg, tmp_path / "inbox")
    assert [r.run for r in report.accepted] == ["tiny-run0100", "tiny-run0101"]
    assert [r.run for r in report.skipped] == ["tiny-run0003"]
    reasons = {r.run: r.reason for r in report.quarantined}
    assert "runtime is negative" in reasons["tiny-run0102"]
    assert "'queue_delay'" in reasons["tiny-run0103"]
    assert (cfg.paths.quarantine / "inbox" / "tiny" / "tiny-run0103.reason.txt").exists()
    assert not list(box.glob("*.csv"))  # the inbox is emptied

    summary = ingest.run(cfg, root, progress=False).tables["tiny"]
    assert summary.runs == 12 and summary.jobs == 72

    _drop(box, "tiny-run0100", make_run(100))  # the same run again
    broken = make_run(101)
    broken.loc[0, "runtime"] = -1.0
    _drop(box, "tiny-run0101", broken)  # a known name, but a damaged file: looked at
    _drop(box, "tiny-run0004", make_run(104))  # a known name over other jobs
    again = inbox.run(cfg, tmp_path / "inbox")
    assert again.accepted == [] and [r.run for r in again.skipped] == ["tiny-run0100"]
    reasons = {r.run: r.reason for r in again.quarantined}
    assert "runtime is negative" in reasons["tiny-run0101"]
    assert "already ingested with other jobs" in reasons["tiny-run0004"]

    # Labelled by an operator, then sent again: still the same run (labels are not content).
    from flowsentry.data.labels import add_labels

    add_labels(cfg.paths.labels, [{"workflow": "tiny", "run": "tiny-run0003", "job": "*",
                                   "label": "normal", "note": ""}])  # fmt: skip
    ingest.run(cfg, root, progress=False)
    _drop(box, "tiny-run0003", make_run(3, anomalous_host=True))
    _drop(box, "renamed-0003", make_run(3, anomalous_host=True))
    resent = inbox.run(cfg, tmp_path / "inbox")
    assert resent.accepted == [] and resent.quarantined == []
    assert sorted(r.run for r in resent.skipped) == ["renamed-0003", "tiny-run0003"]
    assert ingest.run(cfg, root, progress=False).tables["tiny"].runs == 12


def test_each_file_is_sorted_on_its_own_and_nothing_is_lost(
    make_flowbench, project, tmp_path, run_frame, monkeypatch
):
    """Bad files first, in the middle and last; one file that breaks the reader in an
    unexpected way; the same run under another name; a second file of a quarantined
    name. Every good file is accepted once, every other file is reported and kept."""

    from flowsentry.stages import inbox as inbox_stage

    cfg = project()
    root = make_flowbench(n_runs=4, n_jobs=6)
    ingest.run(cfg, root, progress=False)
    box = tmp_path / "inbox" / "tiny"
    bad = run_frame(200)
    bad["runtime"] = bad["runtime"].astype(object)
    bad.loc[1, "runtime"] = "slow"  # not a number
    _drop(box, "a-bad", bad)
    _drop(box, "b-good", run_frame(201))
    _drop(box, "c-explodes", run_frame(202))
    _drop(box, "d-copy-of-run1", run_frame(1, anomalous_host=False))  # == tiny-run0001
    _drop(box, "e-good", run_frame(203))
    _drop(box, "f-copy-of-b", run_frame(201))  # == b-good, accepted in this batch
    (box / "g-not-utf8.csv").write_bytes(run_frame(204).to_csv(index=False).encode() + b"\xff\n")

    real = inbox_stage._checker

    def checker(*args):
        check = real(*args)

        def exploding(table, path):
            if path.stem == "c-explodes":
                raise RuntimeError("disk on fire")
            return check(table, path)

        return exploding

    monkeypatch.setattr(inbox_stage, "_checker", checker)
    report = inbox.run(cfg, tmp_path / "inbox")
    assert [r.run for r in report.accepted] == ["b-good", "e-good"]
    skipped = {r.run: r.note for r in report.skipped}
    assert skipped == {
        "d-copy-of-run1": "same jobs as run 'tiny-run0001' (content hash)",
        "f-copy-of-b": "same jobs as run 'b-good' (content hash)",
    }
    reasons = {r.run: r.reason for r in report.quarantined}
    assert set(reasons) == {"a-bad", "c-explodes", "g-not-utf8"}
    assert "'slow'" in reasons["a-bad"] and "RuntimeError" in reasons["c-explodes"]
    assert "not UTF-8" in reasons["g-not-utf8"] and "line 8" in reasons["g-not-utf8"]
    assert all("\n" not in reason for reason in reasons.values())
    assert InboxReport.read(cfg.paths) == report
    assert not list(box.glob("*.csv"))

    # the same bad file again: kept beside the first, never over it
    _drop(box, "a-bad", bad)
    again = inbox.run(cfg, tmp_path / "inbox")
    kept = sorted(p.name for p in (cfg.paths.quarantine / "inbox" / "tiny").glob("a-bad*"))
    assert kept == ["a-bad.1.csv", "a-bad.1.reason.txt", "a-bad.csv", "a-bad.reason.txt"]
    assert again.quarantined[0].kept_as.endswith("a-bad.1.csv")

    summary = ingest.run(cfg, root, progress=False).tables["tiny"]
    assert summary.runs == 6  # 4 + b-good + e-good, each once


def test_the_report_is_written_when_the_batch_fails(
    make_flowbench, project, tmp_path, run_frame, monkeypatch
):

    import pytest

    from flowsentry.data import arrivals as box_module

    cfg = project()
    ingest.run(cfg, make_flowbench(n_runs=3, n_jobs=6), progress=False)
    box = tmp_path / "inbox" / "tiny"
    _drop(box, "a-good", run_frame(300))
    _drop(box, "b-good", run_frame(301))
    real = box_module._move
    calls = []

    def move(src, folder):
        calls.append(src.name)
        if len(calls) == 2:
            raise OSError("No space left on device")
        return real(src, folder)

    monkeypatch.setattr(box_module, "_move", move)
    with pytest.raises(OSError):
        inbox.run(cfg, tmp_path / "inbox")
    report = InboxReport.read(cfg.paths)  # written although the sorting failed
    assert [r.run for r in report.accepted] == ["a-good"]
    assert "No space left" in report.error
    assert (box / "b-good.csv").exists()  # not moved: still in the inbox for the next run
