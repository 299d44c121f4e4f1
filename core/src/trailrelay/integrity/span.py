"""How much of the asked window one chain's digests cover, and where they do not.

CloudTrail delivers a digest for every hour of every chain, with or without log files in it, so
a window that a chain's digests do not reach end to end was not proven: the trail did not exist
yet, logging stopped and never restarted, or the newest (or oldest) digests are gone. A verify
that found nothing wrong in half a window must say it saw only half.

The start is judged only when the run has one (without ``--start`` a chain is judged from its
first digest); the end is ``--end`` or now, less the two hours a digest may take to arrive.
Edges within ``EDGE_SLACK`` count as covered: digest hours start wherever the trail began.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EDGE_SLACK", "ChainSpan", "SpanResult"]

EDGE_SLACK = dt.timedelta(minutes=15)
_JOIN = dt.timedelta(minutes=1)
"""Consecutive digests meet exactly (one starts where the previous ended); allow clock rounding."""
_MAX_LISTED = 20


@dataclass(frozen=True, slots=True)
class SpanResult:
    """One chain's coverage of the window."""

    window_start: dt.datetime
    window_end: dt.datetime
    covered: dt.timedelta
    uncovered: list[tuple[dt.datetime, dt.datetime]]
    head: dt.timedelta
    """Uncovered time between the window's start and the chain's first digest."""
    tail: dt.timedelta
    """Uncovered time between the chain's last digest and the window's end."""

    @property
    def length(self) -> dt.timedelta:
        """The judged window's length."""
        return self.window_end - self.window_start

    @property
    def partial(self) -> bool:
        """The window's start or end is not reached by the chain's digests."""
        return self.head > EDGE_SLACK or self.tail > EDGE_SLACK

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the judged window, the covered fraction and the uncovered stretches."""
        length = self.length.total_seconds()
        return {
            "window_start": _iso(self.window_start),
            "window_end": _iso(self.window_end),
            "covered_fraction": round(self.covered.total_seconds() / length, 4) if length > 0 else 1.0,
            "covered_seconds": int(self.covered.total_seconds()),
            "window_seconds": int(length),
            "uncovered": [[_iso(a), _iso(b)] for a, b in self.uncovered[:_MAX_LISTED]],
        }


@dataclass(eq=False)
class ChainSpan:
    """The stretches of time one chain's digests cover, fed in time order (a few intervals)."""

    intervals: list[list[dt.datetime]] = field(default_factory=list)

    def add(self, start: dt.datetime, end: dt.datetime) -> None:
        """A digest covering ``[start, end]``."""
        if end < start:
            start, end = end, start
        last = self.intervals[-1] if self.intervals else None
        if last is not None and start <= last[1] + _JOIN:
            last[0] = min(last[0], start)
            last[1] = max(last[1], end)
            return
        self.intervals.append([start, end])

    def judge(self, start: dt.datetime | None, end: dt.datetime) -> SpanResult | None:
        """Coverage of ``[start or the first digest, end]``; None when there is nothing to judge.

        Without digests, a window with a start is judged too: none of it is covered.
        """
        if not self.intervals and start is None:
            return None
        ws = start if start is not None else self.intervals[0][0]
        if end <= ws:
            return None
        if not self.intervals:
            return SpanResult(ws, end, dt.timedelta(0), [(ws, end)], end - ws, end - ws)
        covered = dt.timedelta(0)
        uncovered: list[tuple[dt.datetime, dt.datetime]] = []
        cursor = ws
        for begin, finish in self.intervals:
            a, b = max(begin, ws), min(finish, end)
            if b <= a:
                continue
            if a > cursor:
                uncovered.append((cursor, a))
            covered += b - a
            cursor = max(cursor, b)
        if cursor < end:
            uncovered.append((cursor, end))
        first, last = self.intervals[0][0], self.intervals[-1][1]
        head = max(dt.timedelta(0), min(first, end) - ws)
        tail = max(dt.timedelta(0), end - max(last, ws))
        return SpanResult(ws, end, covered, uncovered, head, tail)


def _iso(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
