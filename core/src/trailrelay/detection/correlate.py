"""Count-in-window correlation (Sigma ``correlation: type: event_count`` / ``value_count``).

For each group (the values of the correlation's ``group-by`` fields) we keep the event times
(and, for ``value_count``, the counted field's value) of matching records inside the window,
sorted. A record is tagged when it lies inside some window of ``timespan`` length that holds
``>= N`` (or ``> N``) events / distinct values; so the record that reaches the threshold and every
later matching record of that group while the window stays over it carry the tag. Records that
passed earlier were already forwarded and stay untagged: a stream cannot be rewound.

Semantics, chosen to match what the SIEM searches do and to stay safe in a stream:

* Time is the record's ``eventTime``, not arrival time. Records may arrive out of order (trail
  objects are not time-ordered inside or across files, and a backfill reads accounts and days
  in parallel), so each group keeps its own clock: a record older than the group's newest event
  minus ``timespan + lateness`` is too late to count and is ignored (counted in ``late``).
* A record redelivered with the same ``eventID`` (at-least-once sources) is not counted twice.
* A record without ``eventTime``, or without one of the group-by fields, is not counted (as
  ``stats ... by`` drops events with a null by-field in Splunk).
* Memory is bounded: old entries are pruned on every update, groups idle for a while (no update
  in the last few thousand observations and nothing recent by the overall newest event time) are
  swept, and at most ``max_groups`` groups are kept (the least recently updated are dropped).

A record is counted in two steps: :meth:`Window.observation` (what the record gives: time, group,
eventID, value) and :meth:`Window.count` (the window's verdict), so forked workers can have the
supervisor count (:mod:`.shared`). Thread-safe: the pipeline's reader threads may count
concurrently.
"""

from __future__ import annotations

import threading
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from trailrelay.record import Record, RiskTag

__all__ = ["Group", "Observation", "Window"]

_SWEEP_EVERY = 4096

Observation = tuple[float, tuple[Any, ...], str | None, Any]
"""What a window counts of one record: its time, its group, its eventID and the counted value."""


@dataclass(slots=True)
class Group:
    """Entries of one group, sorted by time: times, ids and (for value_count) values in step."""

    times: list[float] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    values: list[Any] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    touched: int = 0
    """The window's update counter when this group last changed."""


class Window:
    """One correlation rule's state: count matching records per group in a sliding window."""

    def __init__(
        self,
        tag: RiskTag,
        *,
        group_by: Sequence[Callable[[Record], Any]],
        timespan: float,
        threshold: int,
        strict: bool,
        value_of: Callable[[Record], Any] | None = None,
        lateness: float | None = None,
        max_groups: int = 100_000,
    ) -> None:
        self.tag = tag
        self.group_by = tuple(group_by)
        self.timespan = float(timespan)
        self.threshold = threshold
        self.strict = strict
        """True for ``gt`` (more than N), False for ``gte`` (at least N)."""
        self.value_of = value_of
        self.lateness = self.timespan if lateness is None else float(lateness)
        self.max_groups = max_groups
        self.groups: dict[Hashable, Group] = {}
        self.watermark = float("-inf")
        self.late = 0
        self.ungrouped = 0
        self._updates = 0
        self._serial = 0
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget every group (tests, benchmarks)."""
        with self._lock:
            self.groups.clear()
            self.watermark = float("-inf")

    def observation(self, record: Record) -> Observation | None:
        """What the window counts of a record: (time, group, eventID, value); None when ungrouped."""
        t = record.epoch
        key = self._key(record)
        if t is None or key is None:
            self.ungrouped += 1
            return None
        value = self.value_of(record) if self.value_of is not None else None
        if self.value_of is not None and value is None:
            self.ungrouped += 1
            return None
        return t, key, record.event_id, value

    def count(self, t: float, key: tuple[Any, ...], event_id: str | None, value: Any) -> bool:
        """Count one observation; True when it lies in a window over the threshold."""
        keep = self.timespan + self.lateness
        with self._lock:
            self.watermark = max(self.watermark, t)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = Group()
            elif group.times and t < group.times[-1] - keep:
                self.late += 1
                return False
            index = self._insert(group, t, event_id, value)
            self._prune(group, group.times[-1] - keep)
            hit = self._over(group, t, index)
            self._updates += 1
            group.touched = self._updates
            if self._updates % _SWEEP_EVERY == 0 or len(self.groups) > self.max_groups:
                self._sweep(self.watermark - keep)
            return hit

    def _key(self, record: Record) -> tuple[Any, ...] | None:
        values = []
        for get in self.group_by:
            v = get(record)
            if v is None:
                return None
            values.append(v)
        return tuple(values)

    def _insert(self, group: Group, t: float, event_id: str | None, value: Any) -> int | None:
        """Add an entry; None when the event was already counted (redelivery)."""
        if event_id is None:
            self._serial += 1
            event_id = f"\x00{self._serial}"  # no id: count it, nothing to de-duplicate against
        elif event_id in group.seen:
            return None
        times = group.times
        if not times or t >= times[-1]:
            index = len(times)
            times.append(t)
            group.ids.append(event_id)
            group.values.append(value)
        else:
            index = bisect_right(times, t)
            insort(times, t)
            group.ids.insert(index, event_id)
            group.values.insert(index, value)
        group.seen.add(event_id)
        return index

    @staticmethod
    def _prune(group: Group, horizon: float) -> None:
        times = group.times
        if times and times[0] < horizon:
            cut = bisect_left(times, horizon)
            group.seen.difference_update(group.ids[:cut])
            del times[:cut]
            del group.ids[:cut]
            del group.values[:cut]

    def _over(self, group: Group, t: float, index: int | None) -> bool:
        times = group.times
        if not times:
            return False
        span = self.timespan
        if index is not None and index == len(times) - 1:
            # in order (the common case): only the window ending at t can newly cross the threshold
            return self._enough(group, bisect_left(times, t - span), len(times))
        # out of order or a redelivery: any window [start, start + span] that contains t
        first = bisect_left(times, t - span)
        last = bisect_right(times, t)
        for start in range(first, last):
            if self._enough(group, start, bisect_right(times, times[start] + span)):
                return True
        return False

    def _enough(self, group: Group, start: int, end: int) -> bool:
        count = end - start if self.value_of is None else len(set(group.values[start:end]))
        return count > self.threshold if self.strict else count >= self.threshold

    def _sweep(self, horizon: float) -> None:
        idle = self._updates - _SWEEP_EVERY
        stale = [
            k for k, g in self.groups.items() if g.touched <= idle and (not g.times or g.times[-1] < horizon)
        ]
        for k in stale:
            del self.groups[k]
        overflow = len(self.groups) - self.max_groups
        if overflow > 0:
            oldest = sorted(self.groups, key=lambda k: self.groups[k].touched)[:overflow]
            for k in oldest:
                del self.groups[k]
