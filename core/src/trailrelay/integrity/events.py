"""Integrity events: one JSON-ready dict per digest, for the SIEM, so alerts can fire on them.

While forwarding, the pipeline keeps each object's SHA-256 in its checkpoints. A periodic check
verifies the window's digests (signature and chain: digests only, a few KB each) and compares
each listed log file's recorded hash with what was forwarded — without reading the log files
again. Each digest yields one event (``verdict`` valid / invalid / missing, the chain link, the
counts of its log files and the named problems); a listed log file not covered by any digest
yields one event of its own; so does a chain whose digests do not cover the window
(``window-not-covered``, ``chain`` "stopped" when they end early: StopLogging), and a check that
found no digest at all (``nothing-verified``). Alert on ``verdict != "valid"`` or
``chain in ("restart", "broken", "stopped")``.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from trailrelay.integrity.chain import Link
from trailrelay.integrity.digests import parse_digest_key
from trailrelay.integrity.keys import KeyRing
from trailrelay.integrity.logcheck import ForwardedHashes, ForwardedLogChecker, LogChecker
from trailrelay.integrity.report import NO_DIGESTS, Problem, VerifyReport
from trailrelay.integrity.span import EDGE_SLACK
from trailrelay.integrity.store import TrailStore
from trailrelay.integrity.verifier import DigestOutcome, Verifier

__all__ = [
    "EVENT_TYPE",
    "CheckpointHashes",
    "coverage_event",
    "integrity_event",
    "nothing_verified_event",
    "problem_event",
    "report_events",
    "run_integrity_check",
]

EVENT_TYPE = "trailrelay:integrity"
"""The ``type`` of every integrity event (a sourcetype / dataset / table name to route on)."""
_LOG_EVENT_KINDS = ("log-not-covered", "log-misdated", "log-pending")


def integrity_event(outcome: DigestOutcome, *, source: str, verified_at: dt.datetime) -> dict[str, Any]:
    """One event for one digest (or one missing digest)."""
    chain = outcome.chain
    verdict = outcome.verdict
    doc = verdict.check.doc if verdict else None
    if verdict is None:
        result, link = "missing", "missing"
    else:
        result = "valid" if outcome.valid else "invalid"
        link = verdict.link.value
    problems = [_problem(p) for p in outcome.problems]
    if verdict is not None and verdict.link is Link.RESTART:
        problems.append(
            {
                "kind": "chain-restart",
                "severity": "warning",
                "location": outcome.location,
                "detail": "chain restarted",
            }
        )
    logs = outcome.logs
    listed = len(doc.log_files) if doc else 0
    return {
        "type": EVENT_TYPE,
        "verdict": result,
        "chain": link,
        "digest": outcome.location,
        "account": chain.folder.account,
        "region": chain.folder.region,
        "trail": chain.trail,
        "home_region": chain.home_region,
        "organization": chain.folder.org,
        "backfill": chain.backfill,
        "digest_start": doc.digest_start_time if doc else None,
        "digest_end": doc.digest_end_time if doc else _iso(_name_end(outcome)),
        "signature": _signature_state(outcome),
        "counts": {
            "log_files": listed,
            "valid": logs.get("valid", 0),
            "modified": logs.get("log-modified", 0),
            "missing": logs.get("log-missing", 0),
            "unreadable": logs.get("log-unreadable", 0),
            "not_forwarded": logs.get("not-forwarded", 0),
        },
        "problems": problems,
        "source": source,
        "verified_at": _iso(verified_at),
    }


def problem_event(problem: Problem, *, source: str, verified_at: dt.datetime) -> dict[str, Any]:
    """One event for a finding that belongs to no digest (a log file no digest lists)."""
    return {
        "type": EVENT_TYPE,
        "verdict": problem.kind,
        "chain": None,
        "digest": problem.digest or None,
        "account": problem.account,
        "region": problem.region,
        "trail": problem.trail or None,
        "problems": [_problem(problem)],
        "source": source,
        "verified_at": _iso(verified_at),
    }


def coverage_event(name: str, report: VerifyReport, *, verified_at: dt.datetime) -> dict[str, Any]:
    """One event for a chain whose digests do not cover the window (``name`` in ``partial_chains``)."""
    span = report.spans[name]
    info = report.chains.get(name, {})
    covered = span.as_dict()
    stopped = span.tail > EDGE_SLACK
    last = info.get("last_digest_end")
    stretches = ", ".join(f"{a} to {b}" for a, b in covered["uncovered"][:5])
    detail = (
        f"digests cover {_percent(covered['covered_fraction'])} of {covered['window_start']} to "
        f"{covered['window_end']}; none for {stretches}"
    )
    if stopped:
        detail += (
            f"; the chain's last digest ended at {last}"
            if last
            else "; the chain has no digest in the window"
        )
        detail += " (logging stopped, log file validation turned off, or the newest digests deleted)"
    return {
        "type": EVENT_TYPE,
        "verdict": "window-not-covered",
        "chain": "stopped" if stopped else None,
        "digest": None,
        "account": info.get("account"),
        "region": info.get("region"),
        "trail": info.get("trail"),
        "home_region": info.get("home_region"),
        "organization": info.get("organization"),
        "backfill": False,
        "last_digest_end": last,
        "coverage": covered,
        "problems": [
            {
                "kind": "window-not-covered",
                "severity": "warning",
                "location": info.get("last_digest") or report.source,
                "detail": detail,
            }
        ],
        "source": report.source,
        "verified_at": _iso(verified_at),
    }


def nothing_verified_event(report: VerifyReport, *, verified_at: dt.datetime) -> dict[str, Any]:
    """The event for a check that found no digest: nothing was verified (never a quiet pass)."""
    detail = "; ".join([NO_DIGESTS, *report.notes])
    return {
        "type": EVENT_TYPE,
        "verdict": "nothing-verified",
        "chain": None,
        "digest": None,
        "account": None,
        "region": None,
        "trail": None,
        "problems": [
            {"kind": "nothing-verified", "severity": "failure", "location": report.source, "detail": detail}
        ],
        "source": report.source,
        "verified_at": _iso(verified_at),
    }


def report_events(report: VerifyReport, *, verified_at: dt.datetime) -> list[dict[str, Any]]:
    """A check's events that belong to no digest, once it is over.

    Log files no digest lists (or not due yet), chains whose digests do not cover the window, and,
    when no digest was found at all, one event saying nothing was verified.
    """
    out = [
        problem_event(p, source=report.source, verified_at=verified_at)
        for p in report.problems
        if p.kind in _LOG_EVENT_KINDS
    ]
    out.extend(coverage_event(name, report, verified_at=verified_at) for name in report.partial_chains)
    if report.digests_checked == 0 and not report.counts["digests-unchecked"]:
        out.append(nothing_verified_event(report, verified_at=verified_at))
    return out


def run_integrity_check(
    store: TrailStore,
    keys: KeyRing,
    emit: Callable[[dict[str, Any]], None],
    *,
    forwarded: ForwardedHashes | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    workers: int = 4,
) -> VerifyReport:
    """Verify the window and ``emit`` one event per digest (log files compared with ``forwarded``).

    Without ``forwarded`` the log files are read and hashed, as ``trailrelay verify`` does.
    """
    now = dt.datetime.now(dt.UTC)
    checker: LogChecker | None = ForwardedLogChecker(forwarded) if forwarded is not None else None

    def on_digest(outcome: DigestOutcome) -> None:
        emit(integrity_event(outcome, source=store.location, verified_at=now))

    report = Verifier(
        store, keys, start=start, end=end, workers=workers, log_checker=checker, on_digest=on_digest
    ).run()
    for event in report_events(report, verified_at=now):
        emit(event)
    return report


class CheckpointHashes:
    """The SHA-256 kept in the pipeline's checkpoint database (``trailrelay.state``), read-only.

    ``source`` is the checkpoint source id (``s3://BUCKET/`` for an S3 listing);
    ``key_for(bucket, key)`` maps a digest's log file to the checkpoint key (default: the key).
    The hash must be of the uncompressed content, as digests record it.
    """

    def __init__(
        self, path: Path | str, source: str, key_for: Callable[[str, str], str] | None = None
    ) -> None:
        self.source = source
        self.key_for = key_for or (lambda _bucket, key: key)
        self._db = sqlite3.connect(f"file:{Path(path)}?mode=ro", uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def sha256(self, bucket: str, key: str) -> str | None:
        """The kept hash of ``bucket/key``, or None when it was not forwarded."""
        with self._lock:
            row = self._db.execute(
                "SELECT sha256 FROM objects WHERE source = ? AND key = ?",
                (self.source, self.key_for(bucket, key)),
            ).fetchone()
        return str(row[0]) if row and row[0] else None

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()


def _percent(fraction: float) -> str:
    return f"{math.floor(fraction * 1000) / 10:.1f}%"  # never rounds a gap up to 100%


def _problem(p: Problem) -> dict[str, Any]:
    return {"kind": p.kind, "severity": p.severity.value, "location": p.location, "detail": p.detail}


def _signature_state(outcome: DigestOutcome) -> str:
    if outcome.verdict is None:
        return "missing"
    kinds = {p.kind for p in outcome.verdict.problems}
    for kind in ("digest-signature-invalid", "digest-signature-missing", "digest-unknown-key"):
        if kind in kinds:
            return kind.removeprefix("digest-")
    return "valid" if outcome.verdict.check.status.value == "valid" else "not-checked"


def _name_end(outcome: DigestOutcome) -> dt.datetime | None:
    name = parse_digest_key(outcome.location.split("/", 3)[-1])
    return name.end if name else None


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
