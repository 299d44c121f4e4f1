"""Acknowledgement bookkeeping: a unit of work is acked once all its deliveries are final."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from trailrelay.record import Origin
from trailrelay.sources.base import ObjectDone, Work

__all__ = ["Ticket"]

log = logging.getLogger("trailrelay.pipeline")


class Ticket:
    """Counts outstanding (record, sink) deliveries of one unit of work.

    The unit is acknowledged when reading has finished and nothing is outstanding, and
    released instead when anything in it could not be finished (an object could not be
    fetched, a delivery was abandoned at shutdown). Either happens exactly once.
    """

    __slots__ = ("_lock", "before_ack", "closed", "done", "failure", "on_close", "pending", "reading", "work")

    def __init__(
        self,
        work: Work,
        on_close: Callable[[Ticket, bool], None],
        before_ack: Callable[[], None] | None = None,
    ) -> None:
        self.work = work
        self.before_ack = before_ack
        """Called before the unit is acknowledged (the dead letters made durable); if it raises,
        the unit is released instead."""
        self.pending = 0
        self.reading = True
        self.failure: str | None = None
        self.done: list[ObjectDone] = []
        self.closed = False
        self.on_close = on_close
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        """``n`` more deliveries are outstanding."""
        with self._lock:
            self.pending += n

    def finish(self, n: int = 1) -> None:
        """``n`` deliveries reached a final outcome."""
        with self._lock:
            self.pending -= n
            ready = not self.reading and self.pending <= 0 and not self.closed
            if ready:
                self.closed = True
        if ready:
            self._close()

    def object_read(self, origin: Origin, records: int, sha256: str | None) -> None:
        """An object was read to its end (its records may still be in flight)."""
        with self._lock:
            self.done.append(ObjectDone(origin, records, sha256))

    def fail(self, reason: str) -> None:
        """Something in the unit cannot be finished: release it instead of acknowledging."""
        with self._lock:
            if self.failure is None:
                self.failure = reason

    def reading_done(self) -> None:
        """All objects of the unit were read; ack now if nothing is outstanding."""
        with self._lock:
            self.reading = False
            ready = self.pending <= 0 and not self.closed
            if ready:
                self.closed = True
        if ready:
            self._close()

    def abandon(self, reason: str) -> bool:
        """Shutdown: release the unit if it is still open; True when this call released it."""
        with self._lock:
            if self.closed:
                return False
            self.closed = True
            self.failure = self.failure or reason
        self._close()
        return True

    def _close(self) -> None:
        acked = self.failure is None
        if acked and self.before_ack is not None:
            try:
                self.before_ack()
            except Exception as exc:  # its dead letters may be lost: not acknowledged
                acked = False
                self.failure = f"not acknowledged: {exc}"
        try:
            if acked:
                self.work.ack(self.done)
            else:
                self.work.release(self.failure or "")
        except Exception as exc:  # the source will offer it again: at-least-once
            log.warning("acknowledging %s failed: %s", self.work.label, exc)
            acked = False
        self.on_close(self, acked)
