"""Integrity events as records: one JSON object per digest, tagged when it shows a problem.

The record carries the event's own JSON as raw bytes, with ``origin.kind == "integrity"``
(:data:`~trailrelay.contract.INTEGRITY_KIND`) and routing fields of its own, so it travels the
pipeline like a CloudTrail record; connectors send it natively.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from trailrelay.contract import INTEGRITY_KIND
from trailrelay.record import Origin, Record, RiskTag, Routing

__all__ = [
    "CHAIN_TAG",
    "FAILED_TAG",
    "INTEGRITY_KIND",
    "MAX_PROBLEMS",
    "check_failed_event",
    "integrity_record",
    "integrity_tags",
    "iso",
    "prepared",
]

FAILED_TAG = "trailrelay-integrity-failed"
CHAIN_TAG = "trailrelay-integrity-chain-gap"
MAX_PROBLEMS = 50
"""Problems listed per event (the counts hold the totals); a digest can list thousands of files."""

_TAMPER = frozenset(
    {
        "log-modified",
        "log-missing",
        "log-not-covered",
        "log-misdated",
        "digest-missing",
        "digest-signature-invalid",
        "digest-chain-mismatch",
        "digest-moved",
    }
)
"""Problem kinds that show something was changed or removed (critical), not just unprovable."""
_CHAIN_TITLES = {
    "restart": "CloudTrail digest chain restarted: logging was stopped or log validation turned off",
    "broken": "CloudTrail digest chain broken: a digest is missing or does not match its successor",
    "stopped": (
        "CloudTrail digest chain stopped: no digest for the end of the window (logging stopped or log "
        "validation turned off)"
    ),
}


def integrity_tags(event: dict[str, Any]) -> tuple[RiskTag, ...]:
    """Detection tags for an event whose verdict is not valid or whose chain restarted or broke."""
    tags: list[RiskTag] = []
    verdict = str(event.get("verdict") or "")
    problems = event.get("problems") or []
    kinds = sorted({str(p.get("kind")) for p in problems if isinstance(p, dict)} - {"chain-restart"})
    if verdict != "valid":
        tampered = verdict in _TAMPER or verdict == "missing" or bool(_TAMPER.intersection(kinds))
        what = ", ".join(kinds) or verdict
        tags.append(
            RiskTag(
                FAILED_TAG,
                f"CloudTrail log integrity check failed: {what}",
                "critical" if tampered else "high",
                "T1070" if tampered else None,
            )
        )
    chain = event.get("chain")
    if chain in _CHAIN_TITLES:
        severity = "critical" if chain == "broken" else "high"
        tags.append(RiskTag(CHAIN_TAG, _CHAIN_TITLES[chain], severity, "T1562.008"))
    return tuple(tags)


def integrity_record(event: dict[str, Any]) -> Record:
    """The record that carries one integrity event to the sinks (raw bytes: the event's JSON)."""
    location = str(event.get("digest") or _first_location(event) or event.get("source") or "integrity")
    bucket, key = _split_s3(location)
    record = Record.from_document(event, Origin(INTEGRITY_KIND, location, bucket, key))
    verified = _time(event.get("verified_at"))
    record.routing = Routing(
        event_time=verified,
        event_source="trailrelay",
        event_name="IntegrityCheck",
        event_id=_event_id(event, location),
        recipient_account_id=_text(event.get("account")),
        aws_region=_text(event.get("region")),
        category="Integrity",
    )
    record.tags = integrity_tags(event)
    return record


def _first_location(event: dict[str, Any]) -> str | None:
    for p in event.get("problems") or []:
        if isinstance(p, dict) and p.get("location"):
            return str(p["location"])
    return None


def _event_id(event: dict[str, Any], location: str) -> str:
    """Stable for one event of one check: where, what verdict, which window, when verified."""
    key = "\x1f".join(
        str(event.get(k) or "") for k in ("verdict", "window_start", "window_end", "verified_at")
    )
    return "integrity-" + hashlib.blake2b(f"{location}\x1f{key}".encode(), digest_size=12).hexdigest()


def _split_s3(location: str) -> tuple[str | None, str | None]:
    if not location.startswith("s3://"):
        return None, None
    bucket, _, key = location[5:].partition("/")
    return bucket or None, key or None


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def iso(value: dt.datetime | None) -> str | None:
    """UTC, to the second, as CloudTrail writes times (None stays None)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def prepared(event: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> dict[str, Any]:
    """The event as sent: the check's window added, a long problem list cut (the counts keep totals)."""
    out = dict(event)
    out["window_start"] = iso(start)
    out["window_end"] = iso(end)
    problems = out.get("problems") or []
    if len(problems) > MAX_PROBLEMS:
        out["problems"] = problems[:MAX_PROBLEMS]
        out["problems_omitted"] = len(problems) - MAX_PROBLEMS
    return out


def check_failed_event(source: str, reason: str, now: dt.datetime) -> dict[str, Any]:
    """The event for a check that could not run (bucket unreachable, access denied): alertable too."""
    return {
        "type": "trailrelay:integrity",
        "verdict": "check-failed",
        "chain": None,
        "digest": None,
        "account": None,
        "region": None,
        "trail": None,
        "problems": [{"kind": "check-failed", "severity": "failure", "location": source, "detail": reason}],
        "source": source,
        "verified_at": iso(now),
    }
