"""Findings as events in the configured sinks, the way integrity events travel.

Each finding becomes one JSON event with ``type = "trailrelay:doctor"`` carried by a record of
origin kind :data:`~trailrelay.contract.INTEGRITY_KIND`, so every connector sends it natively to
its integrity destination (Splunk ``sourcetype=trailrelay:integrity``, Elastic
``logs-trailrelay.integrity-*``, Sentinel ``TrailrelayIntegrity_CL``) without knowing about
doctor. The event has the integrity event's fields (``verdict`` = ``doctor:<check>``, one entry
in ``problems`` with the severity, resource and fix; ``verified_at``; ``account``) plus the
finding's own (``check``, ``severity``, ``title``, ``why``, ``fix``, ``checked``). Critical and
high findings carry a detection tag, so SIEM alerts on integrity detections fire on them.

They are sent directly, not through a pipeline: a handful of events per run, each sink opened,
sent to (a retried outcome is tried again a few times) and closed. Global and per-sink
``filter`` rules and privacy profiles do not apply (findings name resources, not people).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trailrelay import __version__
from trailrelay.contract import (
    INTEGRITY_KIND,
    Batch,
    Origin,
    Record,
    RiskTag,
    Routing,
    Sink,
    SinkConfig,
    SinkContext,
    Status,
)
from trailrelay.doctor.findings import Finding, Severity
from trailrelay.errors import TrailrelayError

if TYPE_CHECKING:
    from trailrelay.config import Config

__all__ = ["EVENT_TYPE", "SendResult", "finding_event", "finding_record", "send_findings"]

EVENT_TYPE = "trailrelay:doctor"
ATTEMPTS = 4
TECHNIQUE = {"trail-", "bucket-", "log-file-", "global-service-", "management-", "digest-", "no-trail"}


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def finding_event(
    finding: Finding, *, checked_at: dt.datetime, account: str | None = None, organization: str | None = None
) -> dict[str, Any]:
    """The event for one finding (integrity-event shaped, plus the finding's fields)."""
    region = finding.resource.split(":")[3] if finding.resource.startswith("arn:aws") else None
    return {
        "type": EVENT_TYPE,
        "verdict": f"doctor:{finding.check}",
        "chain": None,
        "digest": None,
        "account": account,
        "region": region or None,
        "trail": finding.resource if ":trail/" in finding.resource else None,
        "organization": organization,
        "check": finding.check,
        "severity": finding.severity.label,
        "checked": finding.checked,
        "title": finding.title,
        "resource": finding.resource,
        "why": finding.why,
        "fix": finding.fix,
        "details": finding.details,
        "problems": [
            {
                "kind": finding.check,
                "severity": finding.severity.label,
                "location": finding.resource,
                "detail": f"{finding.title}. Fix: {finding.fix}",
            }
        ],
        "source": "trailrelay doctor",
        "verified_at": _iso(checked_at),
    }


def finding_record(event: dict[str, Any]) -> Record:
    """The record that carries one finding event to the sinks."""
    location = str(event["resource"])
    record = Record.from_document(event, Origin(INTEGRITY_KIND, location))
    key = "\x1f".join(str(event.get(k) or "") for k in ("check", "resource", "verified_at"))
    record.routing = Routing(
        event_time=dt.datetime.fromisoformat(str(event["verified_at"])),
        event_source="trailrelay",
        event_name="PostureCheck",
        event_id="doctor-" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest(),
        recipient_account_id=event.get("account"),
        aws_region=event.get("region"),
        category="Integrity",
    )
    severity = Severity.parse(str(event["severity"]))
    if severity >= Severity.HIGH:
        check = str(event["check"])
        technique = "T1562.008" if any(check.startswith(p) for p in TECHNIQUE) else None
        record.tags = (
            RiskTag(
                f"trailrelay-doctor-{check}",
                f"CloudTrail posture: {event['title']}",
                severity.label,
                technique,
            ),
        )
    return record


@dataclass
class SendResult:
    """Per sink: how many findings were delivered, and the first failure (None: all delivered)."""

    delivered: dict[str, int]
    failures: dict[str, str]

    @property
    def ok(self) -> bool:
        """True when every sink took every finding."""
        return not self.failures


def _build(config: SinkConfig) -> Sink:
    from trailrelay.plugins import installed_sinks, load_sink  # noqa: PLC0415 - entry points load slowly

    plugin = load_sink(config.type)
    dist = installed_sinks()[config.type]
    name = config.display_name
    context = SinkContext(
        name=name,
        logger=logging.getLogger(f"trailrelay.sinks.{name}"),
        user_agent=f"trailrelay/{__version__} {dist.distribution}/{dist.version}",
    )
    return plugin.create(config, context)


def send_findings(
    events: list[dict[str, Any]],
    config: Config,
    *,
    build: Callable[[SinkConfig], Sink] = _build,
    sleep: Callable[[float], None] = time.sleep,
) -> SendResult:
    """Send every event to every configured sink; say what each sink took."""
    result = SendResult({}, {})
    for sc in config.sinks:
        name = sc.display_name
        records = [finding_record(e) for e in events]
        try:
            sink = build(sc)
            sink.open()
            try:
                delivered, failure = _send(sink, records, sleep)
            finally:
                sink.close()
        except TrailrelayError as exc:
            delivered, failure = 0, f"{type(exc).__name__}: {exc}"
        result.delivered[name] = delivered
        if failure:
            result.failures[name] = failure
    return result


def _send(sink: Sink, records: list[Record], sleep: Callable[[float], None]) -> tuple[int, str | None]:
    limit = max(1, sink.limits.max_records)
    delivered = 0
    pending = records
    for attempt in range(1, ATTEMPTS + 1):
        retry: list[Record] = []
        reasons: list[str] = []
        for i in range(0, len(pending), limit):
            chunk = pending[i : i + limit]
            outcomes = sink.send(Batch(chunk, attempt))
            for record, outcome in zip(chunk, outcomes, strict=True):
                if outcome.status in (Status.DELIVERED, Status.DUPLICATE):
                    delivered += 1
                elif outcome.status is Status.RETRY:
                    retry.append(record)
                    reasons.append(outcome.reason or "retry")
                else:
                    return delivered, f"rejected: {outcome.reason}"
        if not retry:
            return delivered, None
        pending = retry
        if attempt < ATTEMPTS:
            sleep(min(5.0, 0.5 * 2**attempt))
    return delivered, f"not delivered after {ATTEMPTS} attempts: {reasons[-1]}"
