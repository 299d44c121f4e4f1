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
handed them through the delivery path ``forward`` and ``canary`` use (retries, indexer
acknowledgements awaited, refusals dead-lettered) and closed. Global and per-sink ``filter``
rules and privacy profiles do not apply (findings name resources, not people).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trailrelay.contract import (
    INTEGRITY_KIND,
    Origin,
    Record,
    RiskTag,
    Routing,
    Sink,
    SinkConfig,
)
from trailrelay.doctor.findings import Finding, Severity
from trailrelay.errors import FatalSinkError, TrailrelayError
from trailrelay.pipeline.metrics import Metrics
from trailrelay.settings import secret_values
from trailrelay.sinks.observed import ObservedSink

if TYPE_CHECKING:
    from trailrelay.config import Config
    from trailrelay.pipeline.deadletter import DeadLetterStore

__all__ = ["EVENT_TYPE", "SendResult", "finding_event", "finding_record", "send_findings"]

EVENT_TYPE = "trailrelay:doctor"
SEND_SECONDS = 120.0
"""How long each sink has to take the findings (retries and acknowledgements included)."""
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
    """Per sink: how many findings were delivered, and why not all were (None: all delivered)."""

    delivered: dict[str, int]
    failures: dict[str, str]

    @property
    def ok(self) -> bool:
        """True when every sink took every finding."""
        return not self.failures


def send_findings(
    events: list[dict[str, Any]],
    config: Config,
    *,
    build: Callable[[SinkConfig], Sink] | None = None,
    timeout: float = SEND_SECONDS,
    backoff_base: float = 0.5,
) -> SendResult:
    """Send every event to every configured sink; say what each sink took.

    Each sink gets the findings through a :class:`~trailrelay.pipeline.delivery.SinkRunner`, as
    in ``trailrelay forward`` and ``canary``: retries with backoff, PENDING outcomes awaited
    (Splunk's indexer acknowledgement), refused findings dead-lettered with the reason. What is
    not final after ``timeout`` seconds is given up on and reported.
    """
    from trailrelay.pipeline.build import build_dead_letters, build_sink  # noqa: PLC0415 - loads sinks

    result = SendResult({}, {})
    dead_letters = build_dead_letters(config)
    where = config.dead_letter.s3_uri or str(config.dead_letter_path())
    n = len(events)
    try:
        for sc in config.sinks:
            name = sc.display_name
            try:
                sink = ObservedSink((build or build_sink)(sc), secret_values(sc))
                sink.open()
            except TrailrelayError as exc:
                result.delivered[name] = 0
                result.failures[name] = f"{type(exc).__name__}: {exc}"
                continue
            try:
                records = [finding_record(e) for e in events]
                delivered, rejected, fatal = _deliver(
                    sc, sink, records, dead_letters, timeout=timeout, backoff_base=backoff_base
                )
            finally:
                sink.close()
            result.delivered[name] = delivered
            if fatal:
                result.failures[name] = fatal
            elif rejected:
                result.failures[name] = f"rejected {rejected} of {n}: {sink.last} (dead-lettered in {where})"
            elif delivered < n:
                last = f"; last answer: {sink.last}" if sink.last else ""
                result.failures[name] = f"{n - delivered} of {n} not delivered within {timeout:g}s{last}"
    finally:
        dead_letters.close()
    return result


def _deliver(
    sc: SinkConfig,
    sink: Sink,
    records: list[Record],
    dead_letters: DeadLetterStore,
    *,
    timeout: float,
    backoff_base: float,
) -> tuple[int, int, str | None]:
    """Hand the records to a SinkRunner and wait until each is final or ``timeout`` passes.

    Returns how many were delivered (or already held), how many were refused (dead-lettered),
    and the error that stopped the sink, if one did.
    """
    from trailrelay.pipeline.delivery import SinkRunner  # noqa: PLC0415 - see send_findings

    name = sc.display_name
    metrics = Metrics()
    fatal: list[str] = []

    def on_fatal(_sink: str, exc: FatalSinkError) -> None:
        fatal.append(f"{type(exc).__name__}: {exc}")

    runner = SinkRunner(
        name,
        sink,
        dead_letters=dead_letters,
        metrics=metrics,
        stop=threading.Event(),
        on_fatal=on_fatal,
        max_retry_seconds=sc.max_retry_seconds,
        backoff_base=backoff_base,
        max_age=sc.batch_seconds,
        secrets=secret_values(sc),
    )
    runner.put_many(records)
    runner.abandon_after(timeout)  # what is not final by then is given up on, not dead-lettered
    runner.close()
    delivered = metrics.delivered[name] + metrics.duplicates[name]
    return delivered, metrics.rejected[name], fatal[0] if fatal else None
