"""Routing fields: decoded cheaply and normalized across event versions."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pytest

from trailrelay.helpers import text_value
from trailrelay.record import Origin, Record, Routing, decode_routing
from trailrelay.sources.stream import read_stream
from trailrelay.testing import SAMPLE_EVENTS, load_records, sample_records

ORIGIN = Origin("file", "x")


def _routing(**fields: object) -> object:
    base = {"eventID": "e", "eventName": "N", "eventSource": "s"}
    return decode_routing(orjson.dumps({**base, **fields}))


@pytest.mark.parametrize(
    ("fields", "category"),
    [
        ({"eventCategory": "Management"}, "Management"),
        ({"eventCategory": "Data"}, "Data"),
        ({"eventCategory": "NetworkActivity"}, "NetworkActivity"),
        ({"eventCategory": "insight"}, "Insight"),
        ({"eventType": "AwsCloudTrailInsight"}, "Insight"),
        ({"managementEvent": False}, "Data"),
        ({"managementEvent": True}, "Management"),
        ({"eventSource": "s3.amazonaws.com", "eventName": "GetObject"}, "Data"),
        ({"eventSource": "s3.amazonaws.com", "eventName": "CreateBucket"}, "Management"),
        ({}, "Management"),
    ],
)
def test_category_across_versions(fields: dict[str, object], category: str) -> None:
    assert _routing(**fields).category == category  # type: ignore[attr-defined]


def test_read_only_strings_become_bools() -> None:
    assert _routing(readOnly="true").read_only is True  # type: ignore[attr-defined]
    assert _routing(readOnly="FALSE").read_only is False  # type: ignore[attr-defined]
    assert _routing(readOnly=False).read_only is False  # type: ignore[attr-defined]
    assert _routing(readOnly="maybe").read_only is None  # type: ignore[attr-defined]


def test_event_time_is_utc() -> None:
    r = _routing(eventTime="2026-03-02T12:00:00+02:00")
    assert r.event_time == dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)  # type: ignore[attr-defined]
    assert _routing(eventTime="not a time").event_time is None  # type: ignore[attr-defined]


def test_service_event_without_identity_type() -> None:
    rec = Record.from_bytes(orjson.dumps(SAMPLE_EVENTS[2]), ORIGIN)
    assert rec.routing.user_type == "AWSService"
    assert rec.routing.user_identity is not None
    assert rec.routing.user_identity.invoked_by == "secretsmanager.amazonaws.com"


def test_wrong_types_fall_back_leniently() -> None:
    r = _routing(eventTime=12, awsRegion=["x"], errorCode=5, userIdentity="root", sourceIPAddress={"a": 1})
    assert r.event_time is None  # type: ignore[attr-defined]
    assert r.aws_region is None  # type: ignore[attr-defined]
    assert r.error_code == "5"  # type: ignore[attr-defined]
    assert r.user_identity is None  # type: ignore[attr-defined]
    assert r.source_ip is None  # type: ignore[attr-defined]


def test_not_json_raises() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        decode_routing(b"{oops")
    with pytest.raises(ValueError, match="not an object"):
        decode_routing(b"[1]")


def test_line_and_replace() -> None:
    compact, _, _, pretty = sample_records(4)[:4]
    assert compact.line() is compact.raw
    assert b"\n" in pretty.raw
    assert b"\n" not in pretty.line()
    assert orjson.loads(pretty.line()) == orjson.loads(pretty.raw)
    doc = dict(compact.document())
    doc["sourceIPAddress"] = "pseudonym"
    compact.replace(doc)
    assert compact.modified
    assert orjson.loads(compact.raw)["sourceIPAddress"] == "pseudonym"


def test_line_of_a_record_on_several_lines_keeps_every_value_as_written() -> None:
    """Only the whitespace between tokens goes: parsing and re-encoding turned an integer over
    64 bits into a float (1.2345678901234568e+29) and refused 1e400 (a dead letter)."""
    raw = (
        b'{\n  "eventID" : "big-1",\r\n  "requestParameters": {\n    "n": 123456789012345678901234567890,\n'
        b'    "inf": 1e400, "f": 1.50, "e": 1E5,\n    "s": "a \\" b\\n  c\\\\", "u": "caf\\u00e9 \xe2\x9c\x93"\n'
        b"  },\n\t"
        b'"list": [ 1, [ ], { } ]\n}\n'
    )
    line = Record.from_bytes(raw, ORIGIN).line()
    assert line == (
        b'{"eventID":"big-1","requestParameters":{"n":123456789012345678901234567890,'
        b'"inf":1e400,"f":1.50,"e":1E5,"s":"a \\" b\\n  c\\\\","u":"caf\\u00e9 \xe2\x9c\x93"},'
        b'"list":[1,[],{}]}'
    )


def test_epoch_has_milliseconds() -> None:
    r = Record.from_bytes(
        orjson.dumps({"eventID": "a", "eventName": "b", "eventTime": "2026-03-02T10:15:02.123Z"}), ORIGIN
    )
    assert r.epoch == pytest.approx(1772446502.123)


def test_rebuilt_events_are_held_at_their_own_size() -> None:
    """orjson's output keeps its ~8 KB working buffer; a record's raw bytes must not."""
    import tracemalloc

    records = sample_records(200, pretty_every=0)
    kept = [r.raw for r in records]  # so freeing the old bytes cannot hide what the new ones hold
    docs = [dict(r.document(), eventName="Changed") for r in records]
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for record, doc in zip(records, docs, strict=True):
            record.replace(doc)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    size = sum(len(r.raw) for r in records)
    assert len(kept) == 200 and all(r.modified for r in records)
    assert grown < 2 * size, f"{grown / 200:.0f} bytes held per {size / 200:.0f}-byte event"


def test_records_compare_by_identity_and_keep_their_constructor() -> None:
    """A Record is built as ``Record(raw, routing, origin, index, tags)``; two records with the
    same bytes are still two records (sets and ``in`` of the pipeline count each one)."""
    raw = b'{"eventName": "x", "eventID": "1"}'
    origin = Origin("file", "x")
    a = Record(raw, decode_routing(raw), origin, 3)
    b = Record(raw, decode_routing(raw), origin, 3)
    assert a != b and [a, b].count(a) == 1 and len({a, a, b}) == 2
    assert (a.index, a.tags, a.modified, a.ticket) == (3, (), False, None)
    with pytest.raises(AttributeError):
        a.unknown = 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(("pretty_every", "with_cr"), [(0, False), (4, False), (0, True)])
def test_file_sink_writes_one_line_per_record_whatever_the_source_bytes(
    tmp_path: Path, pretty_every: int, with_cr: bool
) -> None:
    """The file sink writes each record's ``line()``: the source's own bytes when they are on
    one line, the record re-dumped on one line when they span several (LF or a lone CR)."""
    from trailrelay.contract import Batch
    from trailrelay.sinks.file import FileConfig, FileSink

    records = sample_records(12, pretty_every=pretty_every)
    cr = Record.from_bytes(b'{"eventID": "cr-1",\r"eventName": "x"}', ORIGIN)
    batch = [*records, cr] if with_cr else records
    sink = FileSink(FileConfig(path=tmp_path / "out.ndjson"))
    sink.open()
    sink.send(Batch(batch, 1))
    sink.close()
    written = (tmp_path / "out.ndjson").read_bytes()
    assert b"\r" not in written  # universal-newline readers would see a lone CR as a line break
    lines = written.split(b"\n")
    assert lines[-1] == b"" and len(lines) == len(batch) + 1
    assert [orjson.loads(x)["eventID"] for x in lines[:-1]] == [r.event_id for r in batch]
    if pretty_every == 0 and not with_cr:
        assert lines[:-1] == [r.raw for r in batch]  # the source's own bytes, unchanged


def _expected_identity(doc: dict[str, object]) -> tuple[str | None, ...] | None:
    """``userIdentity``'s routing parts read from the parsed document (orjson, not msgspec)."""
    ident = doc.get("userIdentity")
    if not isinstance(ident, dict):
        return None
    keys = ("type", "arn", "accountId", "principalId", "userName", "invokedBy")
    return tuple(text_value(ident.get(k)) for k in keys)


def _identity_fields(routing: Routing) -> tuple[str | None, ...] | None:
    ident = routing.user_identity
    if ident is None:
        return None
    return (ident.type, ident.arn, ident.account_id, ident.principal_id, ident.user_name, ident.invoked_by)


@pytest.mark.parametrize(
    ("identity", "expected"),
    [
        (
            {"type": "Root", "arn": "arn:aws:iam::1:root"},
            ("Root", "arn:aws:iam::1:root", None, None, None, None),
        ),
        ({}, (None,) * 6),
        (None, None),
        ("root", None),
        (["Root"], None),
        (
            {"type": True, "arn": 5, "accountId": {"x": 1}, "principalId": [1], "userName": 1.5},
            ("true", "5", None, None, "1.5", None),
        ),
    ],
)
def test_user_identity_is_read_when_asked_for(
    identity: object, expected: tuple[str | None, ...] | None
) -> None:
    """Decoded on first use from the record's own JSON, with the whole decode's lenient reading."""
    r = _routing(userIdentity=identity)
    assert _identity_fields(r) == expected  # type: ignore[arg-type]
    assert _identity_fields(r) == expected  # type: ignore[arg-type]  # the second ask: from the cache
    assert _identity_fields(_routing()) is None  # type: ignore[arg-type]  # absent


def test_user_identity_of_a_record_on_the_lenient_path() -> None:
    """A record whose other fields force the lenient decode keeps its identity, exactly."""
    r = _routing(eventTime=12, userIdentity={"type": "IAMUser", "userName": "alice"})
    assert r.event_time is None  # type: ignore[attr-defined]
    assert _identity_fields(r) == ("IAMUser", None, None, None, "alice", None)  # type: ignore[arg-type]


def test_identities_alternating_and_oversized_each_get_their_own() -> None:
    """The last-asked and by-text caches never hand one record another's identity."""
    a = _routing(userIdentity={"type": "IAMUser", "userName": "a"})
    b = _routing(userIdentity={"type": "IAMUser", "userName": "b"})
    big = _routing(userIdentity={"type": "IAMUser", "userName": "c" * 9000})  # not cached by text
    for _ in range(3):
        for r, name in ((a, "a"), (b, "b"), (big, "c" * 9000), (a, "a")):
            assert r.user_identity is not None  # type: ignore[attr-defined]
            assert r.user_identity.user_name == name  # type: ignore[attr-defined]
    shared = a.user_identity  # type: ignore[attr-defined]
    assert _routing(userIdentity={"type": "IAMUser", "userName": "a"}).user_identity is shared  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        shared.user_name = "mallory"  # type: ignore[misc]  # shared between records: frozen


def test_user_identity_matches_the_document_on_every_fixture_and_corpus_record(corpus: Path) -> None:
    """Read lazily, from one-call cuts and record by record, it is what the parsed document says."""
    root = corpus / "cloudtrail"
    by_record = load_records(root)
    by_cut: list[Record] = []
    for f in sorted([*root.rglob("*.json"), *root.rglob("*.ndjson")]):
        with f.open("rb") as raw:
            by_cut += [r for r in read_stream(raw, Origin("file", str(f))) if isinstance(r, Record)]
    assert len(by_record) > 1000
    assert len(by_cut) == len(by_record)
    for rec in [*by_record, *by_cut, *sample_records()]:
        assert _identity_fields(rec.routing) == _expected_identity(rec.document()), rec
