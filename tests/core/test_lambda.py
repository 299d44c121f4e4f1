"""The Lambda handler: every event shape through ``trailrelay.aws_lambda.handler`` into real sinks.

Events are built here in the shapes AWS documents (S3, SQS, SNS, EventBridge, CloudWatch Logs
and Firehose data-transformation events); S3 and SQS are moto in server mode.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import orjson
import pytest

from trailrelay.aws_lambda import handler
from trailrelay.aws_lambda import invoke as lambda_invoke
from trailrelay.aws_lambda.events import EventKind, IncompleteInvocationError, event_kind
from trailrelay.aws_lambda.invoke import App
from trailrelay.aws_lambda.settings import load_lambda_config
from trailrelay.contract import BatchLimits
from trailrelay.pipeline.deadletter import read_entries
from trailrelay.testing import SAMPLE_EVENTS, load_records

REGION = "us-east-1"
QUEUE_ARN = "arn:aws:sqs:us-east-1:111122223333:trail-objects"
QUIET = [
    e for e in SAMPLE_EVENTS if e["eventName"] in ("DescribeInstances", "RotationSucceeded", "GetObject")
]


class Context:
    """The parts of the Lambda context object the handler uses, with a clock that runs down."""

    function_name = "trailrelay"
    memory_limit_in_mb = 512

    def __init__(self, seconds: float = 60.0) -> None:
        self.deadline = time.monotonic() + seconds
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def _events(n: int, prefix: str) -> list[dict[str, Any]]:
    return [{**QUIET[i % len(QUIET)], "eventID": f"{prefix}-{i:05d}"} for i in range(n)]


def _toml(tmp: Path, **source: Any) -> str:
    lines = ['[source]\ntype = "lambda"']
    lines += [f"{k} = {v!r}" if isinstance(v, str) else f"{k} = {v}" for k, v in source.items()]
    lines += [
        "[[sinks]]",
        'type = "file"',
        'name = "siem"',
        f'path = "{tmp / "out.ndjson"}"',
        "batch_seconds = 0.05",
        "[dead_letter]",
        f'path = "{tmp / "dead"}"',
        "[pipeline]",
        "readers = 2",
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture(autouse=True)
def _fresh_container() -> Iterator[None]:
    lambda_invoke.reset()
    yield
    lambda_invoke.reset()


@pytest.fixture
def configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TRAILRELAY_CONFIG holds the document inline; the file sink writes tmp/out.ndjson."""
    monkeypatch.setenv("TRAILRELAY_CONFIG", _toml(tmp_path))
    return tmp_path / "out.ndjson"


def _out(path: Path) -> Counter[str]:
    if not path.exists():
        return Counter()
    return Counter(orjson.loads(line)["eventID"] for line in path.read_bytes().splitlines())


# -- event shapes, as AWS documents them -------------------------------------------------------


def _s3_record(
    bucket: str, key: str, size: int, etag: str, name: str = "ObjectCreated:Put"
) -> dict[str, Any]:
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2026-03-02T10:20:01.123Z",
        "eventName": name,
        "userIdentity": {"principalId": "AWS:AROAEXAMPLEROLEID:regionalDeliverySession"},
        "requestParameters": {"sourceIPAddress": "198.51.100.20"},
        "responseElements": {
            "x-amz-request-id": "C3D13FE58DE4C810",
            "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "trail-objects",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": etag,
                "sequencer": "0065E2F1A3B4C5D6E7",
            },
        },
    }


def _sqs_record(body: str, mid: str | None = None, arn: str = QUEUE_ARN) -> dict[str, Any]:
    return {
        "messageId": mid or str(uuid.uuid4()),
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a" + uuid.uuid4().hex,
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1772446801123",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1772446801130",
        },
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


def _sns_record(message: str) -> dict[str, Any]:
    return {
        "EventSource": "aws:sns",
        "EventVersion": "1.0",
        "EventSubscriptionArn": "arn:aws:sns:us-east-1:111122223333:trail-notices:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
        "Sns": {
            "Type": "Notification",
            "MessageId": str(uuid.uuid4()),
            "TopicArn": "arn:aws:sns:us-east-1:111122223333:trail-notices",
            "Subject": None,
            "Message": message,
            "Timestamp": "2026-03-02T10:20:02.000Z",
            "SignatureVersion": "1",
            "Signature": "EXAMPLE",
            "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
            "MessageAttributes": {},
        },
    }


def _api_call_event(record: dict[str, Any]) -> dict[str, Any]:
    """EventBridge's "AWS API Call via CloudTrail" envelope around a management event."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws." + record["eventSource"].split(".")[0],
        "account": "111122223333",
        "time": record["eventTime"],
        "region": record["awsRegion"],
        "resources": [],
        "detail": record,
    }


def _awslogs(events: list[dict[str, Any]], kind: str = "DATA_MESSAGE") -> dict[str, Any]:
    doc = {
        "messageType": kind,
        "owner": "111122223333",
        "logGroup": "aws-cloudtrail-logs-111122223333",
        "logStream": "111122223333_CloudTrail_us-east-1",
        "subscriptionFilters": ["trailrelay"],
        "logEvents": [
            {"id": f"37{i:054d}", "timestamp": 1772446801000 + i, "message": orjson.dumps(e).decode()}
            for i, e in enumerate(events)
        ],
    }
    return {"awslogs": {"data": base64.b64encode(gzip.compress(orjson.dumps(doc))).decode()}}


def _firehose_event(datas: list[bytes]) -> dict[str, Any]:
    return {
        "invocationId": str(uuid.uuid4()),
        "deliveryStreamArn": "arn:aws:firehose:us-east-1:111122223333:deliverystream/cloudtrail-to-splunk",
        "region": REGION,
        "records": [
            {
                "recordId": f"49546986683135544286507457936321625675700192471156785154{i:04d}",
                "approximateArrivalTimestamp": 1772446801000 + i,
                "data": base64.b64encode(d).decode(),
            }
            for i, d in enumerate(datas)
        ],
    }


@pytest.fixture
def bucket(aws_env: str) -> tuple[Any, str]:
    s3 = boto3.client("s3")
    name = f"org-trail-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return s3, name


def _put(s3: Any, bucket: str, key: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    body = gzip.compress(orjson.dumps({"Records": events}))
    resp = s3.put_object(Bucket=bucket, Key=key, Body=body)
    return _s3_record(bucket, key, len(body), resp["ETag"].strip('"'))


def _key(n: int, account: str = "111122223333") -> str:
    return f"AWSLogs/o-abc1234567/{account}/CloudTrail/us-east-1/2026/03/02/{account}_CloudTrail_us-east-1_20260302T10{n:02d}Z_x{n}.json.gz"


# -- tests -------------------------------------------------------------------------------------


def test_event_shapes_are_recognised() -> None:
    assert event_kind({"Records": [_sqs_record("{}")]}) is EventKind.SQS
    assert event_kind({"Records": [_s3_record("b", "k", 1, "e")]}) is EventKind.S3
    assert event_kind({"Records": [_sns_record("{}")]}) is EventKind.SNS
    assert event_kind(_api_call_event(SAMPLE_EVENTS[0])) is EventKind.EVENTBRIDGE
    assert event_kind(_awslogs([])) is EventKind.CLOUDWATCH
    assert event_kind(_firehose_event([b"{}"])) is EventKind.FIREHOSE
    assert event_kind({"Service": "Amazon S3", "Event": "s3:TestEvent"}) is EventKind.S3
    assert event_kind({"hello": "world"}) is EventKind.UNKNOWN
    assert event_kind([1, 2]) is EventKind.UNKNOWN


def test_s3_notification_invokes_directly(bucket: tuple[Any, str], configured: Path) -> None:
    s3, name = bucket
    evs = _events(30, "s3")
    key = _key(1).replace("_x1", "_with space")  # S3 URL-encodes keys in notifications
    result = handler({"Records": [_put(s3, name, key, evs)]}, Context())
    assert result == {"event": "s3", "units": 1, "records": 30}
    assert _out(configured) == Counter(e["eventID"] for e in evs)


def test_sqs_batch_answers_partial_failures(
    bucket: tuple[Any, str], configured: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One missing object does not redeliver the rest; unreadable messages are dead-lettered, not retried."""
    s3, name = bucket
    good = [_events(10, f"m{i}") for i in range(3)]
    records = [
        _sqs_record(orjson.dumps({"Records": [_put(s3, name, _key(i), evs)]}).decode(), f"msg-{i}")
        for i, evs in enumerate(good)
    ]
    missing = _sqs_record(
        orjson.dumps({"Records": [_s3_record(name, _key(9), 100, "abc")]}).decode(), "msg-missing"
    )
    garbage = _sqs_record("this is not a notification", "msg-garbage")
    test_event = _sqs_record(
        orjson.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": name}).decode(), "msg-test"
    )
    digest = _sqs_record(
        orjson.dumps(
            {"Records": [_s3_record(name, _key(5).replace("CloudTrail/", "CloudTrail-Digest/"), 10, "d")]}
        ).decode(),
        "msg-digest",
    )
    via_sns = _sqs_record(
        orjson.dumps(
            {
                "Type": "Notification",
                "MessageId": "n1",
                "Message": orjson.dumps({"s3Bucket": name, "s3ObjectKey": [_key(7)]}).decode(),
            }
        ).decode(),
        "msg-sns",
    )
    sns_events = _events(4, "sns")
    _put(s3, name, _key(7), sns_events)
    event = {"Records": [*records[:2], missing, garbage, test_event, digest, via_sns, records[2]]}
    result = handler(event, Context())
    assert result == {"batchItemFailures": [{"itemIdentifier": "msg-missing"}]}
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("1 of 8 messages" in w and "ReportBatchItemFailures" in w for w in warned)
    expected = Counter(e["eventID"] for evs in good for e in evs) + Counter(e["eventID"] for e in sns_events)
    assert _out(configured) == expected
    reasons = [e["reason"] for e in read_entries(tmp_path / "dead")]
    assert len(reasons) == 1 and "msg-garbage" in reasons[0]


def test_sqs_message_carrying_an_eventbridge_cloudtrail_event(configured: Path) -> None:
    record = {**SAMPLE_EVENTS[0], "eventID": "via-queue"}
    event = {"Records": [_sqs_record(orjson.dumps(_api_call_event(record)).decode(), "m1")]}
    assert handler(event, Context()) == {"batchItemFailures": []}
    assert _out(configured) == Counter(["via-queue"])


def test_eventbridge_cloudtrail_events_through_sqs_and_sns_whatever_their_source(
    configured: Path, tmp_path: Path
) -> None:
    """An S3 API call (source aws.s3) is a record to forward, not an S3 test event to skip."""
    s3_call = {
        **SAMPLE_EVENTS[0],
        "eventSource": "s3.amazonaws.com",
        "eventName": "PutBucketPublicAccessBlock",
        "eventID": "s3-call",
    }
    trail_call = {
        **SAMPLE_EVENTS[0],
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "eventID": "trail-call",
    }
    bodies = [orjson.dumps(_api_call_event(r)).decode() for r in (s3_call, trail_call)]
    assert orjson.loads(bodies[0])["source"] == "aws.s3"
    via_sns = orjson.dumps({"Type": "Notification", "MessageId": "n1", "Message": bodies[0]}).decode()
    sqs_event = {
        "Records": [_sqs_record(bodies[0], "m1"), _sqs_record(bodies[1], "m2"), _sqs_record(via_sns)]
    }
    assert handler(sqs_event, Context()) == {"batchItemFailures": []}
    assert _out(configured) == Counter({"s3-call": 2, "trail-call": 1})
    sns_event = {"Records": [_sns_record(b) for b in bodies]}
    assert handler(sns_event, Context()) == {"event": "sns", "units": 2, "records": 2}
    assert _out(configured) == Counter({"s3-call": 3, "trail-call": 2})
    assert list(read_entries(tmp_path / "dead")) == []


def test_sns_notifications_invoke_directly(bucket: tuple[Any, str], configured: Path) -> None:
    s3, name = bucket
    evs = _events(6, "sns")
    rec = _put(s3, name, _key(3), evs)
    s3_message = orjson.dumps({"Records": [rec]}).decode()
    cloudtrail_message = orjson.dumps({"s3Bucket": name, "s3ObjectKey": [_key(3)]}).decode()
    handler({"Records": [_sns_record(s3_message), _sns_record(cloudtrail_message)]}, Context())
    assert _out(configured) == Counter({e["eventID"]: 2 for e in evs})  # named twice, read twice


def test_eventbridge_api_call_events_from_the_corpus(corpus: Path, configured: Path) -> None:
    """Real EventBridge "AWS API Call via CloudTrail" events, one invocation each."""
    files = sorted((corpus / "cloudtrail" / "cloud-custodian-eventbridge").glob("*.json"))
    assert files
    expected: Counter[str] = Counter()
    for f in files:
        event = orjson.loads(f.read_bytes())
        if not str(event.get("detail-type", "")).endswith("via CloudTrail"):
            continue
        expected[event["detail"]["eventID"]] += 1
        result = handler(event, Context())
        assert result["records"] == 1
    assert expected and _out(configured) == expected


def test_eventbridge_object_created_reads_the_object(bucket: tuple[Any, str], configured: Path) -> None:
    s3, name = bucket
    evs = _events(5, "eb")
    _put(s3, name, _key(4), evs)
    event = {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-03-02T10:20:01Z",
        "region": REGION,
        "resources": [f"arn:aws:s3:::{name}"],
        "detail": {
            "version": "0",
            "bucket": {"name": name},
            "object": {"key": _key(4), "size": 100, "etag": "x", "sequencer": "00"},
            "request-id": "57H08PA84AB1JZW0",
            "requester": "cloudtrail.amazonaws.com",
            "reason": "PutObject",
        },
    }
    handler(event, Context())
    assert _out(configured) == Counter(e["eventID"] for e in evs)


def test_cloudwatch_logs_subscription_payloads(corpus: Path, configured: Path, tmp_path: Path) -> None:
    records = load_records(corpus / "cloudtrail" / "splunk-security-content")
    docs = [orjson.loads(r.raw) for r in records][:200]
    assert docs
    result = handler(_awslogs(docs), Context())
    assert result["records"] == len(docs)
    assert sum(_out(configured).values()) == len(docs)
    control = _awslogs([], "CONTROL_MESSAGE")
    assert handler(control, Context())["records"] == 0
    assert handler({"awslogs": {"data": "bm90IGd6aXA="}}, Context())["records"] == 0  # "not gzip"
    reasons = [e["reason"] for e in read_entries(tmp_path / "dead")]
    assert len(reasons) == 1 and "awslogs.data" in reasons[0]


def test_unrecognised_events_are_dead_lettered_not_retried(
    configured: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    answer = handler({"hello": "world"}, Context())
    assert answer == {
        "event": "unknown",
        "error": "unrecognised Lambda event (top-level keys: ['hello']): nothing forwarded, "
        "the event is dead-lettered",
        "records": 0,
    }  # not an answer that looks like work was done
    [entry] = list(read_entries(tmp_path / "dead"))
    assert "unrecognised Lambda event" in entry["reason"] and "hello" in entry["reason"]
    # /tmp does not outlive the container: without an s3_uri, the entry is in the log as well
    assert any(
        "dead letter:" in r.getMessage() and "unrecognised Lambda event" in r.getMessage()
        for r in caplog.records
    )


def _invocation_record(payload: Any) -> dict[str, Any]:
    """What the function's on-failure destination writes for an event it could not finish."""
    return {
        "version": "1.0",
        "timestamp": "2026-03-02T10:21:09.075Z",
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "functionArn": "arn:aws:lambda:us-east-1:111122223333:function:trailrelay-fast-path:$LATEST",
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": payload,
        "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
        "responsePayload": {
            "errorMessage": "1 of 1 units not finished (eventbridge:x: not started before the invocation's time ran out)",
            "errorType": "IncompleteInvocationError",
        },
    }


def test_replaying_the_failed_events_queue_forwards_what_the_records_hold(
    bucket: tuple[Any, str], configured: Path, tmp_path: Path
) -> None:
    """docs/deploy/eventbridge-lambda.md: invoke the function with each failed-events message body."""
    s3, name = bucket
    call = {**SAMPLE_EVENTS[0], "eventID": "replayed-call"}
    assert handler(_invocation_record(_api_call_event(call)), Context()) == {
        "event": "eventbridge",
        "units": 1,
        "records": 1,
    }
    evs = _events(3, "replayed-object")
    notice = {"Records": [_put(s3, name, _key(6), evs)]}
    again = _invocation_record(_invocation_record(notice))  # a replay that failed in its turn
    assert handler(again, Context()) == {"event": "s3", "units": 1, "records": 3}
    assert handler(_api_call_event({**call, "eventID": "eventbridge-dlq"}), Context())["records"] == 1
    assert _out(configured) == Counter(["replayed-call", "eventbridge-dlq", *(e["eventID"] for e in evs)])
    assert list(read_entries(tmp_path / "dead")) == []


def test_firehose_transformation_answers_every_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = (
        _toml(tmp_path)
        + '[filter]\n[[filter.rules]]\nname = "no-reads"\naction = "drop"\nevent_name = ["GetObject"]\n'
    )
    monkeypatch.setenv("TRAILRELAY_CONFIG", doc)
    keep = {**QUIET[0], "eventID": "keep-1"}
    drop = {**next(e for e in QUIET if e["eventName"] == "GetObject"), "eventID": "drop-1"}
    two = [{**QUIET[1], "eventID": "cwl-1"}, {**QUIET[0], "eventID": "cwl-2"}]
    logs_gzip = base64.b64decode(_awslogs(two)["awslogs"]["data"])  # as CloudWatch hands it to Firehose
    datas = [
        orjson.dumps(keep),  # Ok
        orjson.dumps(drop),  # Dropped by the filter
        b'{"Hello": "World"}',  # ProcessingFailed: not CloudTrail
        logs_gzip,  # Ok: the CloudWatch payload comes out as two records
        base64.b64decode(_awslogs([], "CONTROL_MESSAGE")["awslogs"]["data"]),  # Dropped
        orjson.dumps(_api_call_event({**SAMPLE_EVENTS[0], "eventID": "env-1"})),  # Ok: the record itself
        orjson.dumps({**QUIET[1], "eventID": "half-1"}) + b"\n{broken\n",  # Ok, the broken line dead-lettered
    ]
    event = _firehose_event(datas)
    event["records"].append({"recordId": "not-base64", "approximateArrivalTimestamp": 1, "data": "%%%"})
    answer = handler(event, Context())
    results = {r["recordId"]: r for r in answer["records"]}
    ids = [r["recordId"] for r in event["records"]]
    assert [r["recordId"] for r in answer["records"]] == ids  # every record, in order, once
    got = [results[i]["result"] for i in ids]
    assert got == ["Ok", "Dropped", "ProcessingFailed", "Ok", "Dropped", "Ok", "Ok", "ProcessingFailed"]

    def lines(i: int) -> list[str]:
        return [orjson.loads(x)["eventID"] for x in base64.b64decode(results[ids[i]]["data"]).splitlines()]

    assert lines(0) == ["keep-1"]
    assert base64.b64decode(results[ids[0]]["data"]) == orjson.dumps(keep) + b"\n"  # the record's own bytes
    assert lines(3) == ["cwl-1", "cwl-2"]
    assert lines(5) == ["env-1"]
    assert lines(6) == ["half-1"]
    for i in (1, 2, 4, 7):  # not Ok: the original data, for Firehose's error output
        assert results[ids[i]]["data"] == event["records"][i]["data"]
    reasons = [e["reason"] for e in read_entries(tmp_path / "dead")]
    assert (
        len(reasons) == 1 and "malformed JSON" in reasons[0]
    )  # ProcessingFailed ones are Firehose's to keep
    assert not (tmp_path / "out.ndjson").exists()  # the configured sinks are not used


@pytest.mark.parametrize(
    ("privacy", "masked"),
    [
        ('default = "standard"', True),  # every sink, the transformation's answer included
        ('[privacy.sinks]\nfirehose-transformation = "standard"', True),
        ('default = "standard"\n[privacy.sinks]\nfirehose-transformation = "none"', False),
    ],
)
def test_firehose_transformation_applies_the_privacy_profile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, privacy: str, masked: bool
) -> None:
    monkeypatch.setenv("PSEUDO_KEY", "k3y-material-that-is-long-enough-0123456789")
    monkeypatch.setenv(
        "TRAILRELAY_CONFIG", _toml(tmp_path) + f'[privacy]\nkey_env = "PSEUDO_KEY"\n{privacy}\n'
    )
    event = {**SAMPLE_EVENTS[0], "eventID": "fh-1"}
    assert event["userIdentity"]["userName"] == "alice"
    assert event["sourceIPAddress"] == "203.0.113.7"
    answer = handler(_firehose_event([orjson.dumps(event)]), Context())
    (result,) = answer["records"]
    assert result["result"] == "Ok"
    data = base64.b64decode(result["data"])
    out = orjson.loads(data)
    assert out["eventID"] == "fh-1"
    if masked:
        assert b"alice" not in data
        assert b"203.0.113.7" not in data
        assert out["sourceIPAddress"] == "203.0.113.0"
        assert out["userIdentity"]["userName"].startswith("tr1_")
    else:
        assert data == orjson.dumps(event) + b"\n"


def _slow_app(tmp: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any, pause: float, **source: Any) -> Any:
    monkeypatch.setenv("TRAILRELAY_CONFIG", _toml(tmp, **source))
    current = App.from_config(load_lambda_config())
    sink = scripted(BatchLimits(max_records=10, max_bytes=1 << 20, max_age=0.01, concurrency=1))
    sink.on_send = lambda _: time.sleep(pause)
    current.forwarder.sinks = {"siem": sink}  # a stand-in SIEM that takes its time
    lambda_invoke._APP = current
    return sink


def test_remaining_time_cut_off_leaves_no_half_acknowledged_message(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any
) -> None:
    """Messages are either finished (all records delivered) or returned for redelivery."""
    s3, name = bucket
    # 24 batches of 0.08 s: about 1.9 s of sending, well past the 1.3 s when the answer is due
    # (0.05 s made it 1.2 s: on a quick run every message finished and none was handed back).
    sink = _slow_app(
        tmp_path, monkeypatch, scripted, 0.08, stop_before_timeout=0.8, finish_before_timeout=0.3
    )
    by_message: dict[str, list[str]] = {}
    records = []
    for i in range(12):
        evs = _events(20, f"t{i}")
        by_message[f"msg-{i}"] = [e["eventID"] for e in evs]
        records.append(
            _sqs_record(orjson.dumps({"Records": [_put(s3, name, _key(i), evs)]}).decode(), f"msg-{i}")
        )
    context = Context(1.6)
    answer = handler({"Records": records}, context)
    assert context.get_remaining_time_in_millis() > 0  # answered before the function's timeout
    failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
    stored = set(sink.stored)
    assert failed and len(failed) < 12  # some finished, some handed back
    for mid, ids in by_message.items():
        if mid not in failed:  # deleted by Lambda: every record must have been delivered
            assert set(ids) <= stored, mid
    # the redelivered messages complete on the next invocation, with time to spare
    retry = {"Records": [r for r in records if r["messageId"] in failed]}
    assert handler(retry, Context(60)) == {"batchItemFailures": []}
    assert set(sink.stored) == {i for ids in by_message.values() for i in ids}


def test_fifo_queue_failures_include_every_later_message(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any
) -> None:
    s3, name = bucket
    _slow_app(tmp_path, monkeypatch, scripted, 0.0)
    fifo = QUEUE_ARN + ".fifo"
    ok = _sqs_record(
        orjson.dumps({"Records": [_put(s3, name, _key(1), _events(2, "f"))]}).decode(), "a", fifo
    )
    missing = _sqs_record(orjson.dumps({"Records": [_s3_record(name, _key(8), 1, "x")]}).decode(), "b", fifo)
    later = _sqs_record(
        orjson.dumps({"Records": [_put(s3, name, _key(2), _events(2, "g"))]}).decode(), "c", fifo
    )
    answer = handler({"Records": [ok, missing, later]}, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "b"}, {"itemIdentifier": "c"}]}


def test_sqs_batch_none_of_whose_messages_finished_fails_the_invocation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any
) -> None:
    """Without ReportBatchItemFailures a normal return deletes the batch: a sink that is down raises."""
    sink = _slow_app(tmp_path, monkeypatch, scripted, 0.0, stop_before_timeout=0.8, finish_before_timeout=0.3)
    sink.retry_calls = 1_000_000  # the SIEM answers 503 to everything
    bodies = [
        orjson.dumps(_api_call_event({**SAMPLE_EVENTS[0], "eventID": f"d{i}"})).decode() for i in range(4)
    ]
    event = {"Records": [_sqs_record(body, f"m{i}") for i, body in enumerate(bodies)]}
    with pytest.raises(
        IncompleteInvocationError, match=r"none of the 4 messages .*m0: .*retries the whole batch"
    ):
        handler(event, Context(1.5))
    assert sink.stored == []


def test_async_event_cut_off_fails_the_invocation_for_a_retry(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any
) -> None:
    s3, name = bucket
    _slow_app(tmp_path, monkeypatch, scripted, 0.1, stop_before_timeout=0.5, finish_before_timeout=0.2)
    event = {"Records": [_put(s3, name, _key(i), _events(20, f"a{i}")) for i in range(6)]}
    with pytest.raises(IncompleteInvocationError, match="not finished"):
        handler(event, Context(0.9))


def test_a_fatal_sink_error_fails_and_rereads_the_config_next_time(
    bucket: tuple[Any, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, scripted: Any
) -> None:
    s3, name = bucket
    sink = _slow_app(tmp_path, monkeypatch, scripted, 0.0)
    sink.fatal_after = 0
    event = {
        "Records": [
            _sqs_record(orjson.dumps({"Records": [_put(s3, name, _key(1), _events(3, "x"))]}).decode(), "m")
        ]
    }
    with pytest.raises(IncompleteInvocationError, match="none of the 1 messages"):
        handler(event, Context())  # the batch's only message failed: Lambda retries it
    assert lambda_invoke._APP is None  # e.g. a rotated token: the next invocation reads it again
    assert handler(event, Context()) == {"batchItemFailures": []}  # now the configured file sink
    assert _out(tmp_path / "out.ndjson") == Counter(f"x-{i:05d}" for i in range(3))


def test_sinks_are_opened_once_per_container(bucket: tuple[Any, str], configured: Path) -> None:
    s3, name = bucket
    for i in range(3):
        handler({"Records": [_put(s3, name, _key(i), _events(2, f"c{i}"))]}, Context())
    first = lambda_invoke._APP
    assert first is not None and list(first.forwarder.sinks) == ["siem"]
    handler({"Records": [_put(s3, name, _key(5), _events(2, "c5"))]}, Context())
    assert lambda_invoke._APP is first
    assert sum(_out(configured).values()) == 8
    assert threading.active_count() < 40  # per-invocation threads end with the invocation


def test_a_sink_that_cannot_open_fails_the_invocation_without_acknowledging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trailrelay.errors import FatalSinkError

    monkeypatch.setenv(
        "TRAILRELAY_CONFIG", '[[sinks]]\ntype = "file"\npath = "/proc/no-such-dir/out.ndjson"\n'
    )
    event = {
        "Records": [_sqs_record(orjson.dumps(_api_call_event({**SAMPLE_EVENTS[0], "eventID": "x"})).decode())]
    }
    with pytest.raises(FatalSinkError, match="cannot open"):
        handler(event, Context())  # SQS keeps the whole batch: a configuration mistake loses nothing
    assert lambda_invoke._APP is None  # the next invocation reads the configuration again
