"""The listener's batch handling on the real monitord event stream, damaged at random
(hypothesis): it never stops, every message is applied, recognised as a duplicate or set
aside with a one-line reason, and no job is scored twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowsentry.config import ListenParams
from flowsentry.live.events import Assembler, BadEvent
from flowsentry.live.listener import Listener, Scorers, resolve_model
from flowsentry.live.replay import replay


@pytest.fixture(scope="module")
def stream(pegasus_dir, monitord_ready, tmp_path_factory) -> list[tuple[str, bytes]]:
    """process_wf_failure's full event stream (a failed job, a retry) from the real
    monitord, as (routing key, body) pairs."""
    target = tmp_path_factory.mktemp("replay") / "failure.json"
    replay(pegasus_dir / "process_wf_failure", str(target), full_stream=True)
    return [
        (json.loads(line)["event"], line.encode())
        for line in target.read_text().splitlines()
        if line.strip()
    ]


def _damage(draw, key: str, body: bytes) -> tuple[str, bytes]:
    kind = draw(st.sampled_from(["drop", "retype", "truncate", "rename", "garbage", "keep"]))
    try:
        event = json.loads(body)
    except ValueError:  # damaged already: bytes only
        event, kind = {}, draw(st.sampled_from(["truncate", "rename", "garbage"]))
    if kind == "drop" and event:
        event.pop(draw(st.sampled_from(sorted(event))))
    elif kind == "retype" and event:
        field = draw(st.sampled_from(sorted(event)))
        values = st.one_of(st.none(), st.booleans(), st.text(max_size=5),
                           st.floats(allow_nan=True), st.lists(st.integers()))  # fmt: skip
        event[field] = draw(values)
    elif kind == "truncate":
        return key, body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    elif kind == "rename":
        return draw(st.sampled_from(["stampede.bogus", "kickstart.inv.online", key + ".x"])), body
    elif kind == "garbage":
        return key, draw(st.binary(max_size=64))
    return key, json.dumps(event, allow_nan=True).encode()


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_a_damaged_stream_never_stops_the_listener(stream, monitord_model, tmp_path_factory, data):
    messages = list(stream)
    for _ in range(data.draw(st.integers(1, 8), label="damaged")):
        n = data.draw(st.integers(0, len(messages) - 1))
        messages[n] = _damage(data.draw, *messages[n])
    if data.draw(st.booleans(), label="duplicate some"):
        n = data.draw(st.integers(0, len(messages) - 1))
        messages.insert(n, messages[n])
    if data.draw(st.booleans(), label="swap two"):
        a, b = (
            data.draw(st.integers(0, len(messages) - 1)),
            data.draw(st.integers(0, len(messages) - 1)),
        )
        messages[a], messages[b] = messages[b], messages[a]
    cut = data.draw(st.integers(0, len(messages)), label="batch boundary")
    folder = tmp_path_factory.mktemp("live")
    params = ListenParams(output=folder / "live", inbox=folder / "inbox", prefect_events=False)
    listener = Listener(params, Scorers(resolve_model(str(monitord_model)), None))
    counts = [listener.handle(messages[:cut]), listener.handle(messages[cut:])]
    listener.close()

    total = sum(c.get("messages", 0) for c in counts)
    assert total == len(messages)
    results = [json.loads(x) for x in (folder / "live" / "results.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in results}) == len(results)
    dead = folder / "live" / "dead-letters.jsonl"
    letters = [json.loads(x) for x in dead.read_text().splitlines()] if dead.exists() else []
    assert len(letters) == sum(c.get("set_aside", 0) for c in counts)
    assert all(letter["reason"] and "\n" not in letter["reason"] for letter in letters)


def test_the_untouched_stream_assembles_every_attempt(stream):
    assembler = Assembler()
    ended = []
    for key, body in stream:
        try:
            ended += assembler.apply(key, json.loads(body))
        except BadEvent as exc:  # the real stream has none
            raise AssertionError(exc) from None
    attempts = [e for e in ended if e[0] == "job"]
    assert len(attempts) == 3  # create_dir, and ls failing once then again
    rows = assembler.rows(a[1:] for a in attempts)
    ls = rows[rows["job"] == "ls_ID0000001"]
    assert ls["retries"].tolist() == [0, 1]
    assert ("run", attempts[0][1]) in ended


def test_listen_params_refuse_nonsense():
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        ListenParams(batch_size=0)
    with pytest.raises(ValidationError):
        ListenParams(run_idle_seconds=-1)
    assert ListenParams().output == Path("live")
