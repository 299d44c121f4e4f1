"""One sink's side of the pipeline: cut batches, send them, retry, dead-letter, settle tickets.

Readers hand over records in chunks (``put_many``): the sink's filter and privacy profile
run in the reader's thread, then the chunk is appended to the open batch under one lock, and
every batch that fills (count or bytes) is dispatched at once. There is no thread hop per
record. A clock thread sends a partial batch when it is ``max_age`` old, or ``urgent_delay``
after a high-risk record joined it (so alerts leave within tens of milliseconds while any
number of tagged records still share requests), and starts retries when their backoff ends.

Up to ``concurrency`` batches are in flight. Each outcome is handled alike whether ``send``
returned it or a :class:`~trailrelay.contract.Receipt` delivered it later: final outcomes are
settled (counted, dead-lettered, tickets finished), RETRY waits for a backoff with full jitter
that honours Retry-After and is sent again until ``max_retry_seconds`` pass, PENDING records are
*parked*: compressed, off the send path, until their receipt resolves.

Memory is bounded: records handed to this sink and not yet final (or parked) are capped, and
so are the parked bytes; a reader blocks in ``put_many`` while either cap is reached. A
FatalSinkError stops the whole run.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import threading
import time
from array import array
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import accumulate, repeat
from operator import add, attrgetter

from isal import isal_zlib

from trailrelay.contract import (
    DELIVERED,
    INTEGRITY_KIND,
    Batch,
    BatchLimits,
    Outcome,
    Receipt,
    Sink,
    Status,
)
from trailrelay.errors import FatalSinkError, InputError, PermanentError, RetryableError
from trailrelay.helpers import cut_runs, exception_text
from trailrelay.pipeline.deadletter import DeadLetterError, DeadLetterStore, entry
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.process import join
from trailrelay.record import Record, decode_routing
from trailrelay.transforms.filters import RecordFilter

__all__ = ["URGENT_DELAY", "SinkRunner", "backoff"]

log = logging.getLogger("trailrelay.pipeline")

RETRY_LOG_EVERY = 30.0
"""Seconds between warnings that a sink's sends are being retried (the first comes at once)."""

URGENT_DELAY = 0.05
"""Seconds a partial batch holding a high-risk record waits for company before it is sent."""
LATENCY_STRIDE = 32
"""One record in this many (and every high-risk one) is timed for the latency figures."""
_RAW = attrgetter("raw")
_TICKET = attrgetter("ticket")
_TAGS = attrgetter("tags")


def backoff(attempt: int, retry_after: float | None, *, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds to wait before attempt ``attempt + 1``: full jitter, at least the server's Retry-After."""
    delay: float = random.uniform(0, min(cap, base * (2 ** (attempt - 1))))  # noqa: S311 - jitter, not crypto
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap * 5))
    return delay


@dataclass(slots=True)
class _Attempt:
    """Records sent together: which attempt this is, and when the first one was made.

    A retry of parked records (their acknowledgement timed out) keeps them compressed in
    ``parked`` until the clock thread sends them, so many timed-out requests never turn back
    into full records all at once.
    """

    records: list[Record]
    attempt: int
    first: float
    parked: _Parked | None = None

    def __len__(self) -> int:
        return len(self.parked) if self.parked is not None else len(self.records)

    def materialize(self) -> list[Record]:
        """The records, rebuilt from their parked form when they were parked."""
        if self.parked is not None:
            self.records, self.parked = self.parked.records(), None
        return self.records


class _Parked:
    """Records awaiting a receipt, held as one compressed blob plus what settling needs."""

    __slots__ = (
        "attempt",
        "blob",
        "event_times",
        "first",
        "lengths",
        "nbytes",
        "origins",
        "positions",
        "tags",
        "tickets",
    )

    def __init__(self, records: list[Record], attempt: int, first: float) -> None:
        self.attempt = attempt
        self.first = first
        self.event_times = _sampled_event_times(records)
        """The latency sample's event times (POSIX seconds), measured when the receipt settles."""
        self.lengths = array("I", [len(r.raw) for r in records])
        self.blob = isal_zlib.compress(b"".join(r.raw for r in records), 0)
        self.origins = [r.origin for r in records]
        self.positions = array("q", [r.index for r in records])
        self.tags = [r.tags for r in records]
        self.tickets = [r.ticket for r in records]
        self.nbytes = len(self.blob) + 40 * len(records)
        """Memory this holds (blob and per-record references), counted against the cap."""

    def __len__(self) -> int:
        return len(self.lengths)

    def records(self) -> list[Record]:
        """The records again, as they were (for a re-send or a dead-letter entry)."""
        data = isal_zlib.decompress(self.blob)
        out: list[Record] = []
        at = 0
        for i, n in enumerate(self.lengths):
            raw = data[at : at + n]
            at += n
            rec = Record(raw, decode_routing(raw), self.origins[i], self.positions[i], self.tags[i])
            rec.ticket = self.tickets[i]
            out.append(rec)
        return out


def _sampled_event_times(records: Sequence[Record]) -> list[float]:
    """Event times of the latency sample: every high-risk record, and 1 in LATENCY_STRIDE of the rest."""
    sample = records[::LATENCY_STRIDE]
    tagged = [r for r in records if r.tags]
    if tagged:  # every high-risk one, once
        sampled = set(map(id, sample))
        sample = [*sample, *(r for r in tagged if id(r) not in sampled)]
    return [t.timestamp() for r in sample if (t := r.routing.event_time) is not None]


class SinkRunner:
    """Feeds one sink; thread-safe ``put_many``; ``close`` settles everything handed over."""

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
        urgent_delay: float = URGENT_DELAY,
        secrets: Sequence[str] = (),
    ) -> None:
        self.name = name
        self.secrets = secrets
        """The sink's secret values (``secret_values`` of its config): scrubbed from the text of
        an unexpected exception before it is logged or dead-lettered."""
        self.record_filter = record_filter
        self.prepare = prepare
        self.sink = sink
        self.limits: BatchLimits = sink.limits
        self.max_age = max_age if max_age is not None else self.limits.max_age
        self.urgent_delay = min(urgent_delay, self.max_age)
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.stop = stop
        self.on_fatal = on_fatal
        self.max_retry_seconds = max_retry_seconds
        self.backoff_base = backoff_base
        lim = self.limits
        self.capacity = (
            queue_records or max(1000, 2 * lim.max_records) + (lim.concurrency + 1) * lim.max_records
        )
        """Records handed to this sink and not yet final or parked; readers wait above it."""
        self.max_pending_bytes = self.limits.max_pending_bytes
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        """Guards the state below; readers wait on it for room (back-pressure)."""
        self._tick = threading.Condition(lock)
        """The clock thread waits on it; woken only when it must look sooner than it planned."""
        self._clock_wake = 0.0
        """When the sleeping clock will look again by itself (0 while it is awake and will look anyway)."""
        self._batch: list[Record] = []
        self._batch_bytes = 0
        self._due = 0.0
        self._active = 0
        self._parked: set[_Parked] = set()
        self._parked_bytes = 0
        self._retries: list[tuple[float, int, _Attempt]] = []
        self._seq = itertools.count()
        self._closing = False
        self.peak_active = 0
        """Most records this sink held at once outside parking (for tests and reports)."""
        self.stuck = 0
        """Records still in a request when the drain deadline passed and the runner closed."""
        self._retry_log = _RetryLog(name)
        self._slots = threading.Semaphore(self.limits.concurrency)
        self._pool = ThreadPoolExecutor(self.limits.concurrency, thread_name_prefix=f"send-{name}")
        self._abandon = threading.Event()
        self._timer: threading.Timer | None = None
        self._clock = threading.Thread(target=self._clock_loop, name=f"batch-{name}", daemon=True)
        self._clock.start()

    # -- handing records over --------------------------------------------------------------

    def put(self, record: Record) -> None:
        """Hand over one record (see :meth:`put_many`)."""
        self.put_many([record])

    def put_many(self, records: Sequence[Record]) -> None:
        """Hand over records; blocks while this sink holds as many as it may (back-pressure)."""
        keep = self._admit(records)
        if not keep:
            return
        limits = self.limits
        with self._cond:
            while (
                self._active >= self.capacity or self._parked_bytes >= self.max_pending_bytes
            ) and not self._abandon.is_set():
                self._cond.wait(0.5)
            self._active += len(keep)
            self.peak_active = max(self.peak_active, self._active)
            now = time.monotonic()
            batch, size = self._batch, self._batch_bytes
            if not batch:
                self._due = now + self.max_age
            ready, batch, size, added = _fill(batch, size, keep, limits)
            urgent = any(map(_TAGS, added))
            if ready:  # the open batch is a new one
                self._due = now + self.max_age
            self._batch, self._batch_bytes = batch, size
            if batch and urgent:
                self._due = min(self._due, now + self.urgent_delay)
            if batch:
                self._wake_clock_by(self._due)
        for full in ready:
            self._dispatch(_Attempt(full, 1, now))

    def _admit(self, records: Sequence[Record]) -> list[Record]:
        """This sink's filter and privacy profile; what they drop is final here and now."""
        rf, prepare = self.record_filter, self.prepare
        if rf is None and prepare is None:
            return list(records)
        keep: list[Record] = []
        done: Counter[object] = Counter()
        filtered = 0
        for record in records:
            if rf is not None and record.origin.kind != INTEGRITY_KIND and not rf.keep(record):
                filtered += 1
                done[record.ticket] += 1
                continue
            if prepare is not None:
                try:
                    record = prepare(record)  # noqa: PLW2901 - the prepared copy replaces it
                except InputError as exc:  # e.g. cannot be pseudonymized: never sent unmasked
                    self.dead_letters.write(
                        entry(
                            "prepare", str(exc), record.origin, record.raw, sink=self.name, index=record.index
                        )
                    )
                    self.metrics.bump("dead_lettered", "prepare")
                    done[record.ticket] += 1
                    continue
            keep.append(record)
        if filtered:
            self.metrics.bump("filtered_by_sink", self.name, filtered)
        _finish_tickets(done)
        return keep

    def flush(self) -> None:
        """Send the partial batch now (someone is waiting for its acknowledgement)."""
        with self._cond:
            self._due = 0.0
            self._tick.notify()

    def abandon_after(self, seconds: float) -> None:
        """Stop retrying and waiting (hand records back unfinished) once ``seconds`` have passed."""
        with self._cond:
            if self._timer is None:
                self._timer = threading.Timer(seconds, self._give_up)
                self._timer.daemon = True
                self._timer.start()

    def _give_up(self) -> None:
        self._abandon.set()
        with self._cond:
            self._cond.notify_all()
            self._tick.notify()

    def close(self) -> None:
        """Send what is left and wait until every record handed over is final (or abandoned)."""
        with self._cond:
            self._closing = True
            self._tick.notify()
        join(self._clock)  # the main thread's: a signal meanwhile starts the drain deadline
        # Past the drain deadline a request may still hang (a server that trickles its answer):
        # its records' units are released, not acknowledged, so nobody waits for it.
        self._pool.shutdown(wait=not self.stuck, cancel_futures=bool(self.stuck))
        with self._cond:
            if self._timer is not None:
                self._timer.cancel()

    # -- the clock: partial batches, retries, abandonment ------------------------------------

    def _clock_loop(self) -> None:
        while True:
            due_batch: list[Record] = []
            due_retries: list[_Attempt] = []
            abandoned: list[_Parked] = []
            with self._cond:
                now = time.monotonic()
                if self._batch and (self._closing or self._due <= now or self._abandon.is_set()):
                    due_batch, self._batch, self._batch_bytes = self._batch, [], 0
                heap = self._retries
                while heap and (heap[0][0] <= now or self._abandon.is_set()):
                    due_retries.append(heapq.heappop(heap)[2])
                if self._abandon.is_set() and self._parked:
                    abandoned = list(self._parked)
                    self._parked.clear()
                    self._parked_bytes = 0
                idle = not (due_batch or due_retries or abandoned)
                if idle and self._closing and not self._batch and not self._parked:
                    if self._active == 0:
                        return
                    if self._abandon.is_set():  # past the drain deadline: what is in flight stays there
                        self.stuck = self._active
                        return
                if idle:
                    waits = [1.0]
                    if self._batch:
                        waits.append(self._due - now)
                    if heap:
                        waits.append(heap[0][0] - now)
                    wait = max(0.0, min(waits))
                    self._clock_wake = now + wait
                    self._tick.wait(wait)
                    self._clock_wake = 0.0
                    continue
            if due_batch:
                self._dispatch(_Attempt(due_batch, 1, now))
            for attempt in due_retries:
                if self._abandon.is_set():
                    self._abandon_records(attempt.materialize(), "stopping: delivery not finished")
                else:
                    attempt.materialize()  # one at a time, at the senders' pace
                    self._dispatch(attempt)
            for parked in abandoned:
                self._abandon_parked(parked)

    # -- sending ---------------------------------------------------------------------------

    def _dispatch(self, attempt: _Attempt) -> None:
        while not self._slots.acquire(timeout=0.25):
            if self._abandon.is_set():  # past the drain deadline every sender may hang: do not wait
                self._abandon_records(attempt.records, "stopping: delivery not finished")
                return
        try:
            self._pool.submit(self._send, attempt)
        except RuntimeError:  # the pool is shut down: only after close, never with work left
            self._slots.release()
            self._abandon_records(attempt.records, "internal error: sender stopped")

    def _send(self, attempt: _Attempt) -> None:
        try:
            if self._abandon.is_set():
                self._abandon_records(attempt.records, "stopping: delivery not finished")
                return
            outcomes = self._send_once(attempt.records, attempt.attempt)
            if outcomes is not None:  # None: fatal, the run is stopping, nothing is acknowledged
                self._handle(attempt, outcomes)
        except DeadLetterError as exc:  # the run is stopping (logged once): release, never ack
            self._abandon_records(attempt.records, str(exc))
        except Exception:  # a bug here must not leave the run hanging
            log.exception("delivery to %s failed unexpectedly", self.name)
            self._abandon_records(attempt.records, "internal error during delivery")
        finally:
            self._slots.release()

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
            message = exception_text(exc, self.secrets)
            log.warning("sink %s failed on one record (%s): %s", self.name, type(exc).__name__, message)
            return [Outcome.rejected(f"sink failed on this record: {type(exc).__name__}: {message}")]
        mid = len(records) // 2
        out: list[Outcome] = []
        for half in (records[:mid], records[mid:]):
            part = self._send_once(half, attempt)
            if part is None:
                return None
            out.extend(part)
        return out

    # -- outcomes --------------------------------------------------------------------------

    def _handle(self, attempt: _Attempt, outcomes: Sequence[Outcome]) -> None:
        """Settle final outcomes, park PENDING ones, schedule RETRY ones."""
        records = attempt.records
        if outcomes.count(DELIVERED) == len(outcomes):  # the common case: one pass, no sorting
            self._settle_delivered(records)
            return
        settled: list[tuple[Record, Outcome]] = []
        retry: list[Record] = []
        last: Outcome | None = None
        waiting: dict[int, tuple[Receipt, list[Record]]] = {}
        for rec, out in zip(records, outcomes, strict=True):
            status = out.status
            if status is Status.RETRY:
                retry.append(rec)
                last = out
            elif status is Status.PENDING and out.receipt is not None:
                waiting.setdefault(id(out.receipt), (out.receipt, []))[1].append(rec)
            elif status is Status.PENDING:
                settled.append((rec, Outcome.rejected("sink answered PENDING without a receipt (sink bug)")))
            else:
                settled.append((rec, out))
        self._settle(settled)
        for receipt, group in waiting.values():
            self._park(receipt, group, attempt)
        if retry:
            assert last is not None
            self._retry(_Attempt(retry, attempt.attempt, attempt.first), last)

    def _retry(self, attempt: _Attempt, last: Outcome) -> None:
        """Schedule another attempt after a backoff, or give up after ``max_retry_seconds``."""
        self.metrics.bump("retries", self.name, len(attempt))
        waited = time.monotonic() - attempt.first
        if waited >= self.max_retry_seconds:
            reason = f"gave up after {attempt.attempt} attempts over {waited:.0f}s: {last.reason}"
            self._settle([(r, Outcome.rejected(reason)) for r in attempt.materialize()])
            return
        delay = min(
            backoff(attempt.attempt, last.retry_after, base=self.backoff_base),
            max(0.0, self.max_retry_seconds - waited),
        )
        self._retry_log.failed(len(attempt), last.reason or "", delay, self.max_retry_seconds - waited)
        nxt = _Attempt(attempt.records, attempt.attempt + 1, attempt.first, attempt.parked)
        with self._cond:
            when = time.monotonic() + delay
            heapq.heappush(self._retries, (when, next(self._seq), nxt))
            self._wake_clock_by(when)

    def _park(self, receipt: Receipt, records: list[Record], attempt: _Attempt) -> None:
        parked = _Parked(records, attempt.attempt, attempt.first)
        with self._cond:
            self._active -= len(records)
            self._parked.add(parked)
            self._parked_bytes += parked.nbytes
            self._holdings_changed()
        receipt.on_resolve(lambda outcome: self._unpark(parked, outcome))

    def _unpark(self, parked: _Parked, outcome: Outcome) -> None:
        """A receipt resolved (on the sink's thread): settle or retry its records; never block."""
        with self._cond:
            if parked not in self._parked:  # abandoned at shutdown: its units were released
                return
            self._parked.discard(parked)
            self._parked_bytes -= parked.nbytes
            self._active += len(parked)
            self._holdings_changed()
        try:
            status = outcome.status
            if status is Status.DELIVERED:
                self._settle_parked(parked)
            elif status is Status.RETRY:  # stays compressed until it is sent again
                self._retry(_Attempt([], parked.attempt, parked.first, parked), outcome)
            else:
                self._settle([(r, outcome) for r in parked.records()])
        except Exception:  # never let a bookkeeping bug escape into the sink's poller
            log.exception("settling records of %s after their receipt failed", self.name)
            self._abandon_records(parked.records(), "internal error while settling")

    def _settle_delivered(self, records: Sequence[Record]) -> None:
        nbytes = sum(map(len, map(_RAW, records)))
        done: Counter[object] = Counter(map(_TICKET, records))
        self._count_final(len(records), nbytes, 0, 0)
        self._latencies(records)
        _finish_tickets(done)
        self._release(len(records))  # last: close() may return once nothing is held

    def _settle_parked(self, parked: _Parked) -> None:
        self._count_final(len(parked), sum(parked.lengths), 0, 0)
        now = time.time()
        self.metrics.latencies([now - t for t in parked.event_times])
        _finish_tickets(Counter(parked.tickets))
        self._release(len(parked))

    def _settle(self, settled: list[tuple[Record, Outcome]]) -> None:
        if not settled:
            return
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
            per_ticket[rec.ticket] += 1
        self._count_final(delivered, nbytes, dup, rejected)
        self._latencies([rec for rec, _ in settled])
        _finish_tickets(per_ticket)
        self._release(len(settled))

    def _count_final(self, delivered: int, nbytes: int, dup: int, rejected: int) -> None:
        m = self.metrics
        if delivered:
            if self._retry_log.failing:  # every way a record becomes delivered comes through here
                self._retry_log.recovered()
            m.bump("delivered", self.name, delivered)
            m.bump("bytes_out", self.name, nbytes)
        if dup:
            m.bump("duplicates", self.name, dup)
        if rejected:
            m.bump("rejected", self.name, rejected)
            m.bump("dead_lettered", "sink", rejected)

    def _latencies(self, records: Sequence[Record]) -> None:
        """Event-to-final delays: every high-risk record's, and a 1-in-LATENCY_STRIDE sample of the rest."""
        now = time.time()
        self.metrics.latencies([now - t for t in _sampled_event_times(records)])

    def _release(self, n: int) -> None:
        with self._cond:
            self._active -= n
            self._holdings_changed()

    def _holdings_changed(self) -> None:
        """Records held or parked changed (lock held): wake readers waiting for room.

        And the clock, when it waits for the last of them to end the run.
        """
        self._cond.notify_all()
        if self._closing or self._abandon.is_set():
            self._tick.notify()

    def _wake_clock_by(self, when: float) -> None:
        """Something is due at ``when`` (lock held): wake the clock if it planned to sleep past it.

        Not on every hand-over: a wake-up the clock does not need costs a thread switch.
        """
        if when < self._clock_wake:
            self._tick.notify()

    def _abandon_records(self, records: Sequence[Record], reason: str) -> None:
        """Leave records unfinished: their units are released, not acknowledged."""
        for ticket in {id(r.ticket): r.ticket for r in records}.values():
            if ticket is not None:
                ticket.fail(reason)
        self._release(len(records))

    def _abandon_parked(self, parked: _Parked) -> None:
        for ticket in {id(t): t for t in parked.tickets}.values():
            if ticket is not None:
                ticket.fail("stopping: outcome not confirmed by the sink yet")


class _RetryLog:
    """Warns that a sink's sends fail and are retried, and says when it delivers again.

    The first failure is logged at once, later ones every ``RETRY_LOG_EVERY`` seconds with what
    happened since. (Retries used to be counted but not logged: an unreachable SIEM looked like
    a run doing nothing for up to ``max_retry_seconds``.)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.failing = False
        self._warned = False
        self._lock = threading.Lock()
        self._last = -RETRY_LOG_EVERY
        self._since = 0
        self._attempts = 0

    def failed(self, records: int, reason: str, delay: float, left: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.failing = True
            self._since += records
            self._attempts += 1
            if now - self._last < RETRY_LOG_EVERY:
                return
            self._last, self._warned = now, True
            since, attempts, self._since, self._attempts = self._since, self._attempts, 0, 0
        log.warning(
            "sink %s: a send failed; %d records in %d failed sends since the last message will be "
            "sent again (the next in %.1fs; dead-lettered if still failing in %.0fs): %s",
            self.name,
            since,
            attempts,
            delay,
            max(0.0, left),
            reason,
        )

    def recovered(self) -> None:
        """A send succeeded: say so if a warning said it was failing (flapping stays quiet)."""
        with self._lock:
            warned, self.failing, self._warned = self._warned, False, False
        if warned:
            log.info("sink %s: delivering again", self.name)


def _fill(
    batch: list[Record], size: int, records: list[Record], limits: BatchLimits
) -> tuple[list[list[Record]], list[Record], int, list[Record]]:
    """Add ``records`` to the open ``batch`` (``size`` bytes so far) and cut full batches.

    A batch is cut before the record that would take it past ``max_bytes`` (its records' bytes
    plus the sink's ``record_overhead`` each, so the sink can send it as one request) and once it
    holds ``max_records`` or reaches ``max_bytes``; a record too large for any batch gets one of
    its own. Returns the full batches, the open batch, its size and the records this call added
    to the open batch (their tags decide whether it is urgent). Sizes are summed in C
    (running totals, bisected), not a record at a time.
    """
    max_bytes, max_records, overhead = limits.max_bytes, limits.max_records, limits.record_overhead
    sizes = list(map(len, map(_RAW, records)))
    ends = list(accumulate(map(add, sizes, repeat(overhead)), initial=0))
    total = len(records)
    # into the open batch: as many as fit (at least one when it is empty)
    take = min(bisect_right(ends, max_bytes - size) - 1, max_records - len(batch), total)
    if not batch:
        take = max(take, 1)
    added = records[:take]
    batch += added
    size += ends[take]
    ready: list[list[Record]] = []
    if take < total or len(batch) >= max_records or size >= max_bytes:
        ready.append(batch)
        batch, size, added = [], 0, []
    if take < total:
        rest = sizes[take:]
        runs = cut_runs(rest, max_bytes, max_records, separator_bytes=overhead, overhead_bytes=overhead)
        ready.extend(records[take + run.start : take + run.stop] for run in runs[:-1])
        last = runs[-1]
        run_batch = records[take + last.start : take + last.stop]
        run_size = ends[take + last.stop] - ends[take + last.start]
        if len(run_batch) >= max_records or run_size >= max_bytes:
            ready.append(run_batch)
        else:
            batch, size, added = run_batch, run_size, run_batch
    return ready, batch, size, added


def _finish_tickets(done: Counter[object]) -> None:
    for ticket, n in done.items():
        if ticket is not None:
            ticket.finish(n)  # type: ignore[attr-defined]
