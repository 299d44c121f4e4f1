"""Compare what a stand-in stored (and what was dead-lettered) with the input.

Every input eventID must be stored by the sink at least once, or be in a dead-letter entry of
that sink with a non-empty reason; anything else is *missing*. Copies beyond the input's own
count are *duplicates*. Dead-letter entries without a reason do not account for anything.
"""

from __future__ import annotations

import base64
import bisect
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from trailrelay.pipeline.deadletter import read_entries

__all__ = ["Tally", "dead_letter_ids", "duplicates_after", "read_dead_letters", "tally"]


def read_dead_letters(folder: Path) -> list[dict[str, Any]]:
    """Every dead-letter entry under ``folder`` (none when it does not exist)."""
    return list(read_entries(folder)) if folder.exists() else []


def _event_id(entry: dict[str, Any]) -> str | None:
    raw: bytes | None = None
    if isinstance(entry.get("raw"), str):
        raw = entry["raw"].encode()
    elif isinstance(entry.get("raw_base64"), str):
        raw = base64.b64decode(entry["raw_base64"])
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = doc.get("eventID") if isinstance(doc, dict) else None
    return str(value) if value is not None else None


def dead_letter_ids(entries: list[dict[str, Any]], sink: str) -> tuple[Counter[str], Counter[str], int]:
    """(eventIDs dead-lettered by ``sink`` with a reason, reasons by kind, entries without a reason)."""
    ids: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    unexplained = 0
    for e in entries:
        if e.get("sink") != sink:
            continue
        reason = e.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            unexplained += 1
            continue
        eid = _event_id(e)
        if eid is not None:
            ids[eid] += 1
        reasons[_reason_kind(reason)] += 1
    return ids, reasons, unexplained


def _reason_kind(reason: str) -> str:
    """The first words of a reason, without ids and numbers (for a short table)."""
    head = reason.split(":", 1)[0]
    return " ".join(w for w in head.split()[:8] if not any(c.isdigit() for c in w))[:80]


@dataclass
class Tally:
    """One sink's accounting against the input."""

    sink: str
    records: int
    stored: int
    missing: list[str] = field(default_factory=list)
    duplicates: int = 0
    dead_lettered: int = 0
    """Input records not stored, each in a dead-letter entry with a reason."""
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    unexplained_dead_letters: int = 0
    unexpected: int = 0
    """Stored copies of eventIDs that are not in the input at all."""

    @property
    def lost(self) -> int:
        """Records neither delivered nor dead-lettered with a reason."""
        return len(self.missing)


def tally(sink: str, expected: Counter[str], stored_ids: list[str], dead: list[dict[str, Any]]) -> Tally:
    """Account for every input record of ``sink``."""
    stored = Counter(stored_ids)
    dl_ids, reasons, unexplained = dead_letter_ids(dead, sink)
    t = Tally(sink, sum(expected.values()), len(stored_ids))
    for eid, n in expected.items():
        have = stored.get(eid, 0)
        if have == 0:
            if dl_ids.get(eid, 0) > 0:
                t.dead_lettered += n
            else:
                t.missing.append(eid)
        t.duplicates += max(0, have - n)
    t.unexpected = sum(n for eid, n in stored.items() if eid not in expected)
    t.dead_letter_reasons = dict(reasons)
    t.unexplained_dead_letters = unexplained
    return t


def duplicates_after(expected: Counter[str], stored_ids: list[str], marks: list[int]) -> list[int]:
    """Duplicates stored after each mark (the stored count at each kill), by the last mark before them.

    ``marks`` must be ascending; the first element of the result counts copies stored before
    the first mark (there should be none).
    """
    seen: Counter[str] = Counter()
    out = [0] * (len(marks) + 1)
    for pos, eid in enumerate(stored_ids):
        seen[eid] += 1
        if seen[eid] > expected.get(eid, 0):
            out[bisect.bisect_right(marks, pos)] += 1
    return out
