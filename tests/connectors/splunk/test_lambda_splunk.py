"""The Lambda handler into a real connector: trailrelay-splunk against the HEC stand-in.

Skipped when trailrelay-splunk is not installed (the core tox environment); runs wherever the
connector is installed next to core.
"""

from __future__ import annotations

import base64
import gzip
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import boto3
import orjson
import pytest

pytest.importorskip("trailrelay_splunk")
sys.path.insert(0, str(Path(__file__).parent))

from splunk_hec_standin import HecStandIn

from trailrelay.aws_lambda import handler
from trailrelay.aws_lambda import invoke as lambda_invoke
from trailrelay.aws_lambda.events import IncompleteInvocationError
from trailrelay.testing import SAMPLE_EVENTS

TOKEN = "0a1b2c3d-4e5f-6789-abcd-ef0123456789"


class Context:
    """A Lambda context whose remaining time runs down."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@pytest.fixture
def hec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[HecStandIn]:
    server = HecStandIn(TOKEN, use_ack=True).start()
    monkeypatch.setenv("HEC_TOKEN", TOKEN)
    monkeypatch.setenv(
        "TRAILRELAY_CONFIG",
        "[[sinks]]\n"
        'type = "splunk"\n'
        f'url = "{server.url}"\n'
        'token = "${HEC_TOKEN}"\n'
        'index = "cloudtrail"\n'
        "ack = true\n"
        "ack_poll_interval = 0.01\n"
        "batch_seconds = 0.05\n"
        f'[dead_letter]\npath = "{tmp_path / "dead"}"\n',
    )
    lambda_invoke.reset()
    yield server
    lambda_invoke.reset()
    server.stop()


def test_sqs_eventbridge_and_cloudwatch_events_reach_splunk(aws_env: str, hec: HecStandIn) -> None:
    s3 = boto3.client("s3")
    bucket = f"trail-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    evs = [{**SAMPLE_EVENTS[1], "eventID": f"obj-{i}"} for i in range(25)]
    key = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/03/02/111122223333_CloudTrail_us-east-1_20260302T1020Z_a.json.gz"
    s3.put_object(Bucket=bucket, Key=key, Body=gzip.compress(orjson.dumps({"Records": evs})))
    notice = {
        "Records": [
            {
                "eventSource": "aws:s3",
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
            }
        ]
    }
    sqs_event = {
        "Records": [
            {
                "messageId": "m1",
                "receiptHandle": "r",
                "body": orjson.dumps(notice).decode(),
                "attributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:111122223333:q",
                "awsRegion": "us-east-1",
            }
        ]
    }
    assert handler(sqs_event, None) == {"batchItemFailures": []}
    stop = {**SAMPLE_EVENTS[0], "eventID": "stop-logging-1"}
    eb = {
        "version": "0",
        "id": "e1",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cloudtrail",
        "account": "111122223333",
        "time": stop["eventTime"],
        "region": "eu-west-1",
        "resources": [],
        "detail": stop,
    }
    assert handler(eb, None)["records"] == 1
    logs = {
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": "ct",
        "logStream": "s",
        "subscriptionFilters": ["f"],
        "logEvents": [
            {
                "id": "1",
                "timestamp": 1,
                "message": orjson.dumps({**SAMPLE_EVENTS[2], "eventID": "cwl-1"}).decode(),
            }
        ],
    }
    assert (
        handler({"awslogs": {"data": base64.b64encode(gzip.compress(orjson.dumps(logs))).decode()}}, None)[
            "records"
        ]
        == 1
    )
    assert Counter(hec.event_ids()) == Counter([e["eventID"] for e in evs] + ["stop-logging-1", "cwl-1"])
    tagged = [e for e in hec.stored if e["event"].get("eventID") == "stop-logging-1"]
    assert tagged and tagged[0]["index"] == "cloudtrail"


def test_a_busy_splunk_leaves_the_message_for_redelivery(
    aws_env: str, hec: HecStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HEC answers 503 until the invocation's time runs short: the message is handed back, not deleted."""
    monkeypatch.setenv(
        "TRAILRELAY_CONFIG",
        "[source]\nstop_before_timeout = 1.0\nfinish_before_timeout = 0.5\n"
        + os.environ["TRAILRELAY_CONFIG"],
    )
    hec.busy_left = 10_000

    body = {
        "version": "0",
        "id": "e2",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.cloudtrail",
        "detail": {**SAMPLE_EVENTS[0], "eventID": "busy-1"},
    }
    event = {
        "Records": [
            {
                "messageId": "m-busy",
                "receiptHandle": "r",
                "body": orjson.dumps(body).decode(),
                "attributes": {},
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:1:q",
                "awsRegion": "us-east-1",
            }
        ]
    }
    # The batch's only message is unfinished: the invocation fails, so Lambda retries the batch
    # even where the trigger lacks ReportBatchItemFailures (a returned list would delete it).
    with pytest.raises(IncompleteInvocationError, match="none of the 1 messages"):
        handler(event, Context(1.5))
    hec.busy_left = 0
    assert handler(event, None) == {"batchItemFailures": []}
    assert hec.event_ids() == ["busy-1"]
