"""Integrity events ([integrity]: one per CloudTrail digest checked) as Elasticsearch documents.

They are not CloudTrail records, so they go to a data stream of their own,
``logs-trailrelay.integrity-<namespace>`` (``integrity_data_stream``), in both modes::

    {"@timestamp": "<verified_at>", "message": "CloudTrail digest s3://...: invalid (log-modified)",
     "event": {"kind": "alert", "dataset": "trailrelay.integrity", "module": "trailrelay",
               "action": "cloudtrail-integrity-check", "outcome": "failure"},
     "cloud": {"provider": "aws", "account": {"id": "..."}, "region": "..."},
     "organization": {"id": "o-..."}, "data_stream": {...}, "tags": [...],
     "trailrelay": {"integrity": {<the event as trailrelay emits it>}},
     "rule": {...}, "threat": {...}}                       # when a detection tag is attached

The event sits under ``trailrelay.integrity`` rather than at the root because two of its fields
(``source``, a string, and ``organization``) are objects in ECS: at the root they would clash
with ``source.*`` and ``organization.*`` in any ``logs-*`` data view. ``event.kind`` is
``alert`` when the verdict is not ``valid`` or the chain restarted or broke, else ``event``.
The ``_id`` is a hash of the digest (or finding) location, the verdict and the checked window,
so a re-sent event is a 409 (DUPLICATE) while every periodic check is kept.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from trailrelay.contract import INTEGRITY_KIND, Record, hash_id
from trailrelay_elastic.config import Target

__all__ = ["DATASET", "INTEGRITY_KIND", "integrity_doc_id", "integrity_document", "is_integrity"]

DATASET = "trailrelay.integrity"
TAGS = ["forwarded", "trailrelay-integrity"]


def is_integrity(record: Record) -> bool:
    """True for an integrity event (not a CloudTrail record)."""
    return record.origin.kind == INTEGRITY_KIND


def _event(record: Record) -> dict[str, Any]:
    # Not cached on the record: a batch should not keep every parsed document alive.
    event = record.document() if record.modified else orjson.loads(record.raw)
    if not isinstance(event, dict):
        raise TypeError("integrity event is not a JSON object")
    return event


def _location(record: Record, event: dict[str, Any]) -> str:
    if event.get("digest"):
        return str(event["digest"])
    for problem in event.get("problems") or []:
        if isinstance(problem, dict) and problem.get("location"):
            return str(problem["location"])
    return record.origin.location


def integrity_doc_id(record: Record, event: dict[str, Any] | None = None) -> str:
    """``_id``: BLAKE2b of the digest (or finding) location, the verdict and the checked window."""
    event = event if event is not None else _event(record)
    window = (event.get("window_start"), event.get("window_end"))
    if not any(window):  # an event from a check without a window: its verification time
        window = (event.get("verified_at"), None)
    key = "\x1f".join(str(x or "") for x in (_location(record, event), event.get("verdict"), *window))
    return hash_id(key.encode()).decode("ascii")


def _timestamp(record: Record, event: dict[str, Any]) -> str:
    t = record.routing.event_time
    if t is None:
        value = event.get("verified_at")
        try:
            t = dt.datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            t = None
    t = t or dt.datetime.now(dt.UTC)
    t = t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def _message(event: dict[str, Any], location: str) -> str:
    verdict = event.get("verdict")
    kinds = sorted({str(p.get("kind")) for p in event.get("problems") or [] if isinstance(p, dict)})
    chain = event.get("chain")
    what = f"CloudTrail digest {location}" if event.get("digest") else location
    text = f"{what}: {verdict}"
    if kinds:
        text += f" ({', '.join(kinds)})"
    if chain in ("restart", "broken"):
        text += f"; chain {chain}"
    return text


def integrity_document(
    record: Record, target: Target, detections: dict[str, Any] | None = None
) -> tuple[str, dict[str, Any]]:
    """``(_id, document)`` of one integrity event for ``target``."""
    event = _event(record)
    location = _location(record, event)
    alert = event.get("verdict") != "valid" or event.get("chain") in ("restart", "broken")
    doc: dict[str, Any] = {
        "@timestamp": _timestamp(record, event),
        "message": _message(event, location),
        "event": {
            "kind": "alert" if alert else "event",
            "dataset": target.data_stream[1] if target.data_stream else DATASET,
            "module": "trailrelay",
            "action": "cloudtrail-integrity-check",
            "outcome": "success" if event.get("verdict") == "valid" else "failure",
        },
        "tags": list(TAGS),
    }
    cloud: dict[str, Any] = {"provider": "aws"}
    if event.get("account"):
        cloud["account"] = {"id": str(event["account"])}
    if event.get("region"):
        cloud["region"] = str(event["region"])
    doc["cloud"] = cloud
    if event.get("organization"):
        doc["organization"] = {"id": str(event["organization"])}
    if target.data_stream is not None:
        kind, dataset, namespace = target.data_stream
        doc["data_stream"] = {"type": kind, "dataset": dataset, "namespace": namespace}
    doc["trailrelay"] = {"integrity": event}
    if detections:
        doc["trailrelay"]["detections"] = detections["trailrelay"]["detections"]
        doc.update({k: v for k, v in detections.items() if k != "trailrelay"})
    return integrity_doc_id(record, event), doc
