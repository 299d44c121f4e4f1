"""Hostile input: every parser either yields records/problems or raises its documented error.

Property-based (hypothesis) over the record parser, notification parser, decompression and
config loading, plus a malformed-input corpus driven through the whole pipeline: nothing
crashes, nothing hangs, every bad item is dead-lettered with its reason.
"""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailrelay.config import parse_config
from trailrelay.errors import ConfigError, InputError
from trailrelay.pipeline.deadletter import FolderDeadLetters, read_entries
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.runner import Pipeline
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.files import FileSource
from trailrelay.sources.notifications import parse_notification
from trailrelay.sources.parse import NotALogFile, Problem, iter_records
from trailrelay.testing import SAMPLE_EVENTS

ORIGIN = Origin("file", "hostile://input")
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)
ROUTING_KEYS = [
    "eventTime",
    "eventSource",
    "eventName",
    "eventID",
    "eventCategory",
    "managementEvent",
    "readOnly",
    "errorCode",
    "userIdentity",
    "recipientAccountId",
    "awsRegion",
    "sourceIPAddress",
    "eventType",
    "@timestamp",
]


def _consume(data: bytes) -> list[Record | Problem]:
    try:
        return list(iter_records(data, ORIGIN))
    except (InputError, NotALogFile):
        return []


@FAST
@given(st.binary(max_size=2048))
def test_parser_on_random_bytes(data: bytes) -> None:
    for item in _consume(data):
        assert isinstance(item, (Record, Problem))


@FAST
@given(json_values)
def test_parser_on_random_json(value: Any) -> None:
    for shape in (
        value,
        {"Records": value},
        [value],
        {"detail-type": "AWS API Call via CloudTrail", "detail": value},
    ):
        for item in _consume(json.dumps(shape).encode()):
            assert isinstance(item, (Record, Problem))
            if isinstance(item, Record):  # a record was accepted only with an id or a name
                assert item.routing.event_id is not None or item.routing.event_name is not None


@FAST
@given(st.dictionaries(st.sampled_from(ROUTING_KEYS), json_values, min_size=1))
def test_wrong_types_in_every_routing_field(fields: dict[str, Any]) -> None:
    fields.setdefault("eventID", "x")
    (item,) = _consume(json.dumps({"Records": [fields]}).encode())
    assert isinstance(item, (Record, Problem))
    if isinstance(item, Record):
        r = item.routing
        assert r.category in {"Management", "Data", "Insight", "NetworkActivity"} or r.category
        assert r.read_only in (True, False, None)
        assert r.event_time is None or r.event_time.tzinfo is not None


@FAST
@given(st.binary(max_size=512) | json_values.map(lambda v: json.dumps(v).encode()))
def test_notification_parser_only_raises_input_error(body: bytes) -> None:
    try:
        notices = parse_notification(body)
    except InputError:
        return
    assert all(n.bucket is not None and isinstance(n.key, str) for n in notices)


@FAST
@given(st.binary(max_size=1024))
def test_decompress_only_raises_input_error(data: bytes) -> None:
    for candidate in (data, b"\x1f\x8b" + data, gzip.compress(data)[: max(2, len(data) // 2)]):
        try:
            out = decompress(candidate, limit=1 << 16)
        except InputError:
            continue
        assert len(out) <= 1 << 16


@FAST
@given(
    st.dictionaries(
        st.sampled_from(["source", "sinks", "filter", "state", "pipeline", "dead_letter", "x"]),
        json_values,
        max_size=5,
    )
)
def test_config_loading_only_raises_config_error(raw: dict[str, Any]) -> None:
    try:
        parse_config(raw)
    except ConfigError:
        pass


def _hostile_files(root: Path) -> dict[str, str]:
    """A malformed-input corpus; returns file name -> expected reason fragment."""
    root.mkdir(parents=True)
    good = orjson.dumps(SAMPLE_EVENTS[0])
    whole = gzip.compress(orjson.dumps({"Records": SAMPLE_EVENTS}))
    files = {
        "truncated.json.gz": (whole[: len(whole) // 2], "truncated gzip"),
        "corrupt.json.gz": (whole[:10] + b"\x00" * 40 + whole[50:], "gzip"),
        "bomb.json.gz": (gzip.compress(b" " * (8 << 20), 9), "limit"),
        "deep.json": (b'{"Records":[' + b"[" * 5000 + b"]" * 5000 + b"]}", "nested too deeply"),
        "deep-record.json": (
            b'{"Records":[{"eventID":"d","eventName":"n","x":' + b"[" * 5000 + b"]" * 5000 + b"}]}",
            "nested too deeply",
        ),
        "huge-string.json": (
            b'{"Records":[{"eventID":"h","eventName":"n","x":"' + b"a" * (2 << 20) + b'"}]}',
            None,
        ),
        "bad-utf8.json": (
            b'{"Records":[' + good + b',{"eventID":"u","eventName":"n","userAgent":"\xff\xfe"}]}',
            "invalid UTF-8",
        ),
        "duplicate-keys.json": (b'{"Records":[{"eventID":"a","eventID":"b","eventName":"n"}]}', None),
        "not-cloudtrail.json": (b'{"kind": "something else", "items": [1, 2, 3]}', "not a CloudTrail record"),
        "array-of-numbers.json": (b"[1, 2, 3]", "not an object"),
    }
    for name, (data, _) in files.items():
        (root / name).write_bytes(data)
    return {name: reason for name, (_, reason) in files.items() if reason}


def test_malformed_corpus_through_the_pipeline(tmp_path: Path, scripted: Any) -> None:
    expected = _hostile_files(tmp_path / "in")
    metrics, stop = Metrics(), threading.Event()
    dead = FolderDeadLetters(tmp_path / "dead")
    sink = scripted()
    pipe = Pipeline(
        FileSource(tmp_path / "in"), dead_letters=dead, metrics=metrics, stop=stop, max_object_bytes=4 << 20
    )
    pipe.sinks["s"] = SinkRunner(
        "s", sink, dead_letters=dead, metrics=metrics, stop=stop, on_fatal=pipe.on_fatal
    )
    result = pipe.run()
    assert result.ok
    entries = list(read_entries(tmp_path / "dead"))
    by_file: dict[str, list[str]] = {}
    for e in entries:
        by_file.setdefault(Path(e["origin"]["location"]).name, []).append(e["reason"])
    for name, fragment in expected.items():
        assert any(fragment in r for r in by_file.get(name, [])), (name, by_file.get(name))
    # bad-utf8's good record, the one record complete before truncated.json.gz breaks (within its
    # first 4 KiB: it used to be lost with the break), huge, and the last duplicate key wins
    assert sorted(sink.stored) == sorted([SAMPLE_EVENTS[0]["eventID"], SAMPLE_EVENTS[0]["eventID"], "h", "b"])
    assert result.metrics.snapshot()["units_acknowledged"] == len(list((tmp_path / "in").iterdir()))


@pytest.mark.parametrize("depth", [900, 5000])
def test_deep_nesting_is_a_problem_not_a_crash(depth: int) -> None:
    data = b'{"Records":[{"eventID":"d","eventName":"n","x":' + b"[" * depth + b"]" * depth + b"}]}"
    (item,) = _consume(data) or [None]
    if depth > 900:
        assert isinstance(item, Problem) or item is None
    else:
        assert isinstance(item, (Record, Problem))
