"""Parse the messages that announce new CloudTrail objects.

Accepted shapes (as an SQS message body or a Lambda event):
- S3 event notifications ``{"Records": [{"eventSource": "aws:s3", "s3": {...}}]}``; keys are
  URL-encoded (``+`` for space) and are decoded here;
- the same wrapped in an SNS notification (``"Type": "Notification"``, ``Message`` a string);
- CloudTrail's own SNS notification ``{"s3Bucket": ..., "s3ObjectKey": [...]}``;
- EventBridge "Object Created" events from S3 (keys are not URL-encoded there); S3's other
  EventBridge notifications ("Object Deleted", "Object Restore Completed", ...) name nothing to read;
- ``s3:TestEvent``, sent when a notification is configured: recognised and ignored.

A queue or topic can also carry EventBridge "... via CloudTrail" events (a rule targeting it),
whatever their source (``aws.s3`` included): :func:`cloudtrail_event` finds them, so callers
forward the record they hold; :func:`parse_notification` refuses them rather than taking an S3
API call for a notification that names no object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

import orjson

from trailrelay.errors import InputError

__all__ = ["ObjectNotice", "cloudtrail_event", "parse_notification"]


@dataclass(frozen=True, slots=True)
class ObjectNotice:
    """An object that a notification says was created."""

    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None


def parse_notification(body: str | bytes | dict[str, Any]) -> list[ObjectNotice]:
    """The objects a notification names (empty for test events); InputError if unrecognised."""
    doc: Any = body
    if isinstance(body, (str, bytes)):
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InputError(f"notification is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InputError(f"notification is a JSON {type(doc).__name__}, not an object")
    if doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        return parse_notification(doc["Message"])
    if _via_cloudtrail(doc):
        raise InputError(f"an EventBridge {doc['detail-type']!r} event, not an S3 object notification")
    if doc.get("Event") == "s3:TestEvent":
        return []
    if "s3Bucket" in doc and "s3ObjectKey" in doc:
        return _cloudtrail_sns(doc)
    if doc.get("source") == "aws.s3" and "detail" in doc:
        return _eventbridge(doc)
    records = doc.get("Records")
    if isinstance(records, list):
        return [n for r in records if (n := _s3_record(r)) is not None]
    raise InputError(f"not an S3 object notification (top-level keys: {sorted(doc)[:8]})")


def cloudtrail_event(body: str | bytes) -> bytes | None:
    """The EventBridge "... via CloudTrail" event in a message (itself or an SNS ``Message``), or None.

    The event's JSON, for the record parser, which takes the record out of ``detail``.
    """
    data = body.encode() if isinstance(body, str) else body
    doc = _json_object(data)
    if doc is not None and doc.get("Type") == "Notification" and isinstance(doc.get("Message"), str):
        data = doc["Message"].encode()
        doc = _json_object(data)
    return data if doc is not None and _via_cloudtrail(doc) else None


def _json_object(data: bytes) -> dict[str, Any] | None:
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _via_cloudtrail(doc: dict[str, Any]) -> bool:
    kind = doc.get("detail-type")
    return isinstance(kind, str) and kind.endswith("via CloudTrail")


def _cloudtrail_sns(doc: dict[str, Any]) -> list[ObjectNotice]:
    bucket, keys = doc["s3Bucket"], doc["s3ObjectKey"]
    if not isinstance(bucket, str) or not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise InputError("CloudTrail SNS notification with a malformed s3Bucket/s3ObjectKey")
    return [ObjectNotice(bucket, key) for key in keys]


def _eventbridge(doc: dict[str, Any]) -> list[ObjectNotice]:
    kind = doc.get("detail-type")
    if kind != "Object Created":
        if isinstance(kind, str) and kind.startswith("Object "):
            return []  # deleted, restored, tagged...: nothing to read
        raise InputError(
            f"EventBridge event from aws.s3 with detail-type {kind!r}: not an S3 object notification"
        )
    detail = doc["detail"]
    try:
        bucket = detail["bucket"]["name"]
        obj = detail["object"]
        key = obj["key"]
    except (KeyError, TypeError):
        raise InputError("EventBridge Object Created event without detail.bucket.name/object.key") from None
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InputError("EventBridge Object Created event with a non-string bucket or key")
    return [ObjectNotice(bucket, key, _int(obj.get("size")), _str(obj.get("etag")))]


def _s3_record(rec: Any) -> ObjectNotice | None:
    if not isinstance(rec, dict) or "s3" not in rec:
        raise InputError("S3 notification record without an s3 section")
    name = rec.get("eventName", "")
    if isinstance(name, str) and name and not name.startswith(("ObjectCreated:", "s3:ObjectCreated:")):
        return None  # deletions, restores, replication events: nothing to read
    try:
        bucket = rec["s3"]["bucket"]["name"]
        obj = rec["s3"]["object"]
        key = obj["key"]
    except (KeyError, TypeError):
        raise InputError("S3 notification record without s3.bucket.name/s3.object.key") from None
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InputError("S3 notification record with a non-string bucket or key")
    return ObjectNotice(bucket, unquote_plus(key), _int(obj.get("size")), _str(obj.get("eTag")))


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
