"""Integrity events while forwarding: digest-chain checks whose verdicts go to every sink.

With ``[integrity] enabled = true`` the forwarder keeps the SHA-256 of every object it forwards
(``[state] hash_objects`` is implied) and checks CloudTrail's signed digests against those
hashes: periodically on an SQS source (each check covers the digests that ended in the last
``lookback`` seconds), and once at the end on a listing source (the source's window) or on an SQS
source run with ``--once``. Each digest yields one event (``trailrelay.integrity.events``); it
becomes a :class:`~trailrelay.record.Record` with ``origin.kind == "integrity"`` that travels
through the pipeline as a unit of work of its own: no CloudTrail transforms or filters, the same
batching, retries, dead letters and acknowledgement as CloudTrail records. Events whose verdict
is not ``valid``, or whose chain restarted or broke, carry a detection tag and take the fast
path. Connectors send them natively (Splunk sourcetype, Elastic data stream, Sentinel table).

A check compares each log file a digest lists with the hash kept when it was forwarded, and
reads from the bucket only the files that were never forwarded (so a file deleted or changed
before the forwarder saw it is named, not just counted as not forwarded). Log files too young
to be digested are left to the next check. In a ``--workers`` fleet every worker keeps hashes
and only worker 0 runs checks.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from trailrelay.contract import INTEGRITY_KIND
from trailrelay.errors import ConfigError
from trailrelay.record import Origin, Record, RiskTag, Routing
from trailrelay.sources.base import ObjectDone, Source, Work

if TYPE_CHECKING:
    from trailrelay.config import Config
    from trailrelay.integrity.digests import LogFileEntry
    from trailrelay.integrity.keys import KeyFetcher, KeyRing, LoadedKey, MirrorKeys
    from trailrelay.integrity.logcheck import ForwardedHashes, LogResult
    from trailrelay.integrity.report import VerifyReport
    from trailrelay.integrity.store import TrailStore
    from trailrelay.pipeline.runner import Pipeline

__all__ = [
    "CHAIN_TAG",
    "DIGEST_LAG_SECONDS",
    "FAILED_TAG",
    "INTEGRITY_KIND",
    "SQS_HASHES_SOURCE",
    "CheckFn",
    "IntegrityChecks",
    "IntegrityConfig",
    "check_failed_event",
    "install_integrity_checks",
    "integrity_record",
    "integrity_tags",
]

log = logging.getLogger("trailrelay.integrity")

DIGEST_LAG_SECONDS = 7200.0
"""CloudTrail digests a log file within about two hours (``trailrelay.integrity.verifier.DIGEST_LAG``)."""
FAILED_TAG = "trailrelay-integrity-failed"
CHAIN_TAG = "trailrelay-integrity-chain-gap"
SQS_HASHES_SOURCE = "integrity:forwarded"
"""Checkpoint ``source`` under which the hashes of objects forwarded from SQS are kept."""
MAX_PROBLEMS = 50
"""Problems listed per event (the counts hold the totals); a digest can list thousands of files."""
EVENTS_PER_UNIT = 500
"""Integrity events per unit of work: a year of digests never sits in memory at once."""
PRUNE_MARGIN = 86400.0
"""Kept SQS hashes older than ``lookback`` plus this are deleted after each check."""

_TAMPER = frozenset(
    {
        "log-modified",
        "log-missing",
        "log-not-covered",
        "digest-missing",
        "digest-signature-invalid",
        "digest-chain-mismatch",
        "digest-moved",
    }
)
"""Problem kinds that show something was changed or removed (critical), not just unprovable."""


class IntegrityConfig(BaseModel):
    """``[integrity]``: check CloudTrail's digests while forwarding and send one event per digest."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    enabled: bool = Field(default=False, description="Check digests and send integrity events.")
    every: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds between checks on an SQS source (a listing source is checked once, when "
        "everything it read is delivered).",
    )
    lookback: float | None = Field(
        default=None,
        gt=0,
        description="Seconds back each periodic check looks: digests that ended in that time, and log "
        "files delivered in it until two hours ago (younger ones are not digested yet). At least "
        "every + 7200 so no digest or log file falls between checks; default every + 7200.",
    )
    bucket: str | None = Field(
        default=None, description="Bucket of the trail's digests; default the S3 source's (required for SQS)."
    )
    prefix: str | None = Field(default=None, description="Key prefix above AWSLogs/; default the source's.")
    region: str | None = Field(default=None, description="Region of the bucket; default the source's.")
    role_arn: str | None = Field(default=None, description="Role to read digests and public keys as.")
    public_keys: dict[str, Path] = Field(
        default_factory=dict,
        description="FINGERPRINT = key file (DER PKCS#1 as ListPublicKeys returns it, or PEM) for "
        "offline checks; with any given, CloudTrail's ListPublicKeys is not called.",
    )
    workers: int = Field(default=4, ge=1, le=64, description="Parallel reads during a check.")

    @model_validator(mode="after")
    def _covering(self) -> IntegrityConfig:
        if self.lookback is not None and self.lookback < self.every + DIGEST_LAG_SECONDS:
            raise ValueError(
                "lookback must be at least every + 7200 seconds, or digests and log files fall "
                "between two checks"
            )
        return self

    @property
    def window_seconds(self) -> float:
        """The lookback of periodic checks, in seconds."""
        return self.lookback if self.lookback is not None else self.every + DIGEST_LAG_SECONDS

    def check_source(self, source: Any) -> None:
        """ConfigError when checks cannot work with this source (which objects, which bucket)."""
        if not self.enabled:
            return
        kind = getattr(source, "type", None)
        if kind not in ("s3", "files", "sqs"):
            raise ConfigError(
                f"integrity: needs an s3, files or sqs source (a {kind} source delivers events, not "
                "the log files CloudTrail's digests sign)"
            )
        if kind == "sqs" and not self.bucket:
            raise ConfigError(
                "integrity.bucket: required with an sqs source (the bucket CloudTrail delivers to)"
            )


# -- events into records ---------------------------------------------------------------------------


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
    if chain in ("restart", "broken"):
        title = (
            "CloudTrail digest chain restarted: logging was stopped or log validation turned off"
            if chain == "restart"
            else "CloudTrail digest chain broken: a digest is missing or does not match its successor"
        )
        tags.append(RiskTag(CHAIN_TAG, title, "high" if chain == "restart" else "critical", "T1562.008"))
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


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None


def _prepared(event: dict[str, Any], start: dt.datetime | None, end: dt.datetime | None) -> dict[str, Any]:
    """The event as sent: the check's window added, a long problem list cut (the counts keep totals)."""
    out = dict(event)
    out["window_start"] = _iso(start)
    out["window_end"] = _iso(end)
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
        "verified_at": _iso(now),
    }


# -- the source wrapper: checks scheduled around the forwarded work ------------------------------


def _lookback_window(lookback: float, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
    """Digests that ended in the last ``lookback`` s; log files up to two hours ago (digested by now)."""
    now = now or dt.datetime.now(dt.UTC)
    return now - dt.timedelta(seconds=lookback), now - dt.timedelta(seconds=DIGEST_LAG_SECONDS)


CheckFn = Callable[[dt.datetime | None, dt.datetime | None, Callable[[dict[str, Any]], None]], Any]
"""Runs one check over ``(start, end)`` and emits its events; raises when it cannot run."""


@dataclass(frozen=True, slots=True)
class _End:
    check: int
    events: Counter[str]
    seconds: float
    window: tuple[str | None, str | None]


class IntegrityChecks:
    """A source wrapper: the inner source's work, then integrity events as units of their own.

    ``every`` (seconds) runs checks in a background thread over the last ``lookback`` seconds;
    ``final`` runs one check over ``final_window()`` (default: unbounded) once the inner source is
    drained and every unit it gave was acknowledged or released. ``on_done`` sees each
    acknowledged unit's objects (to keep their hashes). Events travel in units of ``chunk``
    through a small bounded queue, so a check never holds more than a few units of events.
    """

    def __init__(
        self,
        inner: Source,
        check: CheckFn,
        *,
        location: str,
        every: float | None = None,
        lookback: float = 3600.0 + DIGEST_LAG_SECONDS,
        final: bool = False,
        final_window: Callable[[], tuple[dt.datetime | None, dt.datetime | None]] | None = None,
        on_done: Callable[[list[ObjectDone]], None] | None = None,
        after_check: Callable[[], None] | None = None,
        chunk: int = EVENTS_PER_UNIT,
        wait_step: float = 1.0,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.inner = inner
        self.check = check
        self.location = location
        self.every = every
        self.lookback = lookback
        self.final = final
        self.final_window = final_window
        self.on_done = on_done
        self.after_check = after_check
        self.chunk = chunk
        self.wait_step = wait_step
        self.clock = clock
        self._stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        self._results: queue.Queue[list[dict[str, Any]] | _End] = queue.Queue(maxsize=4)
        self._outstanding = 0
        self._settled = threading.Condition()
        self._closed = threading.Event()
        self._checks = 0
        self._lock = threading.Lock()
        self._timer: threading.Thread | None = None

    @property
    def stats(self) -> dict[str, int]:
        """checks, checks_failed, events, events_delivered, events_released, pending_skipped, verdict:*."""
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, name: str, n: int = 1) -> None:
        with self._stats_lock:
            self._stats[name] += n

    # -- Source -------------------------------------------------------------------------------------

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """The inner source's units, then (or, periodically, between them) integrity units."""
        if self.every is not None:
            self._timer = threading.Thread(
                target=self._periodic, args=(stop,), name="integrity-checks", daemon=True
            )
            self._timer.start()
        for unit in self.inner.work(stop):
            if not unit.idle:
                self._track(unit)
            yield unit
            yield from self._ready()
        if self.final and not stop.is_set():
            yield from self._final(stop)

    def close(self) -> None:
        """Stop the periodic checks and close the inner source."""
        self._closed.set()
        if self._timer is not None:
            self._timer.join(timeout=5)
        left = 0
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                break
            left += 0 if isinstance(item, _End) else len(item)
        if left:
            self._count("events_released", left)
            log.warning(
                "%d integrity events were not handed to the sinks (stopping); the next run checks "
                "the window again",
                left,
            )
        self.inner.close()

    # -- forwarded units ----------------------------------------------------------------------------

    def _track(self, unit: Work) -> None:
        ack, release = unit.ack, unit.release
        with self._settled:
            self._outstanding += 1

        def tracked_ack(done: list[ObjectDone]) -> None:
            try:
                if self.on_done is not None and done:
                    try:
                        self.on_done(done)
                    except Exception as exc:  # keeping a hash must never block an acknowledgement
                        log.warning("could not keep the hashes of %s: %s", unit.label, exc)
                ack(done)
            finally:
                self._settle()

        def tracked_release(reason: str) -> None:
            try:
                release(reason)
            finally:
                self._settle()

        unit.ack = tracked_ack
        unit.release = tracked_release

    def _settle(self) -> None:
        with self._settled:
            self._outstanding -= 1
            self._settled.notify_all()

    # -- checks -------------------------------------------------------------------------------------

    def _final(self, stop: threading.Event) -> Iterator[Work]:
        """After the inner source: wait until what it gave is settled, then one check to its end."""
        while True:
            with self._settled:
                if self._outstanding <= 0:
                    break
                self._settled.wait(self.wait_step)
            if stop.is_set():
                return
            yield Work([], idle=True, label="integrity: waiting for forwarded objects")
        start, end = self.final_window() if self.final_window is not None else (None, None)
        worker = threading.Thread(
            target=self._run, args=(start, end, stop), name="integrity-check", daemon=True
        )
        worker.start()
        while True:
            try:
                item = self._results.get(timeout=self.wait_step)
            except queue.Empty:
                if stop.is_set() or (not worker.is_alive() and self._results.empty()):
                    return  # stopping, or the check ended without an end marker (halted)
                yield Work([], idle=True, label="integrity: check running")
                continue
            unit = self._unit(item)
            if unit is not None:
                yield unit
            if isinstance(item, _End):
                return

    def _ready(self) -> Iterator[Work]:
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return
            unit = self._unit(item)
            if unit is not None:
                yield unit

    def _periodic(self, stop: threading.Event) -> None:
        assert self.every is not None
        due = time.monotonic() + self.every
        while not self._sleep(due - time.monotonic(), stop):
            self._run(*_lookback_window(self.lookback, self.clock()), stop)
            due = max(due + self.every, time.monotonic())

    def _sleep(self, seconds: float, stop: threading.Event) -> bool:
        """Wait ``seconds``; True when the run is stopping or the source closed."""
        deadline = time.monotonic() + max(0.0, seconds)
        while True:
            if stop.is_set() or self._closed.is_set():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._closed.wait(min(left, 0.25))

    def _run(self, start: dt.datetime | None, end: dt.datetime | None, stop: threading.Event) -> None:
        """One check: its events go to the queue in chunks, then an end marker."""
        with self._lock:
            self._checks += 1
            number = self._checks
        self._count("checks", 1)
        began = time.monotonic()
        verdicts: Counter[str] = Counter()
        chunk: list[dict[str, Any]] = []
        halted = False

        def emit(event: dict[str, Any]) -> None:
            nonlocal chunk, halted
            verdict = str(event.get("verdict"))
            if verdict == "log-pending":  # not digested yet: the next check covers it
                self._count("pending_skipped", 1)
                return
            verdicts[verdict] += 1
            chunk.append(_prepared(event, start, end))
            if len(chunk) >= self.chunk:
                halted = halted or not self._put(chunk, stop)
                chunk = []

        try:
            self.check(start, end, emit)
        except Exception as exc:  # the check could not run: that is an event too
            log.warning("integrity check of %s could not run: %s: %s", self.location, type(exc).__name__, exc)
            self._count("checks_failed", 1)
            verdicts["check-failed"] += 1
            reason = f"{type(exc).__name__}: {exc}"
            failed = check_failed_event(self.location, reason, self.clock())
            chunk.append(_prepared(failed, start, end))
        if chunk:
            halted = halted or not self._put(chunk, stop)
        if self.after_check is not None:
            try:
                self.after_check()
            except Exception as exc:
                log.warning("integrity: cleaning up after check %d failed: %s", number, exc)
        window = (_iso(start), _iso(end))
        if halted:
            log.warning(
                "integrity check %d of %s stopped before all its events were handed over; the next "
                "run checks the window again",
                number,
                self.location,
            )
            return
        self._put(_End(number, verdicts, time.monotonic() - began, window), stop)

    def _put(self, item: list[dict[str, Any]] | _End, stop: threading.Event) -> bool:
        """Hand over (blocking while units are pending: bounded memory); False when stopping."""
        while True:
            if stop.is_set() or self._closed.is_set():
                return False
            try:
                self._results.put(item, timeout=0.25)
            except queue.Full:
                continue
            return True

    def _unit(self, item: list[dict[str, Any]] | _End) -> Work | None:
        if isinstance(item, _End):
            self._report(item)
            return None
        records: list[Record] = []
        for event in item:
            try:
                records.append(integrity_record(event))
            except (TypeError, ValueError):  # a bug, never expected: say so loudly, with the event
                log.exception("integrity event could not become a record: %s", event)
        n = len(records)
        self._count("events", n)

        def ack(_: list[ObjectDone]) -> None:
            self._count("events_delivered", n)

        def release(reason: str) -> None:
            self._count("events_released", n)
            log.warning(
                "%d integrity events were not delivered (%s); the next check covers the window again",
                n,
                reason,
            )

        return Work([], records=records, ack=ack, release=release, label=f"integrity events ({n})")

    def _report(self, end: _End) -> None:
        for verdict, n in end.events.items():
            self._count(f"verdict:{verdict}", n)
        bad = {v: n for v, n in end.events.items() if v != "valid"}
        total = sum(end.events.values())
        text = (
            f"integrity check {end.check} of {self.location} "
            f"[{end.window[0] or 'start'} .. {end.window[1] or 'now'}]: {total} events in "
            f"{end.seconds:.1f}s"
        )
        if bad:
            log.warning("%s; not valid: %s", text, ", ".join(f"{v} {n}" for v, n in sorted(bad.items())))
        else:
            log.info("%s, all valid", text)


# -- wiring -------------------------------------------------------------------------------------


def install_integrity_checks(pipeline: Pipeline, config: Config, *, once: bool) -> IntegrityChecks:
    """Wrap ``pipeline.source`` so that integrity events are checked and delivered (``[integrity]``).

    Turns on object hashing (``[state] hash_objects``). An SQS source keeps the hashes in the
    state database itself (pruned after each check) and is checked every ``every`` seconds, or
    once at the end with ``once``; a listing source is checked once, when everything it read is
    delivered. In a ``--workers`` fleet only worker 0 runs checks (all of them keep hashes).
    """
    from trailrelay.config import FilesSourceConfig, S3SourceConfig  # noqa: PLC0415 - config imports us

    integrity = config.integrity
    integrity.check_source(config.source)
    pipeline.hash_objects = True
    src = config.source
    checks_here = os.environ.get("TRAILRELAY_WORKER", "0") == "0"
    sqs = not isinstance(src, (S3SourceConfig, FilesSourceConfig))
    inner = pipeline.source
    store, key_for = _store(config)
    state = config.state_path()
    on_done: Callable[[list[ObjectDone]], None] | None = None
    after: Callable[[], None] | None = None
    if sqs:
        from trailrelay.state import Checkpoints  # noqa: PLC0415

        kept = Checkpoints(state)
        on_done = _hash_keeper(kept)
        lookback = integrity.window_seconds
        after = _pruner(state, lookback + PRUNE_MARGIN)
        hashes_source = SQS_HASHES_SOURCE
        inner = _ClosingWith(inner, kept.close)
    else:
        hashes_source = str(getattr(inner, "source_id", ""))
    window: tuple[dt.datetime | None, dt.datetime | None] = (None, None)
    if isinstance(src, S3SourceConfig):
        window = (src.start_time, src.end_time)

    def final_window() -> tuple[dt.datetime | None, dt.datetime | None]:
        """The source's own window; for SQS (``--once``), the lookback up to now."""
        return _lookback_window(integrity.window_seconds) if sqs else window

    check = _checker(config, store, hashes_source, key_for, state)
    wrapper = IntegrityChecks(
        inner,
        check,
        location=store.location,
        every=integrity.every if (sqs and not once and checks_here) else None,
        lookback=integrity.window_seconds,
        final=(once or not sqs) and checks_here,
        final_window=final_window,
        on_done=on_done,
        after_check=after,
    )
    pipeline.source = wrapper
    return wrapper


class _ClosingWith:
    """A source that also closes something of ours when it is closed."""

    def __init__(self, inner: Source, also: Callable[[], None]) -> None:
        self.inner = inner
        self.also = also

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """The inner source's units."""
        return self.inner.work(stop)

    def close(self) -> None:
        """Close the inner source, then ours."""
        try:
            self.inner.close()
        finally:
            self.also()


def _store(config: Config) -> tuple[TrailStore, Callable[[str, str], str] | None]:
    """Where the digests are, and how a digest's log file maps to a checkpoint key."""
    from trailrelay.config import FilesSourceConfig, S3SourceConfig  # noqa: PLC0415
    from trailrelay.integrity.store import MirrorStore, S3Store  # noqa: PLC0415

    integrity, src = config.integrity, config.source
    if isinstance(src, FilesSourceConfig):
        path = src.path if src.path.is_absolute() else config.base_dir / src.path
        mirror = MirrorStore(path)
        root = mirror.root

        def local(_bucket: str, key: str) -> str:
            return str((root / key).resolve())

        if integrity.bucket:
            return S3Store(_s3(config), integrity.bucket, integrity.prefix or ""), local
        return mirror, local
    if isinstance(src, S3SourceConfig):
        bucket = integrity.bucket or src.bucket
        prefix = integrity.prefix if integrity.prefix is not None else src.prefix
        return S3Store(_s3(config), bucket, prefix), None
    assert integrity.bucket is not None  # check_source
    return S3Store(_s3(config), integrity.bucket, integrity.prefix or ""), _bucket_key


def _bucket_key(bucket: str, key: str) -> str:
    return f"{bucket}/{key}"


def _s3(config: Config) -> Any:
    from trailrelay.sources.aws import aws_client  # noqa: PLC0415 - boto3 loads slowly

    src, integrity = config.source, config.integrity
    return aws_client(
        "s3",
        region=integrity.region or getattr(src, "region", None),
        endpoint_url=getattr(src, "endpoint_url", None),
        role_arn=integrity.role_arn or getattr(src, "role_arn", None),
    )


def _static_keys(config: Config, store: TrailStore) -> tuple[dict[str, LoadedKey], MirrorKeys]:
    """The configured key files (each must have its fingerprint) and, on a mirror, its key files."""
    from trailrelay.integrity.keys import (  # noqa: PLC0415
        FILE,
        KeyFileError,
        LoadedKey,
        MirrorKeys,
        fingerprint_of,
        load_key_dir,
        load_public_key,
    )
    from trailrelay.integrity.mirror import KEYS_DIR  # noqa: PLC0415
    from trailrelay.integrity.store import MirrorStore  # noqa: PLC0415

    mirrored = load_key_dir(store.root / KEYS_DIR) if isinstance(store, MirrorStore) else MirrorKeys()
    given: dict[str, LoadedKey] = {}
    for fingerprint, path in config.integrity.public_keys.items():
        fp = fingerprint.strip().lower()
        file = path if path.is_absolute() else config.base_dir / path
        try:
            key = load_public_key(file.read_bytes())
        except OSError as exc:
            raise KeyFileError(
                f"integrity.public_keys.{fingerprint}: cannot read {file}: {exc.strerror}"
            ) from None
        except ValueError as exc:
            raise KeyFileError(f"integrity.public_keys.{fingerprint}: {file}: {exc}") from None
        if fingerprint_of(key) != fp:
            raise KeyFileError(
                f"integrity.public_keys.{fingerprint}: {file} holds the key with fingerprint "
                f"{fingerprint_of(key)}, not {fp}"
            )
        given[fp] = LoadedKey(key, FILE, str(file))
    return given, mirrored


def _fetcher(config: Config) -> KeyFetcher | None:
    if config.integrity.public_keys:
        return None
    from trailrelay.integrity.keys import cloudtrail_fetcher  # noqa: PLC0415
    from trailrelay.sources.aws import aws_client  # noqa: PLC0415

    role = config.integrity.role_arn or getattr(config.source, "role_arn", None)
    clients: dict[str, Any] = {}
    lock = threading.Lock()

    def client_for(region: str) -> Any:
        with lock:
            if region not in clients:
                clients[region] = aws_client("cloudtrail", region=region, role_arn=role)
            return clients[region]

    return cloudtrail_fetcher(client_for)


def _checker(
    config: Config,
    store: TrailStore,
    hashes_source: str,
    key_for: Callable[[str, str], str] | None,
    state: Path,
) -> CheckFn:
    """The check: keys (given, then ListPublicKeys, remembered between checks) and kept hashes."""
    from trailrelay.integrity.events import CheckpointHashes  # noqa: PLC0415
    from trailrelay.integrity.keys import CLOUDTRAIL, KeyRing, LoadedKey, load_public_key  # noqa: PLC0415

    given, mirrored = _static_keys(config, store)
    fetcher = _fetcher(config)
    learned: dict[str, LoadedKey] = {}
    workers = config.integrity.workers

    def check(
        start: dt.datetime | None, end: dt.datetime | None, emit: Callable[[dict[str, Any]], None]
    ) -> VerifyReport:
        ring = KeyRing({**learned, **given}, fetcher, mirror=mirrored, start=start, end=end)
        hashes: ForwardedHashes | None = None
        opened: CheckpointHashes | None = None
        if state.exists():
            opened = CheckpointHashes(state, hashes_source, key_for)
            hashes = opened
        else:
            hashes = _NothingForwarded()
        try:
            report = _verify(store, ring, emit, hashes, start, end, workers)
        finally:
            if opened is not None:
                opened.close()
        for info in ring.fetched:  # checked against their fingerprints when fetched
            try:
                learned[info.fingerprint] = LoadedKey(
                    load_public_key(info.der), CLOUDTRAIL, f"ListPublicKeys in {info.region}"
                )
            except ValueError:
                continue
        for note in report.notes:
            log.warning("integrity check of %s: %s", store.location, note)
        return report

    return check


def _verify(  # noqa: PLR0917 - private, one call site
    store: TrailStore,
    keys: KeyRing,
    emit: Callable[[dict[str, Any]], None],
    hashes: ForwardedHashes,
    start: dt.datetime | None,
    end: dt.datetime | None,
    workers: int,
) -> VerifyReport:
    """``events.run_integrity_check`` with a log checker that also reads what was not forwarded.

    A listed log file compares with its kept hash; one that was never forwarded is read from
    the store instead, so a file deleted or changed before the forwarder saw it is named
    (``log-missing`` / ``log-modified``) rather than counted as merely not forwarded.
    """
    from trailrelay.integrity.events import integrity_event, problem_event  # noqa: PLC0415
    from trailrelay.integrity.verifier import DigestOutcome, Verifier  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)

    def on_digest(outcome: DigestOutcome) -> None:
        emit(integrity_event(outcome, source=store.location, verified_at=now))

    checker = _ForwardedOrRead(hashes, store)
    verifier = Verifier(
        store, keys, start=start, end=end, workers=workers, log_checker=checker, on_digest=on_digest
    )
    report = verifier.run()
    for p in report.problems:
        if p.kind in ("log-not-covered", "log-pending"):
            emit(problem_event(p, source=store.location, verified_at=now))
    return report


class _ForwardedOrRead:
    """The kept hash when the file was forwarded; otherwise the store's copy, read and hashed."""

    def __init__(self, hashes: ForwardedHashes, store: TrailStore) -> None:
        from trailrelay.integrity.logcheck import ForwardedLogChecker, HashingLogChecker  # noqa: PLC0415

        self.forwarded = ForwardedLogChecker(hashes)
        self.read = HashingLogChecker(store)

    def __call__(self, entry: LogFileEntry) -> LogResult:
        """The forwarded copy's verdict; for a file never forwarded, the store's copy's."""
        from trailrelay.integrity.logcheck import NOT_FORWARDED, VALID, LogResult  # noqa: PLC0415

        result = self.forwarded(entry)
        if result.status != NOT_FORWARDED:
            return result
        stored = self.read(entry)
        if stored.status == VALID:
            return LogResult(entry, NOT_FORWARDED, "not forwarded (yet); the bucket's copy is genuine")
        return stored


class _NothingForwarded:
    """Hashes before anything was forwarded (no state file yet)."""

    def sha256(self, bucket: str, key: str) -> str | None:  # noqa: ARG002 - protocol signature
        """Never forwarded."""
        return None


def _hash_keeper(kept: Any) -> Callable[[list[ObjectDone]], None]:
    """Keeps each acknowledged object's hash (SQS sources have no checkpoints of their own)."""

    def keep(done: list[ObjectDone]) -> None:
        for d in done:
            o = d.origin
            if d.sha256 and o.bucket and o.key:
                kept.mark_done(SQS_HASHES_SOURCE, f"{o.bucket}/{o.key}", o.etag or "", d.records, d.sha256)

    return keep


def _pruner(state: Path, keep_seconds: float) -> Callable[[], None]:
    """Deletes kept SQS hashes older than any check will ask for."""

    def prune() -> None:
        db = sqlite3.connect(state, timeout=30, isolation_level=None)
        try:
            db.execute(
                "DELETE FROM objects WHERE source = ? AND done_at < ?",
                (SQS_HASHES_SOURCE, time.time() - keep_seconds),
            )
        finally:
            db.close()

    return prune
