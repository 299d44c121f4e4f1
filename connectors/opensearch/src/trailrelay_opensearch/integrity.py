"""Integrity events ([integrity]: one per CloudTrail digest checked) as OpenSearch documents.

They are not CloudTrail records, so they go to an index of their own,
``logs-trailrelay.integrity-<namespace>`` (``integrity_index``)::

    {"@timestamp": "<verified_at>", "message": "CloudTrail digest s3://...: invalid (log-modified)",
     "event": {"kind": "alert", "outcome": "failure", "action": "cloudtrail-integrity-check"},
     "cloud": {"provider": "aws", "account": {"id": "..."}, "region": "..."},
     "trailrelay": {"integrity": {<the event as trailrelay emits it>}, "detections": [...], ...}}

The event sits under ``trailrelay.integrity`` so its ``source`` (a string) and ``organization``
never clash with fields of the same name elsewhere. ``event.kind`` is ``alert`` when the
verdict is not ``valid`` or the chain restarted or broke. The ``_id`` hashes the digest (or
finding) location, the verdict and the checked window: a re-sent event is a duplicate, while
every periodic check is kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from trailrelay.contract import INTEGRITY_KIND, Record, hash_id

__all__ = ["integrity_document", "is_integrity", "iso_utc"]


def iso_utc(t: dt.datetime) -> str:
    """``2026-03-02T10:15:02.000Z``: UTC with milliseconds, the form OpenSearch's date type prints."""
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def is_integrity(record: Record) -> bool:
    """True for an integrity event (not a CloudTrail record)."""
    return record.origin.kind == INTEGRITY_KIND


def _location(record: Record, event: dict[str, Any]) -> str:
    if event.get("digest"):
        return str(event["digest"])
    for problem in event.get("problems") or []:
        if isinstance(problem, dict) and problem.get("location"):
            return str(problem["location"])
    return record.origin.location


def _id(location: str, event: dict[str, Any]) -> str:
    window = (event.get("window_start"), event.get("window_end"))
    if not any(window):  # a check without a window: its verification time
        window = (event.get("verified_at"), None)
    key = "\x1f".join(str(x or "") for x in (location, event.get("verdict"), *window))
    return hash_id(key.encode()).decode("ascii")


def _timestamp(record: Record, event: dict[str, Any]) -> str:
    t = record.routing.event_time
    if t is None and isinstance(event.get("verified_at"), str):
        try:
            t = dt.datetime.fromisoformat(event["verified_at"])
        except ValueError:
            t = None
    return iso_utc(t or dt.datetime.now(dt.UTC))


def _message(event: dict[str, Any], location: str) -> str:
    kinds = sorted({str(p.get("kind")) for p in event.get("problems") or [] if isinstance(p, dict)})
    text = f"{'CloudTrail digest ' if event.get('digest') else ''}{location}: {event.get('verdict')}"
    if kinds:
        text += f" ({', '.join(kinds)})"
    if event.get("chain") in ("restart", "broken"):
        text += f"; chain {event['chain']}"
    return text


def integrity_document(
    record: Record, detections: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(_id, document)`` of one integrity event."""
    # Not cached on the record: a batch should not keep every parsed document alive.
    event = record.document() if record.modified else orjson.loads(record.raw)
    if not isinstance(event, dict):
        raise TypeError("integrity event is not a JSON object")
    location = _location(record, event)
    valid = event.get("verdict") == "valid"
    alert = not valid or event.get("chain") in ("restart", "broken")
    cloud: dict[str, Any] = {"provider": "aws"}
    if event.get("account"):
        cloud["account"] = {"id": str(event["account"])}
    if event.get("region"):
        cloud["region"] = str(event["region"])
    ours: dict[str, Any] = {"integrity": event}
    if detections:
        ours.update(detections)
    doc = {
        "@timestamp": _timestamp(record, event),
        "message": _message(event, location),
        "event": {
            "kind": "alert" if alert else "event",
            "outcome": "success" if valid else "failure",
            "action": "cloudtrail-integrity-check",
        },
        "cloud": cloud,
        "trailrelay": ours,
    }
    return _id(location, event), doc
