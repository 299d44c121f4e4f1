"""``trailrelay canary``: one marked synthetic StopLogging event through one sink, timed end to end.

The canary goes through the configured pipeline for that sink exactly as a real event would:
detection (it must be tagged, so it takes the fast path), the global ``[filter]``, the sink's
own filter and privacy profile, then a :class:`~trailrelay.pipeline.delivery.SinkRunner`, so
retries, backoff and dead letters behave as in ``trailrelay forward``. When the sink's plugin
offers ``searcher(config)`` (see :class:`~trailrelay.contract.Searcher`), the SIEM is then
searched for the event until it is found or the timeout passes, and the seconds from sending to
searchable are reported: the "did my SIEM see it within 5 minutes" check, automated.

The event is easy to recognise and to exclude from real alerting: its ``eventID`` starts with
``trailrelay-canary-``, its ``userAgent`` with ``trailrelay-canary/``, it comes from
``192.0.2.1`` (TEST-NET-1, never routed), names the trail ``trailrelay-canary`` and carries
``additionalEventData.trailrelayCanary = true``. No AWS API is called.

Exit status: 0 delivered (and found, where the sink can search); 1 the canary failed (filtered,
not tagged, refused, not delivered, not searchable in time, or every search until the timeout
failed); 2 configuration error; 3 the sink failed fatally (bad credentials, wrong endpoint).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import orjson

from trailrelay import __version__
from trailrelay.cli.logs import setup_logging
from trailrelay.config import Config, load_config
from trailrelay.contract import Searcher, SinkConfig
from trailrelay.errors import ConfigError, FatalSinkError, InputError, TrailrelayError
from trailrelay.helpers import scrub
from trailrelay.pipeline.metrics import Metrics
from trailrelay.plugins import load_sink
from trailrelay.record import Origin, Record
from trailrelay.settings import secret_values
from trailrelay.sinks.observed import ObservedSink
from trailrelay.transforms.filters import RecordFilter

__all__ = [
    "CANARY_EVENT_PREFIX",
    "CANARY_USER_AGENT",
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_FATAL",
    "CanaryReport",
    "canary",
    "canary_event",
    "canary_record",
    "run_canary",
]

log = logging.getLogger("trailrelay.canary")

CANARY_EVENT_PREFIX = "trailrelay-canary-"
"""Every canary's ``eventID`` starts with this."""
CANARY_USER_AGENT = "trailrelay-canary"
"""Every canary's ``userAgent`` starts with this (then ``/<version>``): the field to filter on."""
CANARY_SOURCE_IP = "192.0.2.1"
"""TEST-NET-1 (RFC 5737): documentation only, never routed."""
DEFAULT_ACCOUNT = "123456789012"
"""The account id AWS's own documentation uses in examples."""

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_FATAL = 3


def canary_event(
    *, now: dt.datetime | None = None, account: str = DEFAULT_ACCOUNT, region: str = "us-east-1"
) -> dict[str, Any]:
    """A CloudTrail StopLogging record, clearly marked as trailrelay's synthetic canary."""
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return {
        "eventVersion": "1.11",
        "userIdentity": {
            "type": "IAMUser",
            "principalId": "AIDATRAILRELAYCANARY",
            "arn": f"arn:aws:iam::{account}:user/trailrelay-canary",
            "accountId": account,
            "userName": "trailrelay-canary",
        },
        "eventTime": moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "cloudtrail.amazonaws.com",
        "eventName": "StopLogging",
        "awsRegion": region,
        "sourceIPAddress": CANARY_SOURCE_IP,
        "userAgent": f"{CANARY_USER_AGENT}/{__version__}",
        "requestParameters": {"name": "trailrelay-canary"},
        "responseElements": None,
        "additionalEventData": {
            "trailrelayCanary": True,
            "note": "synthetic event sent by `trailrelay canary` to test delivery; no AWS API was called",
        },
        "requestID": str(uuid.uuid4()),
        "eventID": f"{CANARY_EVENT_PREFIX}{uuid.uuid4()}",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }


def canary_record(event: dict[str, Any]) -> Record:
    """The canary event as a pipeline record (origin ``canary``)."""
    return Record.from_bytes(orjson.dumps(event), Origin("canary", "trailrelay-canary"))


@dataclass
class CanaryReport:
    """What happened to one canary, for a line-per-fact summary or ``--json``."""

    sink: str
    sink_type: str
    event_id: str
    event_time: str
    detections: list[dict[str, str]] = field(default_factory=list)
    """The tags detection gave the canary (rule_id, title, severity, technique)."""
    outcome: str = "not sent"
    """``delivered``, ``duplicate``, ``rejected``, ``not delivered``, ``filtered`` or ``not sent``."""
    delivery_seconds: float | None = None
    search: str = "not run"
    """``found``, ``not found``, ``error``, ``unavailable`` (the connector cannot search),
    ``not configured`` (it could, given more settings) or ``not run``."""
    searchable_seconds: float | None = None
    indexed_at: str | None = None
    reason: str | None = None
    notes: list[str] = field(default_factory=list)
    exit_code: int = 0

    @property
    def ok(self) -> bool:
        """True when the canary did everything it could and in time."""
        return self.exit_code == 0

    def fail(self, reason: str, code: int = EXIT_FAILED) -> CanaryReport:
        """Record the first failure (later ones are notes) and return self."""
        if self.reason is None:
            self.reason, self.exit_code = reason, code
        else:
            self.notes.append(reason)
        return self

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "ok": self.ok,
            "sink": self.sink,
            "type": self.sink_type,
            "event_id": self.event_id,
            "event_time": self.event_time,
            "rules": [d["rule_id"] for d in self.detections],
            "detections": self.detections,
            "outcome": self.outcome,
            "delivery_seconds": _round(self.delivery_seconds),
            "search": self.search,
            "searchable_seconds": _round(self.searchable_seconds),
            "end_to_end_seconds": _round(self.searchable_seconds),
            "indexed_at": self.indexed_at,
            "reason": self.reason,
            "notes": self.notes,
        }

    def lines(self) -> list[str]:
        """The human summary, one fact per line."""
        out = [f"canary {self.event_id} -> sink {self.sink} ({self.sink_type})"]
        out.extend(
            f"  detection: {d['title']} ({d['severity']}, rule {d['rule_id']}): fast path"
            for d in self.detections
        )
        if not self.detections:
            out.append("  detection: not tagged")
        if self.delivery_seconds is not None:
            out.append(f"  delivery: {self.outcome} after {self.delivery_seconds:.2f}s")
        else:
            out.append(f"  delivery: {self.outcome}")
        if self.search == "found":
            out.append(f"  search: found (indexed at {self.indexed_at})")
            out.append(f"  end-to-end: {self.searchable_seconds:.2f}s (send -> searchable)")
        else:
            out.append(f"  search: {self.search}")
        out.extend(f"  note: {n}" for n in self.notes)
        out.append("OK" if self.ok else f"FAILED: {self.reason}")
        return out


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


class _Settled:
    """Stands in for the pipeline's ticket: says when the canary's delivery is final."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.event = threading.Event()
        self.at: float | None = None
        self.failure: str | None = None

    def finish(self, n: int = 1) -> None:  # noqa: ARG002 - the ticket protocol
        """A final outcome (delivered, duplicate, or rejected and dead-lettered)."""
        self.at = self._clock()
        self.event.set()

    def fail(self, reason: str) -> None:
        """Delivery was abandoned (timeout, or the sink stopped)."""
        self.failure = self.failure or reason
        self.at = self._clock()
        self.event.set()


def _sink_config(config: Config, name: str | None) -> SinkConfig:
    names = [s.display_name for s in config.sinks]
    if name is None:
        if len(config.sinks) == 1:
            return config.sinks[0]
        raise ConfigError(f"the config has several sinks ({', '.join(names)}); choose one with --sink NAME")
    for sc in config.sinks:
        if sc.display_name == name:
            return sc
    raise ConfigError(f"no sink named {name!r} in the config (sinks: {', '.join(names)})")


def _dropped_by(record_filter: RecordFilter) -> str:
    return ", ".join(repr(k) for k, v in record_filter.dropped.items() if v) or "?"


def run_canary(
    config: Config,
    sink_name: str | None = None,
    *,
    timeout: float = 300.0,
    poll_interval: float = 5.0,
    account: str = DEFAULT_ACCOUNT,
    region: str = "us-east-1",
    backoff_base: float = 0.5,
) -> CanaryReport:
    """Send one canary through one configured sink and, where possible, wait until it is searchable.

    Raises ConfigError for a sink name that is not in the config; everything else that can go
    wrong is in the report (with its exit code).
    """
    # Loaded here, not at import: they pull in pySigma and boto3, which `trailrelay --help` need not.
    from trailrelay.pipeline.build import build_transforms  # noqa: PLC0415
    from trailrelay.privacy import build_pseudonymizers  # noqa: PLC0415

    sc = _sink_config(config, sink_name)
    name = sc.display_name
    event = canary_event(account=account, region=region)
    record = canary_record(event)
    event_id = str(event["eventID"])
    report = CanaryReport(name, sc.type, event_id, str(event["eventTime"]))

    transforms, record_filter, _tagger = build_transforms(config)
    for transform in transforms:
        if transform(record) is None:
            report.outcome = "filtered"
            return report.fail(
                f"the global [filter] drops the canary (rule {_dropped_by(record_filter)}); a StopLogging "
                "event would not reach any sink"
            )
    report.detections = [t.as_dict() for t in record.tags]
    if not record.tags:
        report.fail(
            "detection did not tag the canary: StopLogging would not take the fast path (is [detection] "
            "pack = false without rules that match it?)"
        )
    if sc.filter.rules or sc.filter.default == "drop":
        sink_filter = RecordFilter(sc.filter)
        if not sink_filter.keep(record):
            report.outcome = "filtered"
            return report.fail(f"the sink's filter drops the canary (rule {_dropped_by(sink_filter)})")
    if config.privacy is not None:
        names = [s.display_name for s in config.sinks]
        privacy = build_pseudonymizers(config.privacy, names, config.base_dir)
        if name in privacy:
            try:
                record = privacy[name].apply(record)
            except InputError as exc:
                report.outcome = "not sent"
                return report.fail(f"the sink's privacy profile cannot process the canary: {exc}")
            if record.event_id != event_id:
                report.outcome = "not sent"
                return report.fail(
                    "the sink's privacy profile changes eventID; the canary could not be found"
                )
            report.notes.append(f"privacy profile {privacy[name].name!r} applied")

    started = _deliver(config, sc, record, report, timeout=timeout, backoff_base=backoff_base)
    if started is not None:
        _search(sc, report, started=started, deadline=started + timeout, poll_interval=poll_interval)
    return report


def _deliver(
    config: Config,
    sc: SinkConfig,
    record: Record,
    report: CanaryReport,
    *,
    timeout: float,
    backoff_base: float,
) -> float | None:
    """Send the record through a SinkRunner; the monotonic send time once the sink took it, else None."""
    from trailrelay.pipeline.build import build_dead_letters, build_sink  # noqa: PLC0415
    from trailrelay.pipeline.delivery import SinkRunner  # noqa: PLC0415

    name = sc.display_name
    try:
        sink = ObservedSink(build_sink(sc), secret_values(sc))
        sink.open()
    except FatalSinkError as exc:
        report.fail(f"the sink cannot start: {exc}", EXIT_FATAL)
        return None
    except TrailrelayError as exc:
        report.fail(f"the sink cannot be built: {exc}", EXIT_CONFIG)
        return None
    metrics = Metrics()
    stop = threading.Event()
    fatal: list[str] = []

    def on_fatal(_sink: str, exc: FatalSinkError) -> None:
        fatal.append(str(exc))
        stop.set()

    dead_letters = build_dead_letters(config)
    runner = SinkRunner(
        name,
        sink,
        dead_letters=dead_letters,
        metrics=metrics,
        stop=stop,
        on_fatal=on_fatal,
        max_retry_seconds=sc.max_retry_seconds,
        backoff_base=backoff_base,
        max_age=sc.batch_seconds,
        secrets=secret_values(sc),
    )
    clock = time.monotonic
    settled = _Settled(clock)
    record.ticket = settled
    started = clock()
    try:
        runner.put(record)
        if not settled.event.wait(timeout):
            runner.abandon_after(0.0)  # stop retrying; the record is released, not dead-lettered
        runner.close()
    finally:
        try:
            sink.close()
        except Exception as exc:  # a sink that cannot flush on close must not hide the report
            report.notes.append(f"closing the sink failed: {type(exc).__name__}: {exc}")
        dead_letters.close()
    if settled.at is not None and settled.failure is None:
        report.delivery_seconds = settled.at - started
    if fatal:
        report.outcome = "not delivered"
        report.fail(f"the sink stopped: {fatal[0]}", EXIT_FATAL)
        return None
    if metrics.delivered[name] or metrics.duplicates[name]:
        report.outcome = "delivered" if metrics.delivered[name] else "duplicate"
        return started
    if metrics.rejected[name]:
        report.outcome = "rejected"
        where = config.dead_letter.s3_uri or str(config.dead_letter_path())
        report.fail(f"the SIEM refused the canary ({sink.last}); dead-lettered in {where}")
        return None
    report.outcome = "not delivered"
    last = f"; last answer: {sink.last}" if sink.last else ""
    report.fail(f"not delivered within {timeout:g}s{last}")
    return None


def _search(
    sc: SinkConfig, report: CanaryReport, *, started: float, deadline: float, poll_interval: float
) -> None:
    """Poll the sink's searcher (if its plugin has one) until the canary is found or time is up."""
    factory = getattr(load_sink(sc.type), "searcher", None)
    if factory is None:
        report.search = "unavailable"
        report.notes.append(
            f"the {sc.type} connector cannot search; look for eventID {report.event_id} in the destination"
        )
        return
    try:
        searcher: Searcher = factory(sc)
    except ConfigError as exc:
        report.search = "not configured"
        report.notes.append(f"search not configured: {exc}")
        return
    since = dt.datetime.fromisoformat(report.event_time)
    secrets = secret_values(sc)  # a searcher's message may quote a credential it was not told of
    last_error: str | None = None
    try:
        while True:
            failed = False
            try:
                found = searcher.find(report.event_id, since)
            except FatalSinkError as exc:
                report.search = "error"
                report.fail(scrub(f"searching failed: {exc}", secrets), EXIT_FATAL)
                return
            except Exception as exc:  # transient: keep polling until the deadline
                last_error = scrub(
                    f"{type(exc).__name__}: {exc}" if not isinstance(exc, TrailrelayError) else str(exc),
                    secrets,
                )
                log.warning("canary search failed (will retry): %s", last_error)
                found, failed = None, True
            now = time.monotonic()
            if found is not None:
                report.search = "found"
                report.searchable_seconds = now - started
                report.indexed_at = found.astimezone(dt.UTC).isoformat(timespec="milliseconds")
                return
            if now >= deadline:
                if failed:  # the last search did not run: nothing was checked, say so
                    report.search = "error"
                    report.fail(f"delivered, but the search itself failed until the timeout: {last_error}")
                    return
                report.search = "not found"
                suffix = f" (last error: {last_error})" if last_error else ""
                report.fail(f"delivered but not searchable within the timeout{suffix}")
                return
            time.sleep(max(0.0, min(poll_interval, deadline - now)))
    finally:
        close = getattr(searcher, "close", None)
        if callable(close):
            close()


@click.command("canary")
@click.option("-c", "--config", "config_path", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--sink", "sink_name", help="The sink to test (its name; optional when there is one sink).")
@click.option(
    "--timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    help="Seconds for delivery and search together.",
)
@click.option(
    "--poll-interval",
    default=5.0,
    show_default=True,
    type=click.FloatRange(min=0.01),
    help="Seconds between searches.",
)
@click.option(
    "--account", default=DEFAULT_ACCOUNT, show_default=True, help="recipientAccountId of the canary."
)
@click.option("--region", default="us-east-1", show_default=True, help="awsRegion of the canary.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of lines.")
def canary(  # noqa: PLR0917 - click passes options positionally by name
    config_path: Path,
    sink_name: str | None,
    timeout: float,
    poll_interval: float,
    account: str,
    region: str,
    as_json: bool,
) -> None:
    """Send a marked synthetic StopLogging event through one sink and time it until searchable."""
    setup_logging("text", "WARNING")
    try:
        config = load_config(config_path)
        report = run_canary(
            config, sink_name, timeout=timeout, poll_interval=poll_interval, account=account, region=region
        )
    except ConfigError as exc:
        click.echo(f"config error in {config_path}: {exc}", err=True)
        raise SystemExit(EXIT_CONFIG) from None
    if as_json:
        click.echo(orjson.dumps(report.as_dict()).decode())
    else:
        for line in report.lines():
            click.echo(line)
    raise SystemExit(report.exit_code)
