"""The source wrapper that schedules integrity checks around the forwarded work.

:class:`IntegrityChecks` gives the inner source's units of work, and integrity events as units
of their own: periodically (an SQS source) or once the inner source is drained and settled (a
listing source, or ``--once``).
"""

from __future__ import annotations

import datetime as dt
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from trailrelay.integrity.config import DIGEST_LAG_SECONDS
from trailrelay.integrity.records import check_failed_event, integrity_record, iso, prepared
from trailrelay.record import Record
from trailrelay.sources.base import ObjectDone, Source, Work

__all__ = ["EVENTS_PER_UNIT", "CheckFn", "IntegrityChecks", "lookback_window"]

log = logging.getLogger("trailrelay.integrity")

EVENTS_PER_UNIT = 500
"""Integrity events per unit of work: a year of digests never sits in memory at once."""


def lookback_window(lookback: float, now: dt.datetime | None = None) -> tuple[dt.datetime, dt.datetime]:
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
            self._run(*lookback_window(self.lookback, self.clock()), stop)
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
            chunk.append(prepared(event, start, end))
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
            chunk.append(prepared(failed, start, end))
        if chunk:
            halted = halted or not self._put(chunk, stop)
        if self.after_check is not None:
            try:
                self.after_check()
            except Exception as exc:
                log.warning("integrity: cleaning up after check %d failed: %s", number, exc)
        window = (iso(start), iso(end))
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
        listed = ", ".join(f"{v} {n}" for v, n in sorted(bad.items()))
        if not total or "nothing-verified" in bad:
            log.warning(
                "%s; nothing was verified: the check found no CloudTrail digest in the window%s",
                text,
                f"; not valid: {listed}" if listed else "",
            )
        elif bad:
            log.warning("%s; not valid: %s", text, listed)
        else:
            log.info("%s, all valid", text)
