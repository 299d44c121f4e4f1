"""S3 object notifications in every shape a queue or Lambda receives them."""

from __future__ import annotations

import orjson
import pytest

from trailrelay.errors import InputError
from trailrelay.sources.notifications import ObjectNotice, cloudtrail_event, parse_notification

KEY = "AWSLogs/o-abc1234567/111122223333/CloudTrail/eu-west-1/2026/03/02/111122223333_CloudTrail_eu-west-1_20260302T1005Z_aB3.json.gz"


def s3_event(key: str, name: str = "ObjectCreated:Put") -> dict[str, object]:
    """An S3 event notification as S3 writes it (documented structure, eventVersion 2.1)."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": "eu-west-1",
                "eventTime": "2026-03-02T10:05:33.120Z",
                "eventName": name,
                "userIdentity": {"principalId": "AWS:AROAEXAMPLE:regionalDeliverySession"},
                "requestParameters": {"sourceIPAddress": "192.0.2.10"},
                "responseElements": {
                    "x-amz-request-id": "C3D13FE58DE4C810",
                    "x-amz-id-2": "FMyUVURIY8/IgAtTv8xRjskZQpcIZ9KG4V5Wp6S7S/JRWeUWerMUE5JgHvANOjpD",
                },
                "s3": {
                    "s3SchemaVersion": "1.0",
                    "configurationId": "trail-objects",
                    "bucket": {
                        "name": "org-trail",
                        "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                        "arn": "arn:aws:s3:::org-trail",
                    },
                    "object": {
                        "key": key,
                        "size": 1024,
                        "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                        "sequencer": "0055AED6DCD90281E5",
                    },
                },
            }
        ]
    }


def test_direct_s3_event_decodes_url_encoded_keys() -> None:
    notices = parse_notification(orjson.dumps(s3_event("logs/a+b%3Dc/file%2B1.json.gz")))
    assert notices == [
        ObjectNotice("org-trail", "logs/a b=c/file+1.json.gz", 1024, "d41d8cd98f00b204e9800998ecf8427e")
    ]


def test_sns_wrapped() -> None:
    sns = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:eu-west-1:111122223333:trail-objects",
        "Subject": "Amazon S3 Notification",
        "Message": orjson.dumps(s3_event(KEY)).decode(),
        "Timestamp": "2026-03-02T10:05:33.200Z",
        "SignatureVersion": "1",
    }
    assert parse_notification(orjson.dumps(sns))[0].key == KEY


def test_cloudtrail_sns_notification() -> None:
    msg = {"s3Bucket": "org-trail", "s3ObjectKey": [KEY, KEY.replace("aB3", "zZ9")]}
    sns = {"Type": "Notification", "Message": orjson.dumps(msg).decode()}
    assert [n.key for n in parse_notification(orjson.dumps(sns))] == [KEY, KEY.replace("aB3", "zZ9")]


def test_eventbridge_object_created_keys_not_decoded() -> None:
    event = {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-03-02T10:05:33Z",
        "region": "eu-west-1",
        "resources": ["arn:aws:s3:::org-trail"],
        "detail": {
            "version": "0",
            "bucket": {"name": "org-trail"},
            "object": {"key": "a+b.json.gz", "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184"},
            "request-id": "N4N7GDK58NMKJ12R",
            "requester": "cloudtrail.amazonaws.com",
            "reason": "PutObject",
        },
    }
    assert parse_notification(event) == [
        ObjectNotice("org-trail", "a+b.json.gz", 5, "b1946ac92492d2347c6235b4d2611184")
    ]
    event["detail-type"] = "Object Deleted"
    assert parse_notification(event) == []


def test_test_event_and_deletions_name_nothing() -> None:
    test = {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2026-03-02T10:00:00.000Z",
        "Bucket": "org-trail",
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
    assert parse_notification(orjson.dumps(test)) == []
    assert parse_notification(s3_event(KEY, "ObjectRemoved:Delete")) == []


def test_an_s3_api_call_via_cloudtrail_is_an_event_to_forward_not_a_notification() -> None:
    """An EventBridge rule can target the queue or topic: an S3 API call is its record, not a test event."""
    event = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-03-02T10:05:33Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {"eventSource": "s3.amazonaws.com", "eventName": "PutBucketPublicAccessBlock"},
    }
    body = orjson.dumps(event)
    with pytest.raises(InputError, match="AWS API Call via CloudTrail"):
        parse_notification(body)  # never [] (a test event, skipped)
    assert cloudtrail_event(body) == body
    via_sns = orjson.dumps({"Type": "Notification", "MessageId": "m1", "Message": body.decode()})
    assert cloudtrail_event(via_sns.decode()) == body
    assert cloudtrail_event(orjson.dumps(s3_event(KEY))) is None
    assert cloudtrail_event("not json") is None


def test_an_s3_eventbridge_event_of_an_unknown_kind_is_an_input_error() -> None:
    event = {"source": "aws.s3", "detail-type": "Bucket Ate My Homework", "detail": {}}
    with pytest.raises(InputError, match="Bucket Ate My Homework"):
        parse_notification(event)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[1,2]",
        b'{"foo": 1}',
        b'{"Records": [{"s3": {}}]}',
        b'{"Records": [{"eventSource": "aws:s3"}]}',
        b'{"s3Bucket": 1, "s3ObjectKey": "x"}',
        b'{"source": "aws.s3", "detail-type": "Object Created", "detail": {}}',
    ],
)
def test_garbage_is_an_input_error(body: bytes) -> None:
    with pytest.raises(InputError):
        parse_notification(body)
