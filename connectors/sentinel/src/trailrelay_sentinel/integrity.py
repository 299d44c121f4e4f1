"""Integrity events ([integrity]: one per CloudTrail digest checked) as ``TrailrelayIntegrity_CL`` rows.

They are not CloudTrail records, so they go through a stream of their own
(``integrity_stream``, default ``Custom-TrailrelayIntegrity``) into a custom table that
``trailrelay sentinel template --integrity`` creates. One list of columns drives the row, the
DCR stream declaration and the table schema, as :mod:`.columns` does for ``AWSCloudTrail``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import orjson

from trailrelay.contract import INTEGRITY_KIND, Record

__all__ = [
    "INTEGRITY_COLUMNS",
    "INTEGRITY_KIND",
    "INTEGRITY_STREAM",
    "INTEGRITY_TABLE",
    "IntegrityColumn",
    "encode_integrity_row",
    "integrity_row",
    "is_integrity",
]

INTEGRITY_STREAM = "Custom-TrailrelayIntegrity"
INTEGRITY_TABLE = "TrailrelayIntegrity_CL"


@dataclass(frozen=True, slots=True)
class IntegrityColumn:
    """One column: name, DCR stream type, and the event field it comes from (a dotted path)."""

    name: str
    type: str
    field: str
    description: str


_C = IntegrityColumn

INTEGRITY_COLUMNS: tuple[IntegrityColumn, ...] = (
    _C("TimeGenerated", "datetime", "verified_at", "When the digest was checked."),
    _C("EventType", "string", "type", "Always trailrelay:integrity."),
    _C(
        "Verdict",
        "string",
        "verdict",
        "valid, invalid, missing (a deleted digest), log-not-covered (a log file no digest lists), "
        "log-misdated (one named in the future or not of its day folder), window-not-covered (a chain's "
        "digests do not cover the window), nothing-verified (no digest found) or check-failed (the check "
        "could not run).",
    ),
    _C(
        "Chain",
        "string",
        "chain",
        "How the digest joins its chain: start, linked, continues, restart, broken; stopped: the "
        "chain's digests end before the window does.",
    ),
    _C("Digest", "string", "digest", "s3:// URI of the digest."),
    _C("Account", "string", "account", "AWS account of the digest."),
    _C("Region", "string", "region", "AWS region of the digest."),
    _C("Trail", "string", "trail", "Trail name."),
    _C("HomeRegion", "string", "home_region", "The trail's home region."),
    _C("Organization", "string", "organization", "AWS Organizations id of an organization trail."),
    _C("Backfill", "boolean", "backfill", "A backfill digest (late log files)."),
    _C("DigestStart", "datetime", "digest_start", "Start of the hour the digest covers."),
    _C("DigestEnd", "datetime", "digest_end", "End of the hour the digest covers."),
    _C(
        "Signature",
        "string",
        "signature",
        "valid, signature-invalid, signature-missing, unknown-key, missing.",
    ),
    _C("LogFiles", "int", "counts.log_files", "Log files the digest lists."),
    _C("ValidLogFiles", "int", "counts.valid", "Listed log files forwarded unchanged."),
    _C("ModifiedLogFiles", "int", "counts.modified", "Listed log files that changed."),
    _C("MissingLogFiles", "int", "counts.missing", "Listed log files that are gone."),
    _C("UnreadableLogFiles", "int", "counts.unreadable", "Listed log files not checkable."),
    _C("NotForwardedLogFiles", "int", "counts.not_forwarded", "Listed log files not forwarded yet."),
    _C("Problems", "dynamic", "problems", "What was found: [{kind, severity, location, detail}]."),
    _C("ProblemsOmitted", "int", "problems_omitted", "Problems left out of a long list."),
    _C("StoreLocation", "string", "source", "The bucket (prefix) or mirror that was checked."),
    _C("WindowStart", "datetime", "window_start", "Start of the checked window."),
    _C("WindowEnd", "datetime", "window_end", "End of the checked window."),
    _C(
        "TrailrelayDetections",
        "dynamic",
        "",
        "Detection tags: [{rule_id, title, severity, technique}] when the verdict is not valid or the "
        "chain restarted or broke.",
    ),
)


def is_integrity(record: Record) -> bool:
    """True for an integrity event (not a CloudTrail record)."""
    return record.origin.kind == INTEGRITY_KIND


def _at(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _value(column: IntegrityColumn, value: Any) -> Any:
    if value is None:
        return None
    if column.type == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    if column.type == "boolean":
        return value if isinstance(value, bool) else None
    if column.type == "dynamic":
        return value if isinstance(value, (list, dict)) else None
    return str(value)


def integrity_row(record: Record) -> dict[str, Any]:
    """The row of one integrity event (absent values left out, like the AWSCloudTrail rows)."""
    event = record.document() if record.modified else orjson.loads(record.raw)
    if not isinstance(event, dict):
        raise TypeError("integrity event is not a JSON object")
    row: dict[str, Any] = {}
    for column in INTEGRITY_COLUMNS:
        if column.name == "TrailrelayDetections":
            if record.tags:
                row[column.name] = [t.as_dict() for t in record.tags]
            continue
        value = _value(column, _at(event, column.field))
        if value is not None:
            row[column.name] = value
    if "TimeGenerated" not in row:  # a table row needs it; a check's events always have it
        t = record.routing.event_time or dt.datetime.now(dt.UTC)
        row["TimeGenerated"] = t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return row


def encode_integrity_row(record: Record) -> bytes:
    """The row as JSON bytes."""
    return orjson.dumps(integrity_row(record))
