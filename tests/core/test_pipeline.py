"""The pipeline end to end on local files: delivery, retries, dead letters, checkpoints, stop."""

from __future__ import annotations

import gzip
import logging
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from trailrelay.config import parse_config
from trailrelay.contract import BatchLimits, Origin, Record
from trailrelay.errors import FetchError
from trailrelay.pipeline.deadletter import FolderDeadLetters, entry, read_entries
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.forwarder import build_pipeline
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.settings import Secret, secret_values
from trailrelay.sources.base import Work
from trailrelay.sources.files import FileSource
from trailrelay.state import Checkpoints
from trailrelay.testing import SAMPLE_EVENTS


def _pipeline(
    src: Path,
    sinks: dict[str, Any],
    tmp: Path,
    *,
    checkpoints: Checkpoints | None = None,
    max_retry: float = 30.0,
) -> Pipeline:
    metrics = Metrics()
    stop = threading.Event()
    dead = FolderDeadLetters(tmp / "dead")
    pipe = Pipeline(FileSource(src, checkpoints), dead_letters=dead, metrics=metrics, stop=stop)
    for name, sink in sinks.items():
        pipe.sinks[name] = SinkRunner(
            name,
            sink,
            dead_letters=dead,
            metrics=metrics,
            stop=stop,
            on_fatal=pipe.on_fatal,
            max_retry_seconds=max_retry,
            backoff_base=0.001,
        )
    return pipe


def _trail(
    root: Path,
    make_object: Callable[..., Path],
    make_events: Callable[..., list[dict[str, Any]]],
    objects: int = 5,
    per: int = 40,
) -> list[str]:
    ids: list[str] = []
    for i in range(objects):
        evs = make_events(per, prefix=f"o{i}")
        ids += [e["eventID"] for e in evs]
        make_object(root / f"AWSLogs/111122223333/CloudTrail/eu-west-1/2026/03/02/obj{i}.json.gz", evs)
    return ids


def test_every_record_delivered_once_to_every_sink(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events)
    a, b = scripted(), scripted()
    result = _pipeline(tmp_path / "in", {"a": a, "b": b}, tmp_path).run()
    assert result.ok
    assert Counter(a.stored) == Counter(ids)
    assert Counter(b.stored) == Counter(ids)
    snap = result.metrics.snapshot()
    assert snap["delivered"] == {"a": len(ids), "b": len(ids)}
    assert snap["units_acknowledged"] == 5


def test_bad_input_is_dead_lettered_with_reasons_and_the_run_goes_on(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    root = tmp_path / "in"
    ids = _trail(root, make_object, make_events, objects=2, per=10)
    cut_events = make_events(5, prefix="lost")
    whole = gzip.compress(orjson.dumps({"Records": cut_events}))
    (root / "truncated.json.gz").write_bytes(whole[: len(whole) // 2])
    readable = zlib.decompressobj(31).decompress(whole[: len(whole) // 2])
    before_cut = [e["eventID"] for e in cut_events if orjson.dumps(e) in readable]  # complete before it
    (root / "hello.json").write_bytes(b'{"hello": "world"}')
    (root / "bad-record.json").write_bytes(b'{"Records": [42, ' + orjson.dumps(SAMPLE_EVENTS[0]) + b"]}")
    (root / "empty.json").write_bytes(b"")
    digest = root / "AWSLogs/111122223333/CloudTrail-Digest/eu-west-1/2026/03/02/d.json.gz"
    digest.parent.mkdir(parents=True)
    digest.write_bytes(gzip.compress(b'{"digestStartTime": "x", "logFiles": []}'))
    sink = scripted()
    result = _pipeline(root, {"s": sink}, tmp_path).run()
    assert before_cut  # the records before the break are delivered, the rest is one dead letter
    assert sorted(sink.stored) == sorted([*ids, *before_cut, SAMPLE_EVENTS[0]["eventID"]])
    entries = list(read_entries(tmp_path / "dead"))
    reasons = {Path(e["origin"]["location"]).name: e["reason"] for e in entries}
    assert "truncated gzip" in reasons["truncated.json.gz"]
    assert "not a CloudTrail record" in reasons["hello.json"]
    assert "not an object" in reasons["bad-record.json"]
    bad = next(e for e in entries if e["origin"]["location"].endswith("bad-record.json"))
    assert bad["raw"] == "42"
    assert bad["index"] == 0
    assert bad["stage"] == "parse"
    snap = result.metrics.snapshot()
    assert snap["skipped"] == {"digest": 1, "empty-object": 1}
    assert sum(snap["dead_lettered"].values()) == 3


def test_a_dead_letter_file_cut_short_gets_the_next_entry_on_a_line_of_its_own(tmp_path: Path) -> None:
    """A file an older version left ending in part of an entry (it stopped mid-write): the next
    entry was glued onto the fragment, so it could neither be read nor replayed."""
    dead = FolderDeadLetters(tmp_path / "d")
    dead.write(entry("parse", "first", None, b"a"))
    (f,) = (tmp_path / "d").iterdir()
    with f.open("ab") as fh:
        fh.write(b'{"time": "2026-')  # the fragment
    dead.write(entry("parse", "second", None, b"b"))
    dead.write(entry("parse", "third", None, b"c"))
    lines = f.read_bytes().splitlines(keepends=True)
    assert [orjson.loads(x)["reason"] for x in (lines[0], *lines[2:])] == ["first", "second", "third"]
    assert lines[1] == b'{"time": "2026-\n'  # left as it was, for a person to look at


@pytest.mark.parametrize(
    ("tail", "kept"),
    [
        (b'{"eventVersion": "1.08", "eventID": "torn', b""),  # torn by a writer killed mid-write: cut
        (b'{"eventID": "whole-but-no-line-break"}', b'{"eventID": "whole-but-no-line-break"}\n'),
    ],
)
def test_the_file_sink_cuts_a_line_torn_at_the_end_before_appending(
    tmp_path: Path, make_object: Any, make_events: Any, tail: bytes, kept: bytes
) -> None:
    """A fleet worker killed (kill -9) in the middle of a write left a torn line; the next batch
    continued it, so that batch's first record was unreadable in the file. The torn line's
    records were not acknowledged and come again, so it is cut; a whole JSON line is kept."""
    ids = _trail(tmp_path / "in", make_object, make_events, objects=1, per=5)
    out = tmp_path / "out.ndjson"
    out.write_bytes(b'{"eventID": "earlier"}\n' + tail)
    config = parse_config(
        {
            "source": {"type": "files", "path": str(tmp_path / "in")},
            "sinks": [{"type": "file", "path": str(out)}],
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    built.pipeline.run()
    for s in built.sinks.values():
        s.close()
    data = out.read_bytes()
    assert data.startswith(b'{"eventID": "earlier"}\n' + kept)
    got = [orjson.loads(x)["eventID"] for x in data.splitlines()]  # every line is whole JSON
    assert sorted(got[1 + bool(kept) :]) == sorted(ids)


def test_transient_failures_are_retried_until_delivered(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=2, per=10)
    sink = scripted()
    sink.retry_calls = 3
    result = _pipeline(tmp_path / "in", {"s": sink}, tmp_path).run()
    assert Counter(sink.stored) == Counter(ids)
    assert result.metrics.snapshot()["retries"]["s"] >= 3
    assert not (tmp_path / "dead").exists()


def test_failing_sends_are_logged_at_once_then_at_intervals_and_recovery_is_said(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An unreachable SIEM must show in the log at its first failed send, not only in counters
    (a run that looks idle for 30 minutes); retries within the interval are summed, not repeated."""
    ids = _trail(tmp_path / "in", make_object, make_events, objects=2, per=10)
    sink = scripted()
    sink.retry_calls = 6
    with caplog.at_level(logging.INFO, logger="trailrelay.pipeline"):
        result = _pipeline(tmp_path / "in", {"siem": sink}, tmp_path).run()
    assert Counter(sink.stored) == Counter(ids)
    assert result.metrics.snapshot()["retries"]["siem"] >= 6
    said = [r.getMessage() for r in caplog.records if r.name == "trailrelay.pipeline"]
    failed = [m for m in said if "a send failed" in m]
    assert len(failed) == 1, said  # six failures within RETRY_LOG_EVERY: one warning
    assert failed[0].startswith("sink siem: a send failed;")
    assert "busy (scripted)" in failed[0]  # the sink's reason
    assert "dead-lettered if still failing in" in failed[0]
    assert said[-1] == "sink siem: delivering again"


def test_recovery_is_said_however_the_records_settle(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """The send after the failures delivers some records and refuses one (settled together)."""
    ids = _trail(tmp_path / "in", make_object, make_events, objects=1, per=10)
    sink = scripted()
    sink.retry_calls = 2
    sink.reject_ids = {ids[4]}
    with caplog.at_level(logging.INFO, logger="trailrelay.pipeline"):
        _pipeline(tmp_path / "in", {"siem": sink}, tmp_path).run()
    assert Counter(sink.stored) == Counter(ids) - Counter([ids[4]])
    assert "sink siem: delivering again" in [r.getMessage() for r in caplog.records]


def test_failed_sends_past_the_interval_are_each_said(
    tmp_path: Path,
    scripted: Any,
    make_object: Any,
    make_events: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trailrelay.pipeline import delivery

    monkeypatch.setattr(delivery, "RETRY_LOG_EVERY", 0.0)
    _trail(tmp_path / "in", make_object, make_events, objects=1, per=10)
    sink = scripted()
    sink.retry_calls = 4
    with caplog.at_level(logging.WARNING, logger="trailrelay.pipeline"):
        _pipeline(tmp_path / "in", {"siem": sink}, tmp_path).run()
    assert sum("a send failed" in r.getMessage() for r in caplog.records) == 4


def test_rejected_records_dead_lettered_with_sink_and_raw(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=1, per=10)
    sink = scripted()
    sink.reject_ids = {ids[3]}
    _pipeline(tmp_path / "in", {"siem": sink}, tmp_path).run()
    assert ids[3] not in sink.stored
    (entry,) = read_entries(tmp_path / "dead")
    assert entry["sink"] == "siem"
    assert entry["stage"] == "sink"
    assert orjson.loads(entry["raw"])["eventID"] == ids[3]
    assert "refused" in entry["reason"]


def test_retries_give_up_after_max_retry_seconds(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=1, per=5)
    sink = scripted()
    sink.retry_calls = 10**9
    result = _pipeline(tmp_path / "in", {"s": sink}, tmp_path, max_retry=0.2).run()
    entries = list(read_entries(tmp_path / "dead"))
    assert sorted(orjson.loads(e["raw"])["eventID"] for e in entries) == sorted(ids)
    assert all("gave up after" in e["reason"] and "busy" in e["reason"] for e in entries)
    assert result.metrics.snapshot()["units_acknowledged"] == 1  # dead-lettered is final


def test_fatal_sink_stops_without_acknowledging(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    _trail(tmp_path / "in", make_object, make_events, objects=3, per=10)
    ck = Checkpoints(tmp_path / "state.sqlite")
    sink = scripted()
    sink.fatal_after = 0
    result = _pipeline(tmp_path / "in", {"s": sink}, tmp_path, checkpoints=ck).run()
    assert result.fatal and "token revoked" in result.fatal
    assert ck.count() == 0
    assert not (tmp_path / "dead").exists()  # nothing dead-lettered: the records stay in the source


def test_checkpoint_resume_loses_nothing_and_rereads_nothing_finished(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=6, per=30)
    ck = Checkpoints(tmp_path / "state.sqlite")
    first = scripted(BatchLimits(max_records=30, max_bytes=1 << 20, max_age=0.05, concurrency=1))
    first.fatal_after = 3  # the run is interrupted after three batches (three objects)
    r1 = _pipeline(tmp_path / "in", {"s": first}, tmp_path, checkpoints=ck).run()
    assert r1.fatal
    done_first = ck.count()
    assert 1 <= done_first < 6
    second = scripted()
    r2 = _pipeline(tmp_path / "in", {"s": second}, tmp_path, checkpoints=ck).run()
    assert r2.ok
    assert set(first.stored) | set(second.stored) == set(ids)  # nothing lost
    assert r2.metrics.snapshot()["objects_read"] == 6 - done_first  # nothing finished is read again
    assert r2.metrics.snapshot()["skipped"]["already-done"] == done_first
    assert ck.count() == 6
    third = scripted()
    r3 = _pipeline(tmp_path / "in", {"s": third}, tmp_path, checkpoints=ck).run()
    assert third.stored == []
    assert r3.metrics.snapshot()["objects_read"] == 0


def test_run_result_says_whether_the_source_ran_out(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    """``drained``: every unit was taken up. A stop between objects leaves it False (exit 5)."""
    _trail(tmp_path / "in", make_object, make_events, objects=6, per=30)
    whole = _pipeline(tmp_path / "in", {"s": scripted()}, tmp_path).run()
    assert whole.drained and not whole.stopped
    sink = scripted(BatchLimits(max_records=30, max_bytes=1 << 20, max_age=0.05, concurrency=1))
    pipe = _pipeline(tmp_path / "in", {"s": sink}, tmp_path)
    sink.on_send = lambda _batch: pipe.stop.set()  # stop once the first object is being sent
    cut = pipe.run()
    assert cut.stopped and not cut.drained
    assert 30 <= len(sink.stored) < 6 * 30


class _FailingSource:
    """A source whose listing fails at once with ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def work(self, stop: threading.Event) -> Iterator[Work]:
        raise self.error
        yield  # a generator, as sources are

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("error", "traceback"),
    [
        (
            ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "ListObjectsV2"),
            False,
        ),
        (ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce"}}, "ListObjectsV2"), False),
        (NoCredentialsError(), False),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:9"), False),
        (FetchError("reading s3://b/k failed after 10 bytes"), False),
        (PermissionError(13, "Permission denied"), False),
        (KeyError("Contents"), True),  # a bug: the traceback is what finds it
    ],
    ids=["denied", "slowdown", "no-credentials", "unreachable", "fetch", "os", "bug"],
)
def test_a_failing_source_is_one_line_unless_it_is_a_bug(
    tmp_path: Path, scripted: Any, caplog: pytest.LogCaptureFixture, error: Exception, traceback: bool
) -> None:
    """Denied, throttled, unreachable, no credentials: said in a line; a bug keeps its traceback."""
    metrics, stop = Metrics(), threading.Event()
    pipe = Pipeline(
        _FailingSource(error), dead_letters=FolderDeadLetters(tmp_path / "dead"), metrics=metrics, stop=stop
    )
    pipe.sinks["s"] = SinkRunner(
        "s", scripted(), dead_letters=pipe.dead_letters, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    with caplog.at_level(logging.ERROR, logger="trailrelay.pipeline"):
        result = pipe.run()
    assert result.fatal == f"source failed: {error}"
    (said,) = [r for r in caplog.records if r.getMessage().startswith("source failed")]
    assert (said.exc_info is not None) is traceback
    assert said.getMessage() == ("source failed" if traceback else f"source failed: {error}")


def _runner(sink: Any, tmp_path: Path, *, backoff_base: float = 0.5) -> SinkRunner:
    """A SinkRunner on its own (no pipeline): records are handed to it directly."""
    return SinkRunner(
        "s",
        sink,
        dead_letters=FolderDeadLetters(tmp_path / "d"),
        metrics=Metrics(),
        stop=threading.Event(),
        on_fatal=lambda *_: None,
        backoff_base=backoff_base,
    )


class _Token(msgspec.Struct, kw_only=True):
    """A sink config's secret, made directly: validation would refuse its newline."""

    token: Secret


def test_an_unexpected_error_quoting_a_secret_is_scrubbed_from_logs_and_dead_letters(
    tmp_path: Path, scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink's bug or an HTTP library's refusal may quote the secret (``Invalid header value
    b'Splunk TOKEN\\n'``): the record it failed on is dead-lettered, and neither the reason nor
    the log line holds the sink's secrets (``secret_values`` of its config)."""
    token = "SECRET-hec-token-0123"
    poisoned = str(SAMPLE_EVENTS[1]["eventID"])
    sink = scripted(BatchLimits(max_records=10, max_bytes=1 << 20, max_age=0.01, concurrency=1))

    def on_send(batch: Any) -> None:
        if any(r.event_id == poisoned for r in batch.records):
            raise ValueError(f"Invalid header value {('Splunk ' + token + chr(10)).encode()!r} ({token})")

    sink.on_send = on_send
    runner = SinkRunner(
        "s",
        sink,
        dead_letters=FolderDeadLetters(tmp_path / "d"),
        metrics=Metrics(),
        stop=threading.Event(),
        on_fatal=lambda *_: None,
        secrets=secret_values(_Token(token=Secret(token + "\n"))),  # as attach_sinks passes them
    )
    records = [Record.from_bytes(orjson.dumps(e), Origin("file", "x")) for e in SAMPLE_EVENTS[:3]]
    with caplog.at_level(logging.DEBUG):
        runner.put_many(records)
        runner.close()
    assert len(sink.stored) == 2 and poisoned not in sink.stored
    (entry,) = read_entries(tmp_path / "d")
    assert (
        entry["reason"] == "sink failed on this record: ValueError: Invalid header value b'Splunk ***' (***)"
    )
    assert "Invalid header value b'Splunk ***' (***)" in caplog.text
    assert "SECRET-hec" not in caplog.text


def test_a_codec_error_is_dead_lettered_without_the_character_it_quotes(
    tmp_path: Path, scripted: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """An HTTP library encoding a header with a token holding '\u20ac' says "'latin-1' codec
    can't encode character '\\u20ac' in position 16": scrubbing the whole token missed that
    character of it, and where it sits, in every dead letter and warning."""
    token = "0a1b2c3d-\u20ac-token"
    sink = scripted(BatchLimits(max_records=10, max_bytes=1 << 20, max_age=0.01, concurrency=1))

    def on_send(batch: Any) -> None:
        ("Splunk " + token).encode("latin-1")

    sink.on_send = on_send
    runner = SinkRunner(
        "s",
        sink,
        dead_letters=FolderDeadLetters(tmp_path / "d"),
        metrics=Metrics(),
        stop=threading.Event(),
        on_fatal=lambda *_: None,
        secrets=secret_values(_Token(token=Secret(token))),
    )
    with caplog.at_level(logging.DEBUG):
        runner.put_many([Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[0]), Origin("file", "x"))])
        runner.close()
    (entry,) = read_entries(tmp_path / "d")
    assert entry["reason"] == (
        "sink failed on this record: UnicodeEncodeError: 'latin-1' codec can't encode a character: "
        "ordinal not in range(256) (which one and where are not shown: it may be a secret's)"
    )
    for text in (entry["reason"], caplog.text):
        assert "\u20ac" not in text and "\\u20ac" not in text and "position" not in text


def _wait_stored(sink: Any, n: int, limit: float = 3.0) -> float:
    t0 = time.monotonic()
    while len(sink.stored) < n and time.monotonic() - t0 < limit:
        time.sleep(0.005)
    assert len(sink.stored) == n
    return time.monotonic() - t0


def test_high_risk_record_takes_the_fast_path(tmp_path: Path, scripted: Any) -> None:
    sink = scripted(BatchLimits(max_records=1000, max_bytes=1 << 20, max_age=60.0, concurrency=1))
    runner = _runner(sink, tmp_path)
    origin = Origin("file", "x")
    quiet = Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[1]), origin)
    runner.put(quiet)
    time.sleep(0.3)
    assert sink.stored == []  # a normal record waits for its batch to fill (max_age 60 s)
    from trailrelay.detection.evaluate import SigmaTagger

    loud = SigmaTagger()(Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[0]), origin))
    assert loud.tags
    runner.put(loud)
    took = _wait_stored(sink, 2)
    assert sink.stored == [SAMPLE_EVENTS[1]["eventID"], SAMPLE_EVENTS[0]["eventID"]]
    # urgent_delay is 0.05 s; the clock had planned to sleep a whole second (its longest nap)
    assert took < 0.6, f"the urgent batch left after {took:.2f}s"
    runner.close()


def test_a_new_partial_batch_wakes_the_idle_clock(tmp_path: Path, scripted: Any) -> None:
    """With nothing held, the clock naps a second; a record arriving must be sent after max_age, not then."""
    sink = scripted(BatchLimits(max_records=1000, max_bytes=1 << 20, max_age=0.1, concurrency=1))
    runner = _runner(sink, tmp_path)
    time.sleep(0.1)  # the clock is asleep, nothing due
    runner.put(Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[1]), Origin("file", "x")))
    took = _wait_stored(sink, 1)
    assert took < 0.6, f"a partial batch of max_age 0.1 s left after {took:.2f}s"
    runner.close()


def test_a_retry_wakes_the_clock_when_its_backoff_ends(tmp_path: Path, scripted: Any) -> None:
    sink = scripted(BatchLimits(max_records=1, max_bytes=1 << 20, max_age=60.0, concurrency=1))
    sink.retry_calls = 1
    runner = _runner(sink, tmp_path, backoff_base=0.01)
    time.sleep(0.1)
    runner.put(Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[1]), Origin("file", "x")))  # full: sent at once
    took = _wait_stored(sink, 1)
    assert sink.calls == 2
    assert took < 0.6, f"a retry due after <= 10 ms was sent after {took:.2f}s"
    runner.close()


def test_batches_stay_within_max_bytes_counting_the_sink_overhead(tmp_path: Path, scripted: Any) -> None:
    """A batch is cut before the record that would take it past ``max_bytes`` (its own bytes
    plus the sink's ``record_overhead``), so the sink can send each batch as one request."""
    overhead = 100
    sink = scripted(
        BatchLimits(max_records=1000, max_bytes=10_000, max_age=60.0, concurrency=1, record_overhead=overhead)
    )
    sizes: list[int] = []
    sink.on_send = lambda batch: sizes.append(sum(len(r.raw) + overhead for r in batch.records))
    runner = _runner(sink, tmp_path)
    origin = Origin("file", "x")
    records = [
        Record.from_bytes(orjson.dumps({**SAMPLE_EVENTS[1], "eventID": f"e{i}"}), origin) for i in range(200)
    ]
    for at in range(0, 200, 30):
        runner.put_many(records[at : at + 30])
    runner.close()
    assert len(sink.stored) == 200
    assert max(sizes) <= 10_000, sizes
    each = len(records[0].raw) + overhead
    assert all(s > 10_000 - each for s in sizes[:-1]), sizes  # full: the next record did not fit


def test_back_pressure_bounds_the_queue(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    """A slow sink stalls the readers instead of piling records up in memory."""
    _trail(tmp_path / "in", make_object, make_events, objects=20, per=100)
    sink = scripted(BatchLimits(max_records=10, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    peak = [0]
    pipe = _pipeline(tmp_path / "in", {"s": sink}, tmp_path)
    runner = pipe.sinks["s"]

    runner.capacity = 200  # records held by the sink at once, wherever they are

    def slow(_: Any) -> None:
        time.sleep(0.001)

    sink.on_send = slow
    pipe.run()
    assert len(sink.stored) == 2000
    # a reader may add one object's chunk on top of the cap, never more
    assert runner.peak_active <= runner.capacity + 100
    del peak


def test_a_files_source_whose_path_is_missing_is_a_config_error(tmp_path: Path) -> None:
    """Not a run that reads nothing and reports success (the API, as the CLI)."""
    from trailrelay.errors import ConfigError

    config = parse_config(
        {
            "source": {"type": "files", "path": "not-there"},
            "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
        },
        base_dir=tmp_path,
    )
    assert config.files_path() == tmp_path / "not-there"
    with pytest.raises(ConfigError, match="not-there does not exist"):
        build_pipeline(config)


def test_config_built_pipeline_writes_the_file_sink(
    tmp_path: Path, make_object: Any, make_events: Any
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=2, per=10)
    config = parse_config(
        {
            "source": {"type": "files", "path": str(tmp_path / "in")},
            "sinks": [{"type": "file", "path": str(tmp_path / "out.ndjson")}],
            "filter": {"rules": [{"name": "drop-data", "action": "drop", "category": ["Data"]}]},
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    result = built.pipeline.run()
    for s in built.sinks.values():
        s.close()
    lines = (tmp_path / "out.ndjson").read_bytes().splitlines()
    got = [orjson.loads(x)["eventID"] for x in lines]
    kept = [
        i
        for i, e in zip(ids, make_events(10, "o0") + make_events(10, "o1"), strict=True)
        if e["eventCategory"] != "Data"
    ]
    assert sorted(got) == sorted(kept)
    assert built.record_filter.dropped["drop-data"] == len(ids) - len(kept)
    assert result.metrics.snapshot()["records_filtered"] == len(ids) - len(kept)
    assert (tmp_path / ".trailrelay" / "state.sqlite").exists()


@pytest.mark.parametrize("signal_after", [1, 4])
def test_graceful_stop_hands_back_unfinished_work(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any, signal_after: int
) -> None:
    ids = _trail(tmp_path / "in", make_object, make_events, objects=10, per=20)
    ck = Checkpoints(tmp_path / "state.sqlite")
    sink = scripted(BatchLimits(max_records=20, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    pipe = _pipeline(tmp_path / "in", {"s": sink}, tmp_path, checkpoints=ck)
    pipe.drain_seconds = 0.0  # hand back at once whatever is not delivered yet

    def slow_then_stop(_: Any) -> None:
        time.sleep(0.05)
        if sink.calls >= signal_after:
            pipe.stop.set()

    sink.on_send = slow_then_stop
    result = pipe.run()
    assert result.stopped
    done = ck.count()
    assert done < 10
    assert result.metrics.snapshot()["units_released"] >= 1, (done, result.metrics.snapshot())
    resumed = scripted()
    _pipeline(tmp_path / "in", {"s": resumed}, tmp_path, checkpoints=ck).run()
    assert set(sink.stored) | set(resumed.stored) == set(ids)
    assert ck.count() == 10


def test_per_sink_filters_and_siem_default(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any
) -> None:
    """A SIEM sink keeps data events out by default; an archive gets everything; drops are counted."""
    from trailrelay.contract import SIEM_DEFAULT_FILTER, FilterConfig
    from trailrelay.transforms.filters import RecordFilter

    evs = make_events(20)
    make_object(tmp_path / "in" / "a.json.gz", evs)
    siem, archive = scripted(), scripted()
    pipe = _pipeline(tmp_path / "in", {"siem": siem, "archive": archive}, tmp_path)
    pipe.sinks["siem"].record_filter = RecordFilter(SIEM_DEFAULT_FILTER)
    pipe.sinks["archive"].record_filter = RecordFilter(FilterConfig())
    result = pipe.run()
    data = [e["eventID"] for e in evs if e["eventCategory"] == "Data"]
    assert data
    assert sorted(archive.stored) == sorted(e["eventID"] for e in evs)
    assert sorted(siem.stored) == sorted(e["eventID"] for e in evs if e["eventID"] not in data)
    snap = result.metrics.snapshot()
    assert snap["filtered_by_sink"] == {"siem": len(data)}
    assert pipe.sinks["siem"].record_filter.dropped == {"default: data events stay out of SIEMs": len(data)}
    assert snap["units_acknowledged"] == 1  # a record filtered for one sink is final for that sink


def test_sampling_never_drops_errors_or_tagged_records(make_events: Any) -> None:
    from trailrelay.detection.evaluate import SigmaTagger
    from trailrelay.transforms.filters import FilterConfig, FilterRule, RecordFilter

    rule = FilterRule(name="sample-all", action="sample", rate=0.0)
    flt = RecordFilter(FilterConfig(rules=[rule]))
    tagger = SigmaTagger()
    kept = []
    for e in make_events(50):
        rec = tagger(Record.from_bytes(orjson.dumps(e), Origin("file", "x")))
        if flt.keep(rec):
            kept.append(rec)
    assert kept
    assert all(r.tags or r.routing.error_code for r in kept)
    assert flt.dropped["sample-all"] == 50 - len(kept)


def test_object_hashes_kept_for_integrity_checks(tmp_path: Path, make_object: Any, make_events: Any) -> None:
    """With hash_objects, the checkpoint holds the SHA-256 CloudTrail's digest would list (uncompressed)."""
    import hashlib
    import sqlite3

    path = make_object(tmp_path / "in" / "a.json.gz", make_events(5))
    config = parse_config(
        {
            "source": {"type": "files", "path": str(tmp_path / "in")},
            "sinks": [{"type": "file", "path": str(tmp_path / "o.ndjson")}],
            "state": {"hash_objects": True},
        },
        base_dir=tmp_path,
    )
    built = build_pipeline(config)
    built.pipeline.run()
    assert built.checkpoints is not None
    built.checkpoints.close()
    rows = (
        sqlite3.connect(tmp_path / ".trailrelay" / "state.sqlite")
        .execute("SELECT sha256, records FROM objects")
        .fetchall()
    )
    assert rows == [(hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest(), 5)]


def test_urgent_unit_flushes_partial_batches(tmp_path: Path, scripted: Any, make_events: Any) -> None:
    """A unit someone waits on (a Firehose request) does not wait out the batch age."""
    from trailrelay.sources.base import ObjectRef, Work

    body = orjson.dumps({"Records": [e for e in make_events(3) if e["eventName"] != "StopLogging"]})
    acked = threading.Event()

    class OneRequest:
        def work(self, stop: threading.Event) -> Any:
            yield Work(
                [ObjectRef(Origin("firehose", "req-1"), lambda: body)], ack=lambda _: acked.set(), urgent=True
            )
            acked.wait(5)  # keep the source open, as a server would

        def close(self) -> None:
            pass

    sink = scripted(BatchLimits(max_records=1000, max_bytes=1 << 20, max_age=30.0, concurrency=1))
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "d")
    pipe = Pipeline(OneRequest(), dead_letters=dead, metrics=metrics, stop=stop, readers=1)
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    t0 = time.monotonic()
    pipe.run()
    assert acked.is_set()
    assert time.monotonic() - t0 < 5  # acknowledged long before the 30 s batch age


def test_many_tagged_records_share_requests_and_still_leave_fast(tmp_path: Path, scripted: Any) -> None:
    """The urgent lane coalesces: 10% tagged records do not become one request each."""
    from trailrelay.pipeline.tickets import Ticket
    from trailrelay.record import RiskTag
    from trailrelay.sources.base import Work

    sink = scripted(BatchLimits(max_records=500, max_bytes=8 << 20, max_age=60.0, concurrency=1))
    sent_at: list[float] = []
    sink.on_send = lambda batch: sent_at.append(time.monotonic())
    runner = _runner(sink, tmp_path)
    origin = Origin("file", "x")
    alert = RiskTag("rule-1", "CloudTrail logging stopped", "high", "T1562.008")
    records = []
    for i in range(2000):
        rec = Record.from_bytes(orjson.dumps(dict(SAMPLE_EVENTS[1], eventID=f"id-{i}")), origin)
        if i % 10 == 0:
            rec.add_tags([alert])
        records.append(rec)
    assert sum(1 for r in records if r.tags) == 200
    ticket = Ticket(Work([]), lambda *_: None)
    for r in records:
        r.ticket = ticket
    ticket.add(len(records))
    t0 = time.monotonic()
    for i in range(0, 2000, 100):  # a reader handing over chunks of 100, every 10 ms
        runner.put_many(records[i : i + 100])
        time.sleep(0.01)
    runner.close()
    assert sorted(sink.stored) == sorted(f"id-{i}" for i in range(2000))
    assert len(sent_at) <= 12, len(sent_at)  # not 200: tagged records share requests
    assert sent_at[0] - t0 < 0.2  # the first tagged record left within tens of milliseconds


def test_latency_sample_times_every_tagged_record_once_and_one_in_stride(
    tmp_path: Path, scripted: Any
) -> None:
    from trailrelay.pipeline.delivery import LATENCY_STRIDE
    from trailrelay.record import RiskTag

    sink = scripted(BatchLimits(max_records=1000, max_bytes=8 << 20, max_age=0.05, concurrency=1))
    runner = _runner(sink, tmp_path)
    origin = Origin("file", "x")
    records = [
        Record.from_bytes(orjson.dumps(dict(SAMPLE_EVENTS[1], eventID=f"id-{i}")), origin) for i in range(100)
    ]
    alert = RiskTag("rule-1", "CloudTrail logging stopped", "high")
    for i in (5, 2 * LATENCY_STRIDE):  # one between samples, one on a sampled position
        records[i].add_tags([alert])
    runner.put_many(records)
    runner.close()
    assert len(sink.stored) == 100
    assert runner.metrics._latency_seen == len(range(0, 100, LATENCY_STRIDE)) + 1
    assert "latency_seconds" in runner.metrics.snapshot()


def test_close_returns_as_the_last_send_ends(tmp_path: Path, scripted: Any) -> None:
    """The clock waits at close for records in flight; their end must wake it, not its next look."""
    sink = scripted(BatchLimits(max_records=1, max_bytes=1 << 20, max_age=60.0, concurrency=1))
    sink.on_send = lambda _batch: time.sleep(0.2)
    runner = _runner(sink, tmp_path)
    time.sleep(0.1)
    runner.put(Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[1]), Origin("file", "x")))  # in flight
    t0 = time.monotonic()
    runner.close()
    took = time.monotonic() - t0
    assert len(sink.stored) == 1
    assert took < 0.6, f"close took {took:.2f}s for a 0.2 s send"


class _ChunkRecorder:
    """A transform that keeps every record and notes how many it was given at a time."""

    def __init__(self, chunk_records: int = 0) -> None:
        self.chunk_records = chunk_records
        self.calls: list[int] = []

    def __call__(self, record: Record) -> Record:
        return record

    def many(self, records: list[Record]) -> list[Record]:
        self.calls.append(len(records))
        return records


@pytest.mark.parametrize("wanted", [0, 2048])
def test_a_transform_that_asks_for_bigger_chunks_gets_a_whole_object_at_once(
    tmp_path: Path, scripted: Any, make_object: Any, make_events: Any, wanted: int
) -> None:
    """A forked worker's tagger (one supervisor round trip per chunk) is given whole objects."""
    ids = _trail(tmp_path / "in", make_object, make_events, objects=1, per=1500)
    sink = scripted()
    pipe = _pipeline(tmp_path / "in", {"s": sink}, tmp_path)
    recorder = _ChunkRecorder(wanted)
    pipe.transforms = [recorder]
    assert pipe.run().ok
    assert sum(recorder.calls) == 1500
    if wanted:
        assert recorder.calls == [1500]
    else:  # cut into chunks of at least CHUNK records (whole cuts of the stream)
        assert len(recorder.calls) > 1 and min(recorder.calls[:-1]) >= 512
    assert Counter(sink.stored) == Counter(ids)


def test_a_tagger_asks_for_whole_objects_only_while_its_correlations_are_remote() -> None:
    from trailrelay.detection.evaluate import REMOTE_CHUNK, SigmaTagger

    tagger = SigmaTagger()
    assert tagger.chunk_records == 0
    tagger.remote = lambda seen: [False] * len(seen)
    assert tagger.chunk_records == REMOTE_CHUNK >= 2000  # CloudTrail writes up to ~2,000 records an object
