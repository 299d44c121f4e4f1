"""Standard input as a source: any shape the files source reads, streamed, cut into units of work.

``[source] type = "stdin"`` (or ``type = "files"`` with ``path = "-"``) reads one stream:
``aws s3 cp s3://bucket/key.json.gz - | trailrelay forward -c FILE``, ``cat *.json.gz |``
(CloudTrail files one after another are read in turn), or a process writing NDJSON forever.
:func:`~trailrelay.sources.stream.read_stream` parses it as it arrives (gzip by its magic
bytes, ``{"Records": [...]}``, arrays, NDJSON, EventBridge envelopes), holding one chunk and
the record being assembled, never the stream.

The stream is cut into *units*: every ``unit_records`` records, or ``unit_seconds`` after a
unit's first record, whichever comes first, and at the end of the input. A unit is one
:class:`~trailrelay.sources.base.Work` whose object hands the pipeline the records already cut
(``ObjectRef.items``), so they are tagged, filtered and delivered like any file's, and the unit
is acknowledged once every one of its records is final in every sink. Memory stays bounded: a
slow sink blocks the pipeline's readers, they stop taking units, the queue between the parser
thread and the units fills, the parser stops reading, and the writer on the other end of the
pipe blocks.

Standard input cannot be read twice. A unit that cannot be finished (the run is stopped, a sink
fails fatally) is released; its records are then written to the dead-letter store with the
reason, so nothing is lost silently, and the run exits with the "unfinished" status. So are the
items parsed but not yet in a unit when the run stops (``close``). The pipe is read through its
descriptor, not ``sys.stdin.buffer``: the parser thread may still be waiting in a read when the
process exits, and a buffered reader's lock held there aborts the interpreter's shutdown.
"""

from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

from trailrelay.errors import FetchError
from trailrelay.record import Origin, Record
from trailrelay.sources.base import ObjectDone, ObjectRef, Work
from trailrelay.sources.decompress import DEFAULT_LIMIT
from trailrelay.sources.parse import NotALogFile, Problem
from trailrelay.sources.stream import DEFAULT_MAX_RECORD_BYTES, read_stream

__all__ = ["STDIN_ORIGIN", "StdinSource"]

log = logging.getLogger("trailrelay.sources.stdin")

STDIN_ORIGIN = Origin("stdin", "stdin")
"""The origin of every record read from standard input (``source`` in Splunk, dead letters)."""

_EOF = object()
_QUEUE_ITEMS = 4096
"""Items parsed ahead of the units (the parser blocks beyond it)."""


class _Available:
    """A pipe read as it arrives: ``read(n)`` returns what is there (at most n), not n bytes.

    ``BufferedReader.read(n)`` waits until n bytes came or the pipe closed; a writer producing a
    line a second would hold records back for minutes. ``read1`` returns after one raw read, and
    a descriptor (the process's standard input) is read with one ``os.read``.
    """

    def __init__(self, raw: BinaryIO | int) -> None:
        self._raw = raw
        self._read1 = None if isinstance(raw, int) else getattr(raw, "read1", None)

    def read(self, n: int = -1) -> bytes:
        """Up to ``n`` bytes, as soon as any are available; b"" at the end of the input."""
        if isinstance(self._raw, int):
            return os.read(self._raw, n if n > 0 else 1 << 16)
        if self._read1 is not None:
            data: bytes = self._read1(n)
            return data
        return self._raw.read(n)

    def close(self) -> None:
        """Standard input stays open (the process may still print to its terminal)."""


class _Slice:
    """The records (and problems) of one unit, handed to the pipeline as its object's items."""

    def __init__(self, items: list[Record | Problem], nbytes: int) -> None:
        self.items = items
        self.bytes_in = nbytes
        self.sha256: str | None = None
        self.taken = False
        """The pipeline took the items (they count as read; their problems are dead-lettered)."""

    def take(self) -> _Slice:
        self.taken = True
        return self

    def __iter__(self) -> Iterator[Record | Problem]:
        return iter(self.items)


class StdinSource:
    """Reads standard input (or any binary stream) once, to its end; units as described above."""

    def __init__(
        self,
        stream: BinaryIO | None = None,
        *,
        unit_records: int = 1000,
        unit_seconds: float = 1.0,
        max_object_bytes: int = DEFAULT_LIMIT,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        lost: Callable[[str, Record | Problem], None] | None = None,
        leftover: Callable[[str, Record | Problem], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.unit_records = unit_records
        self.unit_seconds = unit_seconds
        self.max_object_bytes = max_object_bytes
        self.max_record_bytes = max_record_bytes
        self.on_lost = lost
        """Told of each record of a released unit (the pipeline dead-letters it with the reason)."""
        self.on_leftover = leftover
        """Told of each item parsed but never handed on, at the stop (dead-lettered likewise, and
        counted as read)."""
        self.units = 0
        self.lost = 0
        """Records of released units and records left over at the stop (dead-lettered: standard
        input cannot be read again)."""
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(maxsize=_QUEUE_ITEMS)
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._leftover_lock = threading.Lock()
        self._gathered: list[Record | Problem] = []
        """Items taken from the queue for the next unit, not yet handed on."""

    # -- the parser thread -----------------------------------------------------------------

    def _parse(self) -> None:
        try:
            raw = self.stream if self.stream is not None else sys.stdin.fileno()
        except (AttributeError, ValueError, OSError) as exc:  # no standard input at all
            self._put(FetchError(f"standard input cannot be read: {exc}"))
            self._put((_EOF,))
            return
        stream = read_stream(
            _Available(raw),  # type: ignore[arg-type]  # read/close is all read_stream uses
            STDIN_ORIGIN,
            limit=self.max_object_bytes,
            max_record_bytes=self.max_record_bytes,
        )
        try:
            for batch in stream.batches():
                items = iter(batch)
                for item in items:
                    if not self._put(item):  # stopped: what this cut still holds is traced too
                        self._leftovers(list(items), "the run stopped")
                        return
        except NotALogFile as skip:  # a digest piped in: nothing to forward
            log.warning("standard input is not a CloudTrail log file (%s): nothing to forward", skip.kind)
        except Exception as exc:  # a failing pipe: the source failed, the run stops
            self._put(exc if isinstance(exc, FetchError) else FetchError(f"reading standard input: {exc}"))
        finally:
            self._put((_EOF,))

    def _put(self, item: object) -> bool:
        """Queue ``item`` for the units; False (the item traced as a leftover) once the source closed."""
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=0.2)
            except queue.Full:
                continue
            if self._closed.is_set():  # closed while it went in: its drain may have missed it
                self._drain("the run stopped")
            return True
        self._leftovers([item], "the run stopped")
        return False

    def _drain(self, why: str) -> None:
        """Trace everything still queued (the source is closing)."""
        left: list[object] = []
        while True:
            try:
                left.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self._leftovers(left, why)

    def _leftovers(self, items: list[object], why: str) -> None:
        """Records and problems parsed but never handed to the pipeline: dead-lettered, not lost."""
        kept = [i for i in items if isinstance(i, Record | Problem)]
        if not kept:
            return
        records = sum(1 for i in kept if isinstance(i, Record))
        with self._leftover_lock:
            self.lost += records
        log.warning(
            "standard input: %d records read but not handed on (%s): dead-lettered "
            "(standard input cannot be read again)",
            records,
            why,
        )
        if self.on_leftover is None:
            return
        reason = f"not delivered: {why} before it was handed on; standard input cannot be read again"
        for item in kept:
            try:
                self.on_leftover(reason, item)
            except Exception as exc:  # the store failed: the run is stopping on that already
                log.warning("standard input: could not dead-letter a leftover item: %s", exc)
                return

    # -- units -----------------------------------------------------------------------------

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """Units of records until the input ends (or ``stop``); an idle unit while the input is quiet."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._parse, name="stdin-parser", daemon=True)
            self._thread.start()
        try:
            yield from self._units(stop)
        finally:  # stopped while gathering the next unit: its items are traced, not dropped
            self._leftovers(list(self._gathered), "the run stopped")
            self._gathered.clear()

    def _units(self, stop: threading.Event) -> Iterator[Work]:
        items = self._gathered  # never holds a unit already handed on: it is cut before the yield
        records = 0
        started = 0.0
        first_index = 0
        nbytes = 0
        while not stop.is_set():
            wait = 0.2 if not items else max(0.0, started + self.unit_seconds - self._clock())
            try:
                item = self._queue.get(timeout=min(wait, 0.2))
            except queue.Empty:
                if items and self._clock() >= started + self.unit_seconds:
                    yield self._cut(records, first_index, nbytes)
                    first_index += records
                    records, nbytes = 0, 0
                elif not items:
                    yield Work([], idle=True, label="stdin: waiting for input")
                continue
            if isinstance(item, tuple) and item and item[0] is _EOF:
                if items:
                    yield self._cut(records, first_index, nbytes)
                return
            if isinstance(item, Exception):
                raise item
            assert isinstance(item, Record | Problem)
            if not items:
                started = self._clock()
            items.append(item)
            if isinstance(item, Record):
                records += 1
                nbytes += len(item.raw)
            if records >= self.unit_records:
                yield self._cut(records, first_index, nbytes)
                first_index += records
                records, nbytes = 0, 0

    def _cut(self, records: int, first: int, nbytes: int) -> Work:
        """The gathered items as a unit; gathering starts again empty."""
        unit = self._unit(list(self._gathered), records, first, nbytes)
        self._gathered.clear()
        return unit

    def _unit(self, items: list[Record | Problem], records: int, first: int, nbytes: int) -> Work:
        self.units += 1
        n = self.units
        label = f"stdin unit {n} (records {first + 1}-{first + records})"
        origin = Origin("stdin", f"stdin#unit-{n}")
        part = _Slice(items, nbytes)
        ref = ObjectRef(origin, fetch=_no_bytes, items=part.take)
        return Work([ref], ack=_nothing_to_ack, release=self._releaser(part, label), label=label)

    def _releaser(self, part: _Slice, label: str) -> Callable[[str], None]:
        items = part.items

        def release(reason: str) -> None:
            if not part.taken:  # released before the pipeline read it (the run was stopping)
                self._leftovers(list(items), f"the run ended ({reason})")
                return
            kept = [i for i in items if isinstance(i, Record)]
            self.lost += len(kept)
            log.warning(
                "%s not finished (%s): %d records dead-lettered (standard input cannot be read again)",
                label,
                reason,
                len(kept),
            )
            if self.on_lost is None:
                return
            why = f"not delivered before the run ended ({reason}); standard input cannot be read again"
            for record in kept:
                self.on_lost(why, record)

        return release

    def close(self) -> None:
        """Stop the parser thread (it may be blocked reading the pipe: it is a daemon).

        What it parsed and no unit took is traced as leftovers (dead-lettered with the reason).
        """
        self._closed.set()
        self._drain("the run stopped")


def _no_bytes() -> bytes:
    raise FetchError("standard input is read once, by the source: its units carry their records")


def _nothing_to_ack(_done: list[ObjectDone]) -> None:
    """Standard input keeps no checkpoint: a finished unit needs no acknowledgement."""
