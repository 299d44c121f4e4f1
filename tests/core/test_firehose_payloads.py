"""Unwrapping Firehose record data and CloudWatch Logs payloads, and grouping them for the parser."""

from __future__ import annotations

import base64
import gzip

import orjson
import pytest

from trailrelay.errors import InputError
from trailrelay.record import Origin, Record
from trailrelay.sources.parse import NotALogFile, Problem, iter_records
from trailrelay.sources.payloads import (
    LogsBatch,
    PayloadCollector,
    decode_awslogs,
    decode_base64,
    group_documents,
    logs_batch,
    unwrap,
)
from trailrelay.testing import SAMPLE_EVENTS

ORIGIN = Origin("firehose", "firehose://s/r")


def _logs(messages: list[str], kind: str = "DATA_MESSAGE") -> bytes:
    return orjson.dumps(
        {
            "messageType": kind,
            "owner": "111122223333",
            "logGroup": "/aws/cloudtrail/org",
            "logStream": "111122223333_CloudTrail_eu-west-1",
            "subscriptionFilters": ["all"],
            "logEvents": [{"id": str(i), "timestamp": i, "message": m} for i, m in enumerate(messages)],
        }
    )


def _parse(objects: list[bytes]) -> list[Record | Problem | InputError]:
    """What the pipeline gets from each object: records, bad records, or a whole-object error."""
    out: list[Record | Problem | InputError] = []
    for obj in objects:
        try:
            out.extend(iter_records(obj, ORIGIN))
        except InputError as exc:
            out.append(exc)
    return out


def test_base64_is_strict() -> None:
    assert decode_base64("aGVsbG8=") == b"hello"
    for bad in ("aGVsbG8", "%%%", "aGV sbG8="):
        with pytest.raises(InputError, match="base64"):
            decode_base64(bad)


def test_cloudwatch_payloads_are_recognised_and_others_are_not() -> None:
    batch = logs_batch(_logs([orjson.dumps(SAMPLE_EVENTS[0]).decode()]))
    assert isinstance(batch, LogsBatch)
    assert batch.location == "cloudwatch://111122223333/aws/cloudtrail/org/111122223333_CloudTrail_eu-west-1"
    assert batch.messages == [orjson.dumps(SAMPLE_EVENTS[0])]
    assert not batch.control
    assert logs_batch(_logs([], "CONTROL_MESSAGE")).control  # type: ignore[union-attr]
    assert logs_batch(orjson.dumps(SAMPLE_EVENTS[0])) is None
    # a CloudTrail record that merely mentions the keys is not mistaken for a payload
    sneaky = {**SAMPLE_EVENTS[1], "requestParameters": {"note": '"logEvents" and "messageType"'}}
    assert logs_batch(orjson.dumps(sneaky)) is None
    assert isinstance(unwrap(gzip.compress(_logs(["{}"]))), LogsBatch)
    assert unwrap(gzip.compress(b'{"a": 1}')) == b'{"a": 1}'


def test_awslogs_data_errors_are_input_errors() -> None:
    good = base64.b64encode(gzip.compress(_logs(["{}"]))).decode()
    assert decode_awslogs(good).messages == [b"{}"]
    for bad, says in [
        ("%%%", "base64"),
        (base64.b64encode(b"\x1f\x8b\x08\x00broken").decode(), "gzip"),
        (base64.b64encode(gzip.compress(b'{"a": 1}')).decode(), "not a CloudWatch Logs"),
    ]:
        with pytest.raises(InputError, match=says):
            decode_awslogs(bad)


def test_grouping_keeps_every_document_and_isolates_bad_ones() -> None:
    records = [orjson.dumps({**SAMPLE_EVENTS[i % 5], "eventID": f"g{i}"}) for i in range(6)]
    pretty = orjson.dumps({**SAMPLE_EVENTS[1], "eventID": "pretty"}, option=orjson.OPT_INDENT_2)
    ndjson = records[0] + b"\n" + records[1]
    docs = [*records, b"{broken", pretty, ndjson, b"[1, 2]", records[2] + b"\n"]
    objects = group_documents(docs)
    # the six, the pretty one and the newline-terminated one share one array; the rest go alone
    assert objects[0].startswith(b"[") and len(objects) == 4
    items = _parse(objects)
    ids = [str(i.event_id) for i in items if isinstance(i, Record)]
    assert sorted(ids) == sorted([f"g{i}" for i in range(6)] + ["g2", "pretty", "g0", "g1"])
    assert len([i for i in items if isinstance(i, Problem)]) == 2  # the two elements of [1, 2]
    assert len([i for i in items if isinstance(i, InputError)]) == 1  # "{broken", dead-lettered whole


def test_eventbridge_envelopes_in_a_group_become_their_records() -> None:
    env = {
        "version": "0",
        "id": "1",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.iam",
        "detail": SAMPLE_EVENTS[0],
    }
    other = {
        "version": "0",
        "id": "2",
        "detail-type": "EC2 Instance State-change Notification",
        "detail": {"state": "x"},
    }
    items = _parse(group_documents([orjson.dumps(env), orjson.dumps(other)]))
    assert isinstance(items[0], Record) and items[0].event_id == SAMPLE_EVENTS[0]["eventID"]
    assert isinstance(items[1], Problem) and "not a CloudTrail record" in items[1].reason


def test_a_whole_cloudtrail_file_in_one_record_gives_its_records() -> None:
    """A producer that puts a trail's files into Firehose: each file is read as a file is."""
    events = [{**SAMPLE_EVENTS[i], "eventID": f"f{i}"} for i in range(3)]
    trail_file = orjson.dumps({"Records": events})
    digest = orjson.dumps({"digestStartTime": "2026-03-02T00:00:00Z", "logFiles": []})
    single = orjson.dumps({**SAMPLE_EVENTS[3], "eventID": "single"})
    c = PayloadCollector(ORIGIN)
    c.add_bytes(gzip.compress(trail_file), "r#0")
    c.add_base64(base64.b64encode(single).decode(), "r#1")
    c.add_bytes(digest, "r#2")
    ids: list[str | None] = []
    skipped = []
    for ref in c.refs():
        try:
            ids += [i.event_id for i in iter_records(ref.fetch(), ORIGIN) if isinstance(i, Record)]
        except NotALogFile as skip:
            skipped.append(skip.kind)
    assert sorted(map(str, ids)) == ["f0", "f1", "f2", "single"]
    assert skipped == ["digest"]


def test_collector_sorts_records_payloads_and_junk() -> None:
    c = PayloadCollector(ORIGIN)
    c.add_base64(base64.b64encode(orjson.dumps(SAMPLE_EVENTS[1])).decode(), "r#0")
    c.add_base64("***", "r#1")
    c.add_bytes(gzip.compress(_logs([orjson.dumps(SAMPLE_EVENTS[2]).decode()])), "r#2")
    c.add_bytes(gzip.compress(_logs([], "CONTROL_MESSAGE")), "r#3")
    c.add_bytes(b"  \n", "r#4")
    c.add_bytes(b"\x1f\x8b\x08\x00corrupt", "r#5")
    refs = c.refs()
    assert [r.origin.kind for r in refs] == ["firehose", "cloudwatch", "firehose"]
    assert refs[2].origin.location == "r#5"  # the pipeline reads it again and dead-letters it
    assert all(r.held for r in refs)  # no copy elsewhere: a problem keeps their bytes
    assert [reason for reason, _ in c.skipped] == ["cloudwatch-control-message", "empty-record"]
    assert len(c.invalid) == 1 and "r#1" in c.invalid[0][0] and c.invalid[0][1] == b"***"


def test_a_budget_bounds_what_the_records_unpack_to_together() -> None:
    """Each record may unpack to ``limit``; together they may unpack to ``budget``, no more."""
    record = orjson.dumps(SAMPLE_EVENTS[1])
    padded = gzip.compress(record + b" " * 40_000)  # ~40 KB unpacked from a few hundred bytes
    c = PayloadCollector(ORIGIN, limit=1 << 20, budget=100_000)
    for i in range(3):
        c.add_bytes(padded, f"r#{i}")
    c.add_base64(base64.b64encode(record).decode(), "r#3")  # small: still fits what is left
    assert len(c.documents) == 3
    assert c.unpacked <= 100_000
    [(reason, raw)] = c.invalid
    assert reason.startswith("r#2: unpacks past the ") and "100000" in reason
    assert raw == padded  # the record's own bytes, for the dead letter
    assert c.objects == []  # not handed to the pipeline to unpack again
