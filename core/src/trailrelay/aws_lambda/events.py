"""Recognise a Lambda event and turn it into units of work for the pipeline.

Shapes: an SQS batch (each message one unit: an S3 notification, directly or through SNS or
EventBridge, or an EventBridge CloudTrail event), an S3 notification or an SNS notification
invoking the function directly (one unit per object; an SNS message that is an EventBridge
CloudTrail event is one unit, its record), an EventBridge event ("... via CloudTrail", whatever
its source: the record itself; "Object Created": the object it names), and a CloudWatch Logs
subscription payload. Firehose data-transformation events are handled in
:mod:`trailrelay.aws_lambda.transform`. Anything else is dead-lettered with its top-level keys.

An invocation record (what a function's on-failure destination keeps of an event it could not
finish, the event in ``requestPayload``) is the event it holds: invoking the function with one
replays that event (:func:`unwrap_invocation_record`).
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import orjson

from trailrelay.errors import InputError, TrailrelayError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.sources.layout import classify_key
from trailrelay.sources.notifications import ObjectNotice, cloudtrail_event, parse_notification
from trailrelay.sources.payloads import PayloadCollector, decode_awslogs
from trailrelay.sources.s3 import fetch_object, open_object

__all__ = [
    "EventKind",
    "IncompleteInvocationError",
    "Ledger",
    "ObjectReader",
    "event_kind",
    "units_for",
    "unrecognised",
    "unwrap_invocation_record",
]


class IncompleteInvocationError(TrailrelayError):
    """Part of the event could not be finished in time: the invocation fails so AWS delivers it again."""


class EventKind(enum.Enum):
    """What invoked the function."""

    SQS = "sqs"
    S3 = "s3"
    SNS = "sns"
    EVENTBRIDGE = "eventbridge"
    CLOUDWATCH = "cloudwatch-logs"
    FIREHOSE = "firehose-transformation"
    UNKNOWN = "unknown"


def unwrap_invocation_record(event: Any) -> tuple[Any, str | None]:
    """(the event, the record's condition) of a Lambda destination's invocation record; else (event, None).

    Its documented shape: ``version``, ``timestamp``, ``requestContext`` (``requestId``,
    ``functionArn``, ``condition`` such as ``RetriesExhausted``, ``approximateInvokeCount``),
    ``requestPayload`` (the event), ``responseContext`` and ``responsePayload``. A record of a
    record (a replay that failed again) is unwrapped down to the event.
    """
    condition = None
    while isinstance(event, dict) and "requestPayload" in event:
        context = event.get("requestContext")
        if not isinstance(context, dict) or "functionArn" not in context:
            break
        condition = str(context.get("condition", "unknown"))
        event = event["requestPayload"]
    return event, condition


def event_kind(event: Any) -> EventKind:
    """Recognise the event's shape from its top-level keys."""
    if not isinstance(event, dict):
        return EventKind.UNKNOWN
    records = event.get("Records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        first = records[0]
        source = first.get("eventSource") or first.get("EventSource")
        if source == "aws:sqs":
            return EventKind.SQS
        if source == "aws:sns":
            return EventKind.SNS
        if source == "aws:s3" or "s3" in first:
            return EventKind.S3
    if event.get("Event") == "s3:TestEvent":
        return EventKind.S3
    if isinstance(event.get("awslogs"), dict):
        return EventKind.CLOUDWATCH
    if "invocationId" in event and isinstance(event.get("records"), list) and "deliveryStreamArn" in event:
        return EventKind.FIREHOSE
    if "detail-type" in event and "detail" in event:
        return EventKind.EVENTBRIDGE
    return EventKind.UNKNOWN


class Ledger:
    """Which units of one invocation were acknowledged and which were released (with why)."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.acked: set[str] = set()
        self.released: dict[str, str] = {}
        self._lock = threading.Lock()

    def work(
        self,
        unit_id: str,
        objects: list[ObjectRef],
        *,
        skipped: list[tuple[str, str]] | None = None,
        invalid: list[tuple[str, bytes]] | None = None,
        label: str = "",
    ) -> Work:
        """A unit of work whose ack and release are recorded under ``unit_id``."""
        self.order.append(unit_id)

        def ack(_: list[ObjectDone]) -> None:
            with self._lock:
                self.acked.add(unit_id)

        def release(reason: str) -> None:
            with self._lock:
                self.released[unit_id] = reason or "released"

        return Work(
            objects,
            ack=ack,
            release=release,
            skipped=skipped or [],
            invalid=invalid or [],
            label=label or unit_id,
        )

    def unfinished(self) -> list[str]:
        """Units not acknowledged (released, or never taken because time ran out), in event order."""
        with self._lock:
            return [u for u in self.order if u not in self.acked]

    def reason(self, unit_id: str) -> str:
        """Why a unit was not acknowledged."""
        with self._lock:
            return self.released.get(unit_id, "not started before the invocation's time ran out")


@dataclass
class ObjectReader:
    """How units fetch the S3 objects that notifications name."""

    s3: Callable[[], Any]
    """Returns the S3 client (built on first use: events that carry records never need it)."""
    max_object_bytes: int
    insights: bool = False
    _cached: Any = field(default=None, repr=False)

    def refs(self, notices: list[ObjectNotice]) -> tuple[list[ObjectRef], list[tuple[str, str]]]:
        """Objects to read and (reason, location) of the keys that are not log files."""
        objects: list[ObjectRef] = []
        skipped: list[tuple[str, str]] = []
        for n in notices:
            location = f"s3://{n.bucket}/{n.key}"
            reason = classify_key(n.key, n.size, insights=self.insights)
            if reason:
                skipped.append((reason, location))
                continue
            origin = Origin("s3", location, n.bucket, n.key, n.etag, n.size)
            objects.append(ObjectRef(origin, self._fetcher(n.bucket, n.key), self._opener(n.bucket, n.key)))
        return objects, skipped

    def _fetcher(self, bucket: str, key: str) -> Callable[[], bytes]:
        return lambda: fetch_object(self._client(), bucket, key, self.max_object_bytes)

    def _opener(self, bucket: str, key: str) -> Callable[[], BinaryIO]:
        return lambda: open_object(self._client(), bucket, key, self.max_object_bytes)

    def _client(self) -> Any:
        if self._cached is None:
            self._cached = self.s3()
        return self._cached


def units_for(kind: EventKind, event: Any, reader: ObjectReader, ledger: Ledger) -> list[Work]:
    """The units of work an event holds (one per SQS message, per object, or per event)."""
    if kind is EventKind.SQS:
        return [_sqs_unit(rec, i, reader, ledger) for i, rec in enumerate(event["Records"])]
    if kind is EventKind.S3:
        return _notification_units(event, "s3 event", reader, ledger)
    if kind is EventKind.SNS:
        units: list[Work] = []
        for i, rec in enumerate(event["Records"]):
            sns = rec.get("Sns") if isinstance(rec, dict) else None
            message = sns.get("Message") if isinstance(sns, dict) else None
            label = f"sns message {sns.get('MessageId', i) if isinstance(sns, dict) else i}"
            event_json = cloudtrail_event(message) if isinstance(message, str) else None
            if event_json is not None:  # an EventBridge rule that targets the topic
                units.append(
                    _cloudtrail_unit(label, Origin("eventbridge", label), event_json, reader, ledger)
                )
                continue
            units += _notification_units(message if isinstance(message, str) else rec, label, reader, ledger)
        return units
    if kind is EventKind.EVENTBRIDGE:
        return _eventbridge_units(event, reader, ledger)
    if kind is EventKind.CLOUDWATCH:
        return [_cloudwatch_unit(event, reader, ledger)]
    return [ledger.work("event", [], invalid=[(unrecognised(event), _raw(event))])]


def unrecognised(event: Any) -> str:
    """Why an event of no known shape is dead-lettered: its top-level keys."""
    keys = sorted(event)[:12] if isinstance(event, dict) else type(event).__name__
    return f"unrecognised Lambda event (top-level keys: {keys})"


def _sqs_unit(rec: Any, i: int, reader: ObjectReader, ledger: Ledger) -> Work:
    mid = str(rec.get("messageId", i)) if isinstance(rec, dict) else str(i)
    label = f"sqs message {mid}"
    body = rec.get("body") if isinstance(rec, dict) else None
    if not isinstance(body, str):
        return ledger.work(mid, [], invalid=[(f"{label}: no body", _raw(rec))], label=label)
    event_json = cloudtrail_event(body)
    if event_json is not None:  # an EventBridge rule that targets the queue (or a topic it reads)
        return _cloudtrail_unit(mid, Origin("sqs", label), event_json, reader, ledger)
    try:
        notices = parse_notification(body)
    except InputError as exc:
        return ledger.work(mid, [], invalid=[(f"{label}: {exc}", body.encode())], label=label)
    objects, skipped = reader.refs(notices)
    if not notices:
        skipped.append(("s3-test-event-or-no-object", label))
    return ledger.work(mid, objects, skipped=skipped, label=label)


def _cloudtrail_unit(
    unit_id: str, origin: Origin, event_json: bytes, reader: ObjectReader, ledger: Ledger
) -> Work:
    """One EventBridge CloudTrail event: the parser takes the record out of its envelope."""
    label = origin.location
    collector = PayloadCollector(origin, reader.max_object_bytes)
    collector.add_bytes(event_json, label)
    return ledger.work(
        unit_id, collector.refs(), skipped=collector.skipped, invalid=collector.invalid, label=label
    )


def _notification_units(body: Any, label: str, reader: ObjectReader, ledger: Ledger) -> list[Work]:
    try:
        notices = parse_notification(body)
    except InputError as exc:
        return [ledger.work(label, [], invalid=[(f"{label}: {exc}", _raw(body))])]
    if not notices:
        return [ledger.work(label, [], skipped=[("s3-test-event-or-no-object", label)])]
    units = []
    for notice in notices:
        objects, skipped = reader.refs([notice])
        units.append(ledger.work(f"s3://{notice.bucket}/{notice.key}", objects, skipped=skipped))
    return units


def _eventbridge_units(event: dict[str, Any], reader: ObjectReader, ledger: Ledger) -> list[Work]:
    detail_type = str(event.get("detail-type"))
    if event.get("source") == "aws.s3" and not detail_type.endswith("via CloudTrail"):  # Object Created
        return _notification_units(event, f"eventbridge {detail_type}", reader, ledger)
    label = f"eventbridge:{event.get('id', '')}"
    return [_cloudtrail_unit(label, Origin("eventbridge", label), orjson.dumps(event), reader, ledger)]


def _cloudwatch_unit(event: dict[str, Any], reader: ObjectReader, ledger: Ledger) -> Work:
    data = event["awslogs"].get("data")
    if not isinstance(data, str):
        return ledger.work("awslogs", [], invalid=[("awslogs.data is missing or not a string", _raw(event))])
    try:
        batch = decode_awslogs(data, reader.max_object_bytes)
    except InputError as exc:
        return ledger.work("awslogs", [], invalid=[(f"awslogs.data: {exc}", data.encode())])
    collector = PayloadCollector(Origin("cloudwatch", batch.location), reader.max_object_bytes)
    collector.add_logs(batch, batch.location)
    return ledger.work(batch.location, collector.refs(), skipped=collector.skipped)


def _raw(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    try:
        return orjson.dumps(value)
    except TypeError:
        return repr(value).encode()
