"""The pipeline: source → read → transforms → every sink, with acknowledgement after delivery.

Reader threads take units of work from the source, fetch and parse each object, run the
transforms (filter, risk tagging) and hand every record to each sink's runner. A unit is
acknowledged (SQS message deleted, checkpoint written) only when each of its records has a
final outcome in every sink; anything that cannot finish is released so the source offers it
again. Bad input is dead-lettered with its reason and the run goes on.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from trailrelay.errors import FatalSinkError, FetchError, InputError, TrailrelayError
from trailrelay.pipeline.deadletter import DeadLetterError, DeadLetterStore, GuardedDeadLetters, entry
from trailrelay.pipeline.delivery import SinkRunner
from trailrelay.pipeline.metrics import Metrics
from trailrelay.pipeline.process import join
from trailrelay.pipeline.tickets import Ticket
from trailrelay.record import Origin, Record
from trailrelay.sources.base import ItemStream, ObjectRef, Source, Work
from trailrelay.sources.decompress import DEFAULT_LIMIT
from trailrelay.sources.parse import NotALogFile, Problem, RecordRun
from trailrelay.sources.stream import DEFAULT_MAX_RECORD_BYTES, read_stream

__all__ = ["Pipeline", "RunResult"]

log = logging.getLogger("trailrelay.pipeline")

Transform = Callable[[Record], "Record | None"]

CHUNK = 512
"""Records handed from a reader to the sinks at a time (at least: a transform may ask for more,
with a ``chunk_records`` attribute, as the tagger of a forked worker does)."""


@dataclass
class RunResult:
    """How a run ended."""

    metrics: Metrics
    fatal: str | None = None
    stopped: bool = False
    open_units: int = 0
    drained: bool = False
    """The source ran out of work before any stop: every unit there was, was taken up."""
    stuck: int = 0
    """Records still in a request at the drain deadline (their units released): a process should
    exit without waiting for those requests."""
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no sink failed fatally."""
        return self.fatal is None


class Pipeline:
    """Runs a source into sinks until the source is drained or ``stop`` is set."""

    def __init__(
        self,
        source: Source,
        sinks: dict[str, SinkRunner] | None = None,
        *,
        transforms: list[Transform] | None = None,
        dead_letters: DeadLetterStore,
        metrics: Metrics | None = None,
        stop: threading.Event | None = None,
        readers: int = 2,
        max_object_bytes: int = DEFAULT_LIMIT,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        drain_seconds: float = 30.0,
        progress: Callable[[Metrics], None] | None = None,
        hash_objects: bool = False,
    ) -> None:
        self.source = source
        self.sinks: dict[str, SinkRunner] = sinks or {}
        self.transforms = transforms or []
        self.dead_letters: DeadLetterStore = GuardedDeadLetters(dead_letters, self._dead_letters_failed)
        self.metrics = metrics or Metrics()
        report_failed_acks = getattr(source, "report_failed_acks", None)
        if report_failed_acks is not None:  # acks confirmed later (SQS deletes in batches)
            report_failed_acks(lambda n: self.metrics.add("released", n))
        self.stop = stop or threading.Event()
        self.readers = readers
        self.max_object_bytes = max_object_bytes
        self.max_record_bytes = max_record_bytes
        self.drain_seconds = drain_seconds
        self.hash_objects = hash_objects
        """Keep each object's SHA-256 in the checkpoints, for ``trailrelay verify``."""
        self.progress = progress
        self.fatal: str | None = None
        self._open: set[Ticket] = set()
        self._open_lock = threading.Lock()
        self._source_lock = threading.Lock()
        self._drained = False

    def on_fatal(self, sink: str, exc: FatalSinkError) -> None:
        """A sink cannot work: stop the run without acknowledging unfinished work."""
        if self.fatal is None:
            self.fatal = f"sink {sink!r}: {exc}"
            log.error("stopping: sink %s failed fatally: %s", sink, exc)
        self.stop.set()

    def _dead_letters_failed(self, reason: str) -> None:
        """The dead-letter store fails: stop, as what it should hold cannot be acknowledged."""
        if self.fatal is None:
            self.fatal = reason
            log.error("stopping: %s", reason)
        self.stop.set()

    def run(self) -> RunResult:
        """Process until drained or stopped; returns the result with the run's metrics."""
        self._drained = False
        units = self.source.work(self.stop)
        closing = threading.Event()
        watcher = threading.Thread(target=self._watch_stop, args=(closing,), name="drain-watch", daemon=True)
        watcher.start()
        threads = [
            threading.Thread(target=self._read_loop, args=(units,), name=f"reader-{i}", daemon=True)
            for i in range(self.readers)
        ]
        for t in threads:
            t.start()
        for t in threads:
            join(t)  # not join(): a SIGTERM handed to another thread must still stop the run
        for runner in self.sinks.values():
            runner.close()
        closing.set()
        watcher.join()
        stopped = self.stop.is_set()
        with self._open_lock:
            leftovers = list(self._open)
        released = sum(ticket.abandon("stopping" if stopped else "unfinished") for ticket in leftovers)
        self.source.close()
        self.dead_letters.close()
        stuck = sum(runner.stuck for runner in self.sinks.values())
        return RunResult(self.metrics, self.fatal, stopped, released, drained=self._drained, stuck=stuck)

    def _watch_stop(self, closing: threading.Event) -> None:
        """From the moment a stop (signal, fatal error) comes, sinks get ``drain_seconds`` to finish."""
        while not closing.wait(0.01):  # returns at once when the run ends (Lambda runs one per invocation)
            if self.stop.is_set():
                for runner in self.sinks.values():
                    runner.abandon_after(self.drain_seconds)
                return

    # -- reading --------------------------------------------------------------------------

    def _next(self, units: Iterator[Work]) -> Work | None:
        with self._source_lock:
            if self.stop.is_set():
                return None
            work = next(units, None)
            if work is None and not self.stop.is_set():  # ended by itself, not cut short by a stop
                self._drained = True
            return work

    def _read_loop(self, units: Iterator[Work]) -> None:
        while True:
            try:
                work = self._next(units)
            except Exception as exc:  # listing or receiving failed: stop cleanly, ack nothing more
                self._source_failed(exc)
                return
            if work is None:
                return
            self._process(work)
            if self.progress is not None:
                self.progress(self.metrics)

    def _source_failed(self, exc: Exception) -> None:
        if _operational(exc):
            log.error("source failed: %s", exc)
        else:  # a bug: its traceback is what finds it
            log.error("source failed", exc_info=exc)
        self.fatal = self.fatal or f"source failed: {exc}"
        self.stop.set()

    def _process(self, work: Work) -> None:
        m = self.metrics
        m.last_activity = time.monotonic()
        if work.idle:
            return
        for reason, _location in work.skipped:
            m.bump("skipped", reason)
        ticket = Ticket(work, self._closed, before_ack=self.dead_letters.sync)
        with self._open_lock:
            self._open.add(ticket)
        try:
            for reason, raw in work.invalid:
                self._dead_letter("notification", reason, None, raw)
            for obj in work.objects:
                if self.stop.is_set():
                    ticket.fail("stopping")
                    break
                self._read_object(obj, ticket)
            if work.records:  # ready-made (integrity events): no reading, no transforms
                self._deliver_many(list(work.records), ticket)
        except DeadLetterError as exc:  # the run is stopping: this unit goes back to its source
            ticket.fail(str(exc))
        ticket.reading_done()
        if work.urgent:
            for runner in self.sinks.values():
                runner.flush()

    def _read_object(self, obj: ObjectRef, ticket: Ticket) -> None:
        """Stream one object's records to the sinks; what cannot be read is dead-lettered.

        The object is never held whole: records flow while it is still being read, so a slow
        sink slows the read (back-pressure) and memory follows the batches, not the object.
        """
        m = self.metrics
        origin = obj.origin
        if obj.items is not None:  # the source cut the records itself (standard input)
            self._read_items(obj, obj.items, ticket)
            return
        try:
            raw = obj.reader()
        except InputError as exc:  # will never succeed (too large): trace it and move on
            self._dead_letter("read", str(exc), origin, None)
            return
        except Exception as exc:  # missing, denied, network: leave the unit for redelivery
            self._fetch_failed(origin, exc, ticket)
            return
        stream = read_stream(
            raw,
            origin,
            limit=self.max_object_bytes,
            hash_sha256=self.hash_objects,  # what CloudTrail's digests sign: the uncompressed bytes
            max_record_bytes=self.max_record_bytes,
        )
        count = 0
        try:
            count = self._route_all(stream.batches(), ticket, held=obj.fetch if obj.held else None)
        except NotALogFile as skip:
            m.bump("skipped", skip.kind)
        except FetchError as exc:  # the source failed part-way: what was read stays in flight
            self._fetch_failed(origin, exc, ticket)
        except DeadLetterError:  # no trace can be kept: the run stops (see _process)
            raise
        except Exception as exc:  # a reader bug must not stop the run: trace the object, go on
            log.exception("unexpected error reading %s", origin.location)
            reason = f"unexpected {type(exc).__name__} while reading: {exc}"
            self._dead_letter("read", reason, origin, obj.fetch() if obj.held else None)
        m.add("objects_read")
        m.add("bytes_read", stream.bytes_in)
        ticket.object_read(origin, count, stream.sha256)

    def _read_items(self, obj: ObjectRef, items: Callable[[], ItemStream], ticket: Ticket) -> None:
        """Deliver records a source has already cut (no bytes to parse); same routing as a read."""
        stream = items()
        count = 0
        try:
            count = self._route_all(_in_chunks(stream), ticket)
        except DeadLetterError:  # no trace can be kept: the run stops (see _process)
            raise
        except Exception as exc:  # a bug must not stop the run: trace the unit, go on
            log.exception("unexpected error delivering %s", obj.origin.location)
            self._dead_letter("read", f"unexpected {type(exc).__name__}: {exc}", obj.origin, None)
        self.metrics.add("objects_read")
        self.metrics.add("bytes_read", stream.bytes_in)
        ticket.object_read(obj.origin, count, stream.sha256)

    def _fetch_failed(self, origin: Origin, exc: Exception, ticket: Ticket) -> None:
        log.warning("could not fetch %s: %s", origin.location, exc)
        self.metrics.bump("skipped", "fetch-failed")
        ticket.fail(f"fetch failed: {exc}")

    def _route_all(
        self,
        batches: Iterable[Iterable[Record | Problem]],
        ticket: Ticket,
        *,
        held: Callable[[], bytes] | None = None,
    ) -> int:
        """Transform records and hand them to the sinks in chunks; returns how many were read.

        Records are transformed and cross to the sinks at least ``CHUNK`` at a time (no
        per-record hand-off, lock or counter update); a cut of only records (``RecordRun``) is
        taken whole. A bad item is dead-lettered where it is found and the rest go on.
        ``held``: the object's own bytes (:attr:`ObjectRef.held`), kept whole in the dead letter
        of a problem that stops the reading instead of the excerpt of what was not read.
        """
        chunk: list[Record] = []
        count = 0
        size = max([CHUNK, *(getattr(t, "chunk_records", 0) for t in self.transforms)])
        try:
            for batch in batches:
                if batch.__class__ is RecordRun:
                    assert isinstance(batch, list)
                    count += len(batch)
                    if chunk:
                        chunk += batch
                    else:
                        chunk = batch
                else:
                    for item in batch:
                        if item.__class__ is Problem:
                            assert isinstance(item, Problem)
                            # terminal: the rest of the object is unreadable (corrupt gzip, broken JSON)
                            raw = held() if item.terminal and held is not None else item.raw
                            self._dead_letter_problem(item, raw)
                            continue
                        assert isinstance(item, Record)
                        count += 1
                        chunk.append(item)
                        if len(chunk) >= size:
                            self._transform_and_deliver(chunk, ticket)
                            chunk = []
                if len(chunk) >= size:
                    self._transform_and_deliver(chunk, ticket)
                    chunk = []
        finally:
            if chunk:
                self._transform_and_deliver(chunk, ticket)
            self.metrics.add("records_in", count)
        return count

    def _transform_and_deliver(self, records: list[Record], ticket: Ticket) -> None:
        """Each transform over the chunk (``many`` when it has one: the tagger), then the sinks."""
        kept = records
        for transform in self.transforms:
            many = getattr(transform, "many", None)
            kept = many(kept) if many is not None else [r for r in kept if transform(r) is not None]
        if len(kept) < len(records):
            self.metrics.add("records_filtered", len(records) - len(kept))
        if kept:
            self._deliver_many(kept, ticket)

    def _deliver_many(self, records: list[Record], ticket: Ticket) -> None:
        tagged = [r for r in records if r.tags]
        if tagged:
            self._note_high_risk(tagged)
        if not self.sinks:
            return
        for record in records:
            record.ticket = ticket
        ticket.add(len(records) * len(self.sinks))
        for runner in self.sinks.values():
            runner.put_many(records)

    def _note_high_risk(self, tagged: list[Record]) -> None:
        m = self.metrics
        m.add("tagged", len(tagged))
        with m._lock:
            for record in tagged:
                if len(m.high_risk) >= 1000:
                    break
                r = record.routing
                m.high_risk.append(
                    {
                        "eventName": r.event_name,
                        "eventID": r.event_id,
                        "eventTime": r.event_time.isoformat() if r.event_time else None,
                        "account": r.recipient_account_id,
                        "user": r.user_arn,
                        "rules": [t.rule_id for t in record.tags],
                        "titles": [t.title for t in record.tags],
                    }
                )

    def dead_letter_unsent(self, reason: str, item: Record | Problem) -> None:
        """Trace an item its source cannot offer again (standard input) and that was not finished.

        A record gets one ``sink`` entry per sink, so ``replay-dead-letters`` sends it there (a
        sink that had it already may get it twice: at least once); a problem its own entry, as
        when it is read.
        """
        if item.__class__ is Problem:
            assert isinstance(item, Problem)
            self._dead_letter_problem(item, item.raw)
            return
        assert isinstance(item, Record)
        if not self.sinks:
            self._dead_letter("read", reason, item.origin, item.raw, index=item.index)
            return
        for name in self.sinks:
            self.dead_letters.write(entry("sink", reason, item.origin, item.raw, sink=name, index=item.index))
            self.metrics.bump("dead_lettered", "sink")

    def dead_letter_leftover(self, reason: str, item: Record | Problem) -> None:
        """:meth:`dead_letter_unsent` for an item its source read but never handed on (counted as read)."""
        if item.__class__ is Record:
            self.metrics.add("records_in")
        self.dead_letter_unsent(reason, item)

    def _dead_letter_problem(self, problem: Problem, raw: bytes) -> None:
        """A record (``parse`` stage) or the rest of an object (``read``: terminal) that could not be read."""
        stage = "read" if problem.terminal else "parse"
        size = problem.size if raw is problem.raw else None  # raw: an excerpt of ``size`` bytes
        self._dead_letter(stage, problem.reason, problem.origin, raw, index=problem.index, size=size)

    def _dead_letter(
        self,
        stage: str,
        reason: str,
        origin: Origin | None,
        raw: bytes | None,
        *,
        index: int | None = None,
        size: int | None = None,
    ) -> None:
        self.dead_letters.write(entry(stage, reason, origin, raw, index=index, size=size))
        self.metrics.bump("dead_lettered", stage)

    def _closed(self, ticket: Ticket, acked: bool) -> None:
        with self._open_lock:
            self._open.discard(ticket)
        self.metrics.add("acked" if acked else "released")


def _operational(exc: BaseException) -> bool:
    """Whether a source's failure is the world's or ours (said in a line), not a bug (traceback).

    The world's: denied, throttled, unreachable, no credentials, a missing file. AWS SDK errors
    are known by their module, so the runner stays free of any source's library.
    """
    if isinstance(exc, (TrailrelayError, OSError)):
        return True
    return any(cls.__module__.partition(".")[0] == "botocore" for cls in type(exc).__mro__)


def _in_chunks(items: Iterable[Record | Problem]) -> Iterator[list[Record | Problem]]:
    """Items a source cut itself, ``CHUNK`` at a time (``_route_all`` takes batches)."""
    it = iter(items)
    while chunk := list(itertools.islice(it, CHUNK)):
        yield chunk
