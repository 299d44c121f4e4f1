"""Log files that no valid digest lists, found with a few days of keys in memory per folder.

Days are visited in order; a day's log files are listed before that day's digests are read, and
a log file is judged once the walk is ``SLACK_DAYS`` past its day (digests list log files up to
about an hour after delivery; backfill digests later, so the margin is generous).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["SLACK_DAYS", "Coverage", "Uncovered"]

SLACK_DAYS = 3


@dataclass(frozen=True, slots=True)
class Uncovered:
    """A listed log file no valid digest referenced."""

    key: str
    time: dt.datetime | None
    invalid_digest: str | None
    """An invalid digest that did list it, if any."""
    unchecked_digest: str | None = None
    """A digest that could not be checked (its key was unavailable) that did list it, if any."""
    day: dt.date | None = None
    """The day folder it lies in."""


class Coverage:
    """Listed log files of one folder not yet referenced by a valid digest."""

    def __init__(self) -> None:
        self._open: dict[str, tuple[dt.datetime | None, dt.date]] = {}
        self._invalid: dict[str, str] = {}
        self._unchecked: dict[str, str] = {}
        self._early: dict[str, dt.datetime | None] = {}
        self.day: dt.date | None = None

    def listed(self, day: dt.date, logs: list[tuple[str, dt.datetime | None]]) -> None:
        """The log files of ``day`` (already filtered to the window)."""
        self.day = day
        for key, when in logs:
            if self._early.pop(key, 0) == 0:
                self._open[key] = (when, day)

    def referenced(
        self, key: str, when: dt.datetime | None, *, valid: bool, digest: str, checked: bool = True
    ) -> None:
        """A digest lists ``key``; only a valid digest covers it (``checked``: it could be checked)."""
        if key in self._open:
            if valid:
                del self._open[key]
                self._invalid.pop(key, None)
                self._unchecked.pop(key, None)
            else:
                (self._invalid if checked else self._unchecked).setdefault(key, digest)
        elif valid and when is not None and self.day is not None and when.date() > self.day:
            self._early[key] = when  # listed by a digest before its day folder was reached

    def release(self, before: dt.date) -> list[Uncovered]:
        """Judge the log files of day folders before ``before``: those still unreferenced."""
        out = [
            Uncovered(k, t, self._invalid.pop(k, None), self._unchecked.pop(k, None), day)
            for k, (t, day) in list(self._open.items())
            if t is not None and day < before
        ]
        for u in out:
            del self._open[u.key]
        for k, t in list(self._early.items()):
            if t is None or t.date() < before:
                del self._early[k]
        return out

    def finish(self) -> list[Uncovered]:
        """Every log file still unreferenced (the folder's walk is over)."""
        out = [
            Uncovered(k, t, self._invalid.get(k), self._unchecked.get(k), day)
            for k, (t, day) in self._open.items()
        ]
        self._open.clear()
        self._invalid.clear()
        self._unchecked.clear()
        self._early.clear()
        return out
