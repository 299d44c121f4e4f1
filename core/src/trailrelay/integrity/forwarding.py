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

This module wires it into the pipeline. The parts: ``integrity.config`` (the ``[integrity]``
model), ``integrity.records`` (events as records and their tags), ``integrity.checks`` (the
source wrapper that schedules checks), ``integrity.keysetup`` (the keys a check trusts) and
``integrity.sqs_hashes`` (the hashes an SQS source keeps, and their pruning).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trailrelay.config import Config, FilesSourceConfig, S3SourceConfig
from trailrelay.integrity.checks import CheckFn, IntegrityChecks, lookback_window
from trailrelay.integrity.sqs_hashes import PRUNE_MARGIN, SQS_HASHES_SOURCE, hash_keeper, pruner
from trailrelay.sources.base import ObjectDone, Source, Work

if TYPE_CHECKING:
    from trailrelay.integrity.digests import LogFileEntry
    from trailrelay.integrity.keys import KeyRing, LoadedKey
    from trailrelay.integrity.logcheck import ForwardedHashes, LogResult
    from trailrelay.integrity.report import VerifyReport
    from trailrelay.integrity.store import TrailStore
    from trailrelay.pipeline.runner import Pipeline

__all__ = ["install_integrity_checks"]

log = logging.getLogger("trailrelay.integrity")


def install_integrity_checks(pipeline: Pipeline, config: Config, *, once: bool) -> IntegrityChecks:
    """Wrap ``pipeline.source`` so that integrity events are checked and delivered (``[integrity]``).

    Turns on object hashing (``[state] hash_objects``). An SQS source keeps the hashes in the
    state database itself (pruned after each check) and is checked every ``every`` seconds, or
    once at the end with ``once``; a listing source is checked once, when everything it read is
    delivered. In a ``--workers`` fleet only worker 0 runs checks (all of them keep hashes).
    """
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
        from trailrelay.state import Checkpoints  # noqa: PLC0415 - SQS sources only

        kept = Checkpoints(state)
        on_done = hash_keeper(kept)
        lookback = integrity.window_seconds
        after = pruner(state, lookback + PRUNE_MARGIN)
        hashes_source = SQS_HASHES_SOURCE
        inner = _ClosingWith(inner, kept.close)
    else:
        hashes_source = str(getattr(inner, "source_id", ""))
    window: tuple[dt.datetime | None, dt.datetime | None] = (None, None)
    if isinstance(src, S3SourceConfig):
        window = (src.start_time, src.end_time)

    def final_window() -> tuple[dt.datetime | None, dt.datetime | None]:
        """The source's own window; for SQS (``--once``), the lookback up to now."""
        return lookback_window(integrity.window_seconds) if sqs else window

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
    from trailrelay.integrity.store import MirrorStore, S3Store  # noqa: PLC0415

    integrity, src = config.integrity, config.source
    if isinstance(src, FilesSourceConfig):
        mirror = MirrorStore(config.base_dir / src.path)
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


def _checker(
    config: Config,
    store: TrailStore,
    hashes_source: str,
    key_for: Callable[[str, str], str] | None,
    state: Path,
) -> CheckFn:
    """The check: keys (given, then ListPublicKeys, remembered between checks) and kept hashes."""
    from trailrelay.integrity.events import CheckpointHashes  # noqa: PLC0415 - cryptography loads slowly
    from trailrelay.integrity.keys import CLOUDTRAIL, KeyRing, LoadedKey, load_public_key  # noqa: PLC0415
    from trailrelay.integrity.keysetup import key_fetcher, static_keys  # noqa: PLC0415

    given, mirrored = static_keys(config, store)
    fetcher = key_fetcher(config)
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
    from trailrelay.integrity.events import integrity_event, report_events  # noqa: PLC0415
    from trailrelay.integrity.verifier import DigestOutcome, Verifier  # noqa: PLC0415

    now = dt.datetime.now(dt.UTC)

    def on_digest(outcome: DigestOutcome) -> None:
        emit(integrity_event(outcome, source=store.location, verified_at=now))

    checker = _ForwardedOrRead(hashes, store)
    verifier = Verifier(
        store, keys, start=start, end=end, workers=workers, log_checker=checker, on_digest=on_digest
    )
    report = verifier.run()
    for event in report_events(report, verified_at=now):
        emit(event)
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
