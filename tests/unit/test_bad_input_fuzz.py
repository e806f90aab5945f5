"""Generated bad input through ingest, validate and the inbox: each file is accepted or
refused with a one-line error (never a traceback), and nothing stored before is changed
by a refused file."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pandas as pd
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from flowsentry.data import schema
from flowsentry.errors import FlowsentryError
from flowsentry.stages import inbox, ingest, validate

N_JOBS = 6
RUNS = 3


def _csv(run_frame, run: int) -> bytes:
    return run_frame(run, N_JOBS).to_csv(index=False).encode()


def _cell(data, text: bytes) -> bytes:
    frame = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    column = data.draw(st.sampled_from(list(schema.RAW_COLUMNS)), label="column")
    value = data.draw(
        st.one_of(
            st.integers(-(10**40), 10**40).map(str),
            st.floats(allow_nan=True, allow_infinity=True).map(repr),
            st.sampled_from(["1e308", "-0.0", "0x10", "1_000", " 7 ", "None", "nan", ""]),
            st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=10),
        ),
        label="value",
    )
    frame.loc[data.draw(st.integers(0, N_JOBS - 1), label="row"), column] = value
    return frame.to_csv(index=False).encode()


def _byte(data, text: bytes) -> bytes:
    position = data.draw(st.integers(0, len(text) - 1), label="position")
    byte = data.draw(st.integers(0x80, 0xFF), label="byte")
    return text[:position] + bytes([byte]) + text[position + 1 :]


def _truncate(data, text: bytes) -> bytes:
    return text[: data.draw(st.integers(0, len(text) - 1), label="cut")]


def _duplicate_column(data, text: bytes) -> bytes:
    column = data.draw(st.sampled_from(list(schema.RAW_COLUMNS)), label="column")
    lines = text.decode().splitlines()
    lines = [lines[0] + f",{column}"] + [line + ",1" for line in lines[1:]]
    return ("\n".join(lines) + "\n").encode()


def _drop_column(data, text: bytes) -> bytes:
    frame = pd.read_csv(io.BytesIO(text), dtype=str, keep_default_na=False)
    column = data.draw(st.sampled_from(list(frame.columns)), label="column")
    return frame.drop(columns=column).to_csv(index=False).encode()


MUTATIONS = {
    "cell": _cell,
    "byte": _byte,
    "truncate": _truncate,
    "duplicate_column": _duplicate_column,
    "drop_column": _drop_column,
}
MEMBER_NAMES = (
    "tiny-run0099.csv",
    "../up/tiny-run0099.csv",
    "/abs/tiny-run0099.csv",
    "deep/er/tiny-run0099.csv",
    "tiny-rün 99.csv",
)


def _one_line_refusal(exc: BaseException) -> None:
    assert isinstance(exc, FlowsentryError), f"{type(exc).__name__}: {exc}"
    assert "\n" not in str(exc) and str(exc).strip()


def _stored(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for folder in ("data/jobs", "data/validated", "data/raw")
        for p in sorted((root / folder).rglob("*"))
        if p.is_file() and "new_runs" not in p.parts  # where the inbox puts accepted runs
    }


def _stored_project(cfg, run_frame, home: Path) -> Path:
    """A project that ingested and validated good runs (from `home/good`): made by the
    first example, copied by each (the same stored state, at a third of the cost)."""
    if (home / ".complete").exists():
        return home
    shutil.rmtree(home, ignore_errors=True)  # what an interrupted first example left
    good = home / "good"
    (good / "adjacency_list_dags").mkdir(parents=True)
    dag = {f"{t}_ID{j:07d}": [] for j, t in enumerate(["prepare", "compute", "merge"] * 2)}
    (good / "adjacency_list_dags" / "tiny.json").write_text(pd.Series(dag).to_json())
    with zipfile.ZipFile(good / "tiny.zip", "w") as archive:
        for r in range(RUNS):
            archive.writestr(f"tiny-run{r:04d}.csv", _csv(run_frame, r))
    os.chdir(home)
    ingest.run(cfg, good, progress=False)
    validate.run(cfg)
    (home / ".complete").touch()
    return home


@settings(
    max_examples=10,
    deadline=None,
    phases=(Phase.explicit, Phase.reuse, Phase.generate),  # each example takes seconds
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_traces_are_accepted_or_refused_in_one_line(project, run_frame, tmp_path, data):
    cfg = project()
    home = Path(tempfile.mkdtemp(dir=tmp_path)) / "project"
    shutil.copytree(_stored_project(cfg, run_frame, tmp_path / "template"), home)
    os.chdir(home)  # every example starts from its own copy of the stored project
    good = home / "good"
    before = _stored(home)

    kind = data.draw(st.sampled_from(sorted(MUTATIONS)), label="mutation")
    text = MUTATIONS[kind](data, _csv(run_frame, 99))
    member = data.draw(st.sampled_from(MEMBER_NAMES), label="member")

    # ingest of an archive that carries the mutated run
    bad = home / "bad"
    (bad / "adjacency_list_dags").mkdir(parents=True)
    (bad / "adjacency_list_dags" / "tiny.json").write_bytes(
        (good / "adjacency_list_dags" / "tiny.json").read_bytes()
    )
    with zipfile.ZipFile(bad / "tiny.zip", "w") as archive:
        for r in range(RUNS):
            archive.writestr(f"tiny-run{r:04d}.csv", _csv(run_frame, r))
        archive.writestr(member, text)
    try:
        ingest.run(cfg, bad, progress=False)
    except Exception as exc:
        _one_line_refusal(exc)
        assert _stored(home) == before  # nothing stored was touched
    else:
        try:
            validate.run(cfg)
        except Exception as exc:
            _one_line_refusal(exc)
        ingest.run(cfg, good, progress=False)  # back to the stored state for the inbox
        validate.run(cfg)
        before = _stored(home)

    # the same run dropped into the inbox
    box = home / "inbox" / "tiny"
    box.mkdir(parents=True)
    (box / "tiny-run0099.csv").write_bytes(text)
    report = inbox.run(cfg, home / "inbox")  # never raises for a bad file
    assert not list(box.glob("*.csv"))
    outcomes = report.accepted + report.skipped + report.quarantined
    assert len(outcomes) == 1
    for entry in report.quarantined:
        assert "\n" not in entry.reason and Path(entry.kept_as).exists()
    for entry in report.accepted:
        assert (cfg.paths.raw / "new_runs" / "tiny" / entry.file).exists()
    assert _stored(home) == before
