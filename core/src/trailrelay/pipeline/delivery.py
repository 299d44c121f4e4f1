"""One sink's side of the pipeline: cut batches, send them, retry, dead-letter, settle tickets.

Records arrive on a bounded queue (a full queue blocks the readers: back-pressure instead of
unbounded memory). A batcher thread cuts batches by count, bytes and age; a high-risk record
flushes at once (the fast path). Up to ``concurrency`` batches are in flight; each is sent,
and records whose outcome is RETRY are sent again after an exponential backoff with full
jitter that honours Retry-After, until ``max_retry_seconds`` pass, when they are
dead-lettered with the last reason. A FatalSinkError stops the whole run.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from trailrelay.contract import INTEGRITY_KIND, Batch, BatchLimits, Outcome, Sink, Status
from trailrelay.errors import FatalSinkError, InputError, PermanentError, RetryableError
from trailrelay.pipeline.deadletter import DeadLetterStore, entry
from trailrelay.pipeline.metrics import Metrics
from trailrelay.record import Record
from trailrelay.transforms.filters import RecordFilter

__all__ = ["SinkRunner", "backoff"]

log = logging.getLogger("trailrelay.pipeline")

_STOP = object()
_FLUSH = object()


def backoff(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds to wait before attempt ``attempt + 1``: full jitter, at least the server's Retry-After."""
    delay: float = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))  # noqa: S311 - jitter, not crypto
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 5))
    return delay


class SinkRunner:
    """Feeds one sink; thread-safe ``put``; ``close`` drains what is queued."""

    def __init__(
        self,
        name: str,
        sink: Sink,
        *,
        dead_letters: DeadLetterStore,
        metrics: Metrics,
        stop: threading.Event,
        on_fatal: Callable[[str, FatalSinkError], None],
        max_retry_seconds: float = 1800.0,
        backoff_base: float = 0.5,
        queue_records: int | None = None,
        max_age: float | None = None,
        record_filter: RecordFilter | None = None,
        prepare: Callable[[Record], Record] | None = None,
    ) -> None:
        self.name = name
        self.record_filter = record_filter
        self.prepare = prepare
        self.sink = sink
        self.limits: BatchLimits = sink.limits
        self.max_age = max_age if max_age is not None else self.limits.max_age
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.stop = stop
        self.on_fatal = on_fatal
        self.max_retry_seconds = max_retry_seconds
        self.backoff_base = backoff_base
        size = queue_records or max(1000, 2 * self.limits.max_records)
        self._queue: queue.Queue[object] = queue.Queue(maxsize=size)
        self._slots = threading.Semaphore(self.limits.concurrency)
        self._pool = ThreadPoolExecutor(self.limits.concurrency, thread_name_prefix=f"send-{name}")
        self._batcher = threading.Thread(target=self._batch_loop, name=f"batch-{name}", daemon=True)
        self._abandon = threading.Event()
        self._timer: threading.Timer | None = None
        self._timer_lock = threading.Lock()
        self._batcher.start()

    def put(self, record: Record) -> None:
        """Queue a record (after this sink's filter and preparation); blocks while the sink is behind."""
        rf = self.record_filter  # integrity events are not CloudTrail records: never filtered
        if rf is not None and record.origin.kind != INTEGRITY_KIND and not rf.keep(record):
            self.metrics.bump("filtered_by_sink", self.name)
            if record.ticket is not None:
                record.ticket.finish(1)
            return
        if self.prepare is not None:
            try:
                record = self.prepare(record)
            except InputError as exc:  # e.g. cannot be pseudonymized: never sent unmasked
                self.dead_letters.write(
                    entry("prepare", str(exc), record.origin, record.raw, sink=self.name, index=record.index)
                )
                self.metrics.bump("dead_lettered", "prepare")
                if record.ticket is not None:
                    record.ticket.finish(1)
                return
        self._queue.put(record)

    def flush(self) -> None:
        """Send the partial batch now (someone is waiting for its acknowledgement)."""
        self._queue.put(_FLUSH)

    def abandon_after(self, seconds: float) -> None:
        """Stop retrying (hand records back unfinished) once ``seconds`` have passed."""
        with self._timer_lock:
            if self._timer is None:
                self._timer = threading.Timer(seconds, self._abandon.set)
                self._timer.daemon = True
                self._timer.start()

    def close(self) -> None:
        """Flush what is queued and wait for in-flight batches to settle."""
        self._queue.put(_STOP)
        self._batcher.join()
        self._pool.shutdown(wait=True)
        with self._timer_lock:
            if self._timer is not None:
                self._timer.cancel()

    # -- batching -------------------------------------------------------------------------

    def _batch_loop(self) -> None:
        batch: list[Record] = []
        size = 0
        deadline = 0.0
        limits = self.limits
        while True:
            timeout = max(0.0, deadline - time.monotonic()) if batch else None
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                self._dispatch(batch)
                batch, size = [], 0
                continue
            if item is _STOP:
                self._dispatch(batch)
                return
            if item is _FLUSH:
                self._dispatch(batch)
                batch, size = [], 0
                continue
            assert isinstance(item, Record)
            if not batch:
                deadline = time.monotonic() + self.max_age
            batch.append(item)
            size += len(item.raw)
            if item.tags or len(batch) >= limits.max_records or size >= limits.max_bytes:
                self._dispatch(batch)
                batch, size = [], 0

    def _dispatch(self, batch: list[Record]) -> None:
        if not batch:
            return
        self._slots.acquire()
        self._pool.submit(self._deliver, batch)

    # -- delivery -------------------------------------------------------------------------

    def _deliver(self, records: list[Record]) -> None:
        try:
            self._deliver_with_retries(records)
        except Exception:  # a bug here must not leave the run hanging
            log.exception("delivery to %s failed unexpectedly", self.name)
            self._abandon_records(records, "internal error during delivery")
        finally:
            self._slots.release()

    def _deliver_with_retries(self, records: list[Record]) -> None:
        pending: Sequence[Record] = records
        first = time.monotonic()
        attempt = 0
        while pending:
            if self._abandon.is_set():
                self._abandon_records(pending, "stopping: delivery not finished")
                return
            attempt += 1
            outcomes = self._send_once(pending, attempt)
            if outcomes is None:  # fatal: the run is stopping, nothing is acknowledged
                return
            retry: list[Record] = []
            settled: list[tuple[Record, Outcome]] = []
            last: Outcome | None = None
            for rec, out in zip(pending, outcomes, strict=True):
                if out.status is Status.RETRY:
                    retry.append(rec)
                    last = out
                else:
                    settled.append((rec, out))
            self._settle(settled)
            if not retry:
                return
            self.metrics.bump("retries", self.name, len(retry))
            assert last is not None
            waited = time.monotonic() - first
            if waited >= self.max_retry_seconds:
                reason = f"gave up after {attempt} attempts over {waited:.0f}s: {last.reason}"
                self._settle([(r, Outcome.rejected(reason)) for r in retry])
                return
            delay = min(
                backoff(attempt, last.retry_after, base=self.backoff_base),
                max(0.0, self.max_retry_seconds - waited),
            )
            if self._abandon.wait(delay):
                self._abandon_records(retry, "stopping: delivery not finished")
                return
            pending = retry

    def _send_once(self, records: Sequence[Record], attempt: int) -> Sequence[Outcome] | None:
        try:
            outcomes = self.sink.send(Batch(records, attempt))
        except RetryableError as exc:
            return [Outcome.retry(str(exc), exc.retry_after)] * len(records)
        except PermanentError as exc:
            return [Outcome.rejected(str(exc))] * len(records)
        except FatalSinkError as exc:
            self.on_fatal(self.name, exc)
            self._abandon_records(records, f"sink stopped: {exc}")
            return None
        except Exception as exc:  # a sink bug or a record it cannot encode: find the culprit
            return self._isolate(records, attempt, exc)
        if len(outcomes) != len(records):
            reason = f"sink returned {len(outcomes)} outcomes for {len(records)} records"
            return [Outcome.retry(reason)] * len(records)
        return outcomes

    def _isolate(self, records: Sequence[Record], attempt: int, exc: Exception) -> Sequence[Outcome] | None:
        """After an unexpected exception: halve the batch until the record that causes it is alone.

        That record is REJECTED (dead-lettered with the exception); the others go on. A sink
        that fails on every record therefore dead-letters them all (replayable) instead of
        retrying one poisoned batch forever.
        """
        if len(records) == 1:
            log.warning("sink %s failed on one record (%s): %s", self.name, type(exc).__name__, exc)
            return [Outcome.rejected(f"sink failed on this record: {type(exc).__name__}: {exc}")]
        mid = len(records) // 2
        out: list[Outcome] = []
        for half in (records[:mid], records[mid:]):
            part = self._send_once(half, attempt)
            if part is None:
                return None
            out.extend(part)
        return out

    def _settle(self, settled: list[tuple[Record, Outcome]]) -> None:
        if not settled:
            return
        now = time.time()
        per_ticket: Counter[object] = Counter()
        delivered = dup = rejected = nbytes = 0
        for rec, out in settled:
            if out.status is Status.DELIVERED:
                delivered += 1
                nbytes += len(rec.raw)
            elif out.status is Status.DUPLICATE:
                dup += 1
            else:
                rejected += 1
                self.dead_letters.write(
                    entry(
                        "sink", out.reason or "rejected", rec.origin, rec.raw, sink=self.name, index=rec.index
                    )
                )
            if (t := rec.epoch) is not None:
                self.metrics.latency(now - t)
            if rec.ticket is not None:
                per_ticket[rec.ticket] += 1
        m = self.metrics
        if delivered:
            m.bump("delivered", self.name, delivered)
            m.bump("bytes_out", self.name, nbytes)
        if dup:
            m.bump("duplicates", self.name, dup)
        if rejected:
            m.bump("rejected", self.name, rejected)
            m.bump("dead_lettered", "sink", rejected)
        for ticket, n in per_ticket.items():
            ticket.finish(n)  # type: ignore[attr-defined]

    def _abandon_records(self, records: Sequence[Record], reason: str) -> None:
        """Leave records unfinished: their units are released, not acknowledged."""
        for rec in records:
            if rec.ticket is not None:
                rec.ticket.fail(reason)
