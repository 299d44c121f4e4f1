"""Splitting objects into records: every shape CloudTrail data arrives in, and bad input."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import orjson
import pytest

from trailrelay.errors import InputError
from trailrelay.record import Origin, Record
from trailrelay.sources.decompress import decompress
from trailrelay.sources.files import list_files
from trailrelay.sources.parse import NotALogFile, Problem, iter_records
from trailrelay.testing import SAMPLE_EVENTS

ORIGIN = Origin("file", "test://object")


def _records(data: bytes) -> list[Record | Problem]:
    return list(iter_records(data, ORIGIN))


def _ids(items: list[Record | Problem]) -> list[str | None]:
    return [i.event_id for i in items if isinstance(i, Record)]


def test_records_envelope_keeps_exact_bytes() -> None:
    parts = [orjson.dumps(e) for e in SAMPLE_EVENTS]
    data = b'{"Records":[' + b",".join(parts) + b"]}"
    items = _records(data)
    assert [i.raw for i in items if isinstance(i, Record)] == parts
    assert [i.index for i in items if isinstance(i, Record)] == list(range(len(parts)))


def test_top_level_array_pretty_printed() -> None:
    data = orjson.dumps(SAMPLE_EVENTS, option=orjson.OPT_INDENT_2)
    assert _ids(_records(data)) == [e["eventID"] for e in SAMPLE_EVENTS]


def test_ndjson_with_one_bad_line_goes_on() -> None:
    lines = [orjson.dumps(e) for e in SAMPLE_EVENTS[:3]]
    data = lines[0] + b"\n" + lines[1] + b"\n{not json\n\n" + lines[2] + b"\n"
    items = _records(data)
    assert _ids(items) == [e["eventID"] for e in SAMPLE_EVENTS[:3]]
    problems = [i for i in items if isinstance(i, Problem)]
    assert len(problems) == 1
    assert "line 3" in problems[0].reason
    assert problems[0].raw == b"{not json"


def test_single_pretty_record_and_bom() -> None:
    data = b"\xef\xbb\xbf\n" + orjson.dumps(SAMPLE_EVENTS[0], option=orjson.OPT_INDENT_2)
    (rec,) = _records(data)
    assert isinstance(rec, Record)
    assert rec.event_id == SAMPLE_EVENTS[0]["eventID"]
    assert b"\n" not in rec.line()
    assert orjson.loads(rec.line()) == SAMPLE_EVENTS[0]


def test_eventbridge_envelope_unwrapped_byte_for_byte() -> None:
    detail = orjson.dumps(SAMPLE_EVENTS[0])
    env = (
        b'{"version":"0","id":"1","detail-type":"AWS API Call via CloudTrail","source":"aws.cloudtrail",'
        b'"detail":' + detail + b"}"
    )
    (rec,) = _records(env)
    assert isinstance(rec, Record)
    assert rec.raw == detail
    items = _records(b"[" + env + b"," + env + b"]")
    assert [i.raw for i in items if isinstance(i, Record)] == [detail, detail]


def test_eventbridge_of_other_type_is_a_problem() -> None:
    env = b'{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"}}}'
    (item,) = _records(env)
    assert isinstance(item, Problem)
    assert "Object Created" in item.reason


def test_lookup_events_output() -> None:
    inner = orjson.dumps(SAMPLE_EVENTS[1]).decode()
    data = orjson.dumps({"Events": [{"EventId": "x", "CloudTrailEvent": inner}, SAMPLE_EVENTS[2]]})
    assert _ids(_records(data)) == [SAMPLE_EVENTS[1]["eventID"], SAMPLE_EVENTS[2]["eventID"]]


def test_digest_is_skipped_not_dead_lettered() -> None:
    digest = {"awsAccountId": "1", "digestStartTime": "2026-01-01T00:00:00Z", "logFiles": []}
    with pytest.raises(NotALogFile) as info:
        _records(orjson.dumps(digest))
    assert info.value.kind == "digest"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"   \n", "empty"),
        (b'{"Records": [{"eventID": "a"}, ', "malformed JSON"),
        (b"<html>503</html>", "not JSON"),
        (b'{"Records": "nope"}', "not a CloudTrail log"),
        (b"[1, 2", "malformed JSON array"),
    ],
)
def test_whole_object_failures(data: bytes, reason: str) -> None:
    with pytest.raises(InputError, match=reason):
        _records(data)


@pytest.mark.parametrize(
    ("item", "reason"),
    [
        (b"42", "not an object"),
        (b'"text"', "not an object"),
        (b'{"hello": "world"}', "no eventName or eventID"),
        (b'{"eventID": "a", "eventName": "X", "userIdentity": {"type": ["odd"]}, "readOnly": 3}', None),
    ],
)
def test_record_level_failures_do_not_stop_the_object(item: bytes, reason: str | None) -> None:
    good = orjson.dumps(SAMPLE_EVENTS[0])
    items = _records(b'{"Records":[' + good + b"," + item + b"," + good + b"]}")
    assert len(items) == 3
    assert isinstance(items[0], Record) and isinstance(items[2], Record)
    if reason is None:  # wrong types in routing fields: read leniently, not dropped
        assert isinstance(items[1], Record)
        assert items[1].routing.user_type is None
        assert items[1].routing.read_only is None
    else:
        assert isinstance(items[1], Problem)
        assert reason in items[1].reason
        assert items[1].raw == item
        assert items[1].index == 1


def test_real_corpus_reads_cleanly(corpus: Path) -> None:
    """Every file of the shared corpus reads with no problem; counts match PROVENANCE.md."""
    per_folder: Counter[str] = Counter()
    files, _ = list_files(corpus / "cloudtrail")
    for f in files:
        for item in iter_records(decompress(f.read_bytes()), Origin("file", str(f))):
            assert isinstance(item, Record), f"{f.name}: {item}"
            assert item.routing.event_time is not None
            per_folder[f.parent.name] += 1
    assert per_folder["invictus-ir-aws_dataset"] == 2900
    assert per_folder["datadog-stratus-red-team"] == 310
    assert per_folder["otrf-security-datasets"] == 103
    assert per_folder["cloud-custodian-eventbridge"] == 10
    assert per_folder["splunk-security-content"] == 2
    assert per_folder["aws-docs-examples"] == 7


def test_real_corpus_gzip_roundtrip(corpus: Path) -> None:
    """A real object gzip-compressed (as S3 holds it) yields the same record bytes."""
    f = next((corpus / "cloudtrail" / "invictus-ir-aws_dataset").glob("*.json"))
    plain = [i.raw for i in iter_records(f.read_bytes(), ORIGIN) if isinstance(i, Record)]
    zipped = [
        i.raw
        for i in iter_records(decompress(gzip.compress(f.read_bytes())), ORIGIN)
        if isinstance(i, Record)
    ]
    assert plain == zipped
    assert plain
