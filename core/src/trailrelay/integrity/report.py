"""What a verification found: named problems, counts, a human summary (rich) and JSON.

Every problem has a stable ``kind`` (alerts and the integrity events key on it) and a severity:
a *failure* means something could not be proven to be what AWS wrote; *unchecked* means it could
not be checked at all (its digest's public key could not be fetched), which proves nothing either
way; a *warning* (a chain restart) means the chain has a gap that only stopping logging or turning
validation off makes; a *notice* (a log file whose digest is not due yet) changes nothing.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from trailrelay.integrity.span import SpanResult

__all__ = [
    "EXIT_FAILED",
    "EXIT_GAPS",
    "EXIT_NOTHING",
    "EXIT_OK",
    "EXIT_PARTIAL",
    "EXIT_UNCHECKED",
    "KINDS",
    "NO_DIGESTS",
    "Problem",
    "Severity",
    "VerifyReport",
]

EXIT_OK = 0
"""Every digest and log file in the window verified, and the digests cover the whole window."""
EXIT_FAILED = 1
"""At least one file or digest could not be verified."""
EXIT_UNCHECKED = 3
"""Nothing failed, but digests could not be checked: their public keys could not be fetched."""
EXIT_GAPS = 4
"""Everything verified, but a chain was restarted (logging was stopped or validation turned off)."""
EXIT_NOTHING = 5
"""No digest was found in the window, so nothing was verified (wrong bucket or prefix, no logs)."""
EXIT_PARTIAL = 6
"""What was found verified, but the digests cover only part of the window (its start or end)."""


NO_DIGESTS = (
    "no CloudTrail digest files in the window (a wrong bucket or prefix, a window without logs, or log "
    "file validation turned off)"
)
"""Why nothing was found (``verify``'s and ``mirror``'s exit status 5)."""


class Severity(StrEnum):
    """How much a problem matters for the verdict."""

    FAILURE = "failure"
    UNCHECKED = "unchecked"
    WARNING = "warning"
    NOTICE = "notice"


KINDS: dict[str, tuple[Severity, str]] = {
    "log-modified": (Severity.FAILURE, "log file changed since CloudTrail delivered it (hash mismatch)"),
    "log-missing": (Severity.FAILURE, "log file listed in a digest is gone (deleted)"),
    "log-unreadable": (Severity.FAILURE, "log file could not be read, so it could not be checked"),
    "log-not-covered": (Severity.FAILURE, "log file that no valid digest lists (added, or not provable)"),
    "log-misdated": (
        Severity.FAILURE,
        "log file no valid digest lists, named with a future time or one not of its day folder (planted)",
    ),
    "digest-missing": (Severity.FAILURE, "digest referenced by the chain is gone (deleted)"),
    "digest-signature-invalid": (Severity.FAILURE, "digest signature does not verify (forged or altered)"),
    "digest-signature-missing": (Severity.FAILURE, "digest has no signature to check"),
    "digest-unknown-key": (Severity.FAILURE, "digest names a public key fingerprint that is not known"),
    "digest-key-unavailable": (
        Severity.UNCHECKED,
        "digest not checked: its public key could not be fetched (ListPublicKeys failed)",
    ),
    "log-unchecked": (Severity.UNCHECKED, "log file listed only by digests that could not be checked"),
    "digest-invalid-format": (Severity.FAILURE, "digest is not a readable CloudTrail digest"),
    "digest-moved": (Severity.FAILURE, "digest is not at the location it was delivered to"),
    "digest-chain-mismatch": (Severity.FAILURE, "digest does not match what the next digest recorded for it"),
    "digest-unreadable": (Severity.FAILURE, "digest could not be read"),
    "chain-restart": (Severity.WARNING, "chain restarted: logging was stopped or validation turned off"),
    "chain-truncated": (
        Severity.NOTICE,
        "chain's oldest digest has a predecessor that is not there (expired?)",
    ),
    "log-pending": (Severity.NOTICE, "log file newer than the newest digest (its digest is not due yet)"),
}
"""Every problem kind with its severity and meaning."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding, named by ``kind``, at one location (``s3://bucket/key``)."""

    kind: str
    location: str
    detail: str
    account: str = ""
    region: str = ""
    trail: str = ""
    digest: str = ""
    """The digest this finding is about or came from, when there is one."""

    @property
    def severity(self) -> Severity:
        """How this kind counts for the verdict."""
        return KINDS[self.kind][0]

    def as_dict(self) -> dict[str, Any]:
        """The problem as a JSON-ready dict (with its severity)."""
        return {**asdict(self), "severity": self.severity.value}


@dataclass
class VerifyReport:
    """The result of one ``trailrelay verify`` run; built by the verifier, read by the CLI."""

    source: str
    start: dt.datetime | None
    end: dt.datetime | None
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[Problem] = field(default_factory=list)
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per chain (``account/region/trail[/backfill]``): digests seen, first and last end time, restarts."""
    notes: list[str] = field(default_factory=list)
    """Conditions of the run itself (e.g. ListPublicKeys failed in a region)."""
    spans: dict[str, SpanResult] = field(default_factory=dict)
    """Per chain: how much of the window its digests cover (backfill chains are not judged)."""
    keys: list[dict[str, Any]] = field(default_factory=list)
    """Each public key used: fingerprint, region, source (file, cloudtrail, mirror), where, digests."""

    def add(self, problem: Problem) -> None:
        """Record a problem and count it by kind."""
        self.problems.append(problem)
        self.counts[problem.kind] += 1

    def add_span(self, chain: str, span: SpanResult) -> None:
        """Record how much of the window one chain's digests cover."""
        self.spans[chain] = span
        if chain in self.chains:
            self.chains[chain]["coverage"] = span.as_dict()

    @property
    def digests_checked(self) -> int:
        """Digests found in the window and checked, whatever their verdict."""
        return self.counts["digests-valid"] + self.counts["digests-invalid"]

    @property
    def partial_chains(self) -> list[str]:
        """Chains whose digests do not reach the window's start or end."""
        return sorted(name for name, span in self.spans.items() if span.partial)

    @property
    def mirror_keys_only(self) -> list[str]:
        """Fingerprints of keys taken from the verified copy itself, not confirmed by CloudTrail."""
        return [k["fingerprint"] for k in self.keys if k["source"] == "mirror"]

    @property
    def covered_fraction(self) -> float | None:
        """The share of the chains' windows their digests cover (None when nothing was judged)."""
        total = sum(s.length.total_seconds() for s in self.spans.values())
        if total <= 0:
            return None
        return sum(s.covered.total_seconds() for s in self.spans.values()) / total

    @property
    def failures(self) -> int:
        """Problems that make the verdict a failure."""
        return sum(1 for p in self.problems if p.severity is Severity.FAILURE)

    @property
    def unchecked(self) -> int:
        """Problems that say something could not be checked (its digest's key was unavailable)."""
        return sum(1 for p in self.problems if p.severity is Severity.UNCHECKED)

    @property
    def verified(self) -> bool:
        """True when digests were found and every digest and log file in the window verified."""
        return self.failures == 0 and self.unchecked == 0 and self.digests_checked > 0

    @property
    def exit_status(self) -> int:
        """1 failures; 5 nothing found; 3 not checked; 6 window covered in part; 4 a restart; else 0."""
        if self.failures:
            return EXIT_FAILED
        if self.digests_checked == 0 and not self.unchecked:
            return EXIT_NOTHING
        if self.unchecked:
            return EXIT_UNCHECKED
        if self.partial_chains:
            return EXIT_PARTIAL
        if self.counts["chain-restart"]:
            return EXIT_GAPS
        return EXIT_OK

    @property
    def verdict(self) -> str:
        """The one-line verdict, without markup."""
        status = self.exit_status
        if status == EXIT_NOTHING:
            return f"NOTHING VERIFIED: {NO_DIGESTS}"
        if status == EXIT_FAILED:
            if self.digests_checked == 0 and not self.unchecked:
                return (
                    "NOT VERIFIED: log files exist that no digest covers, and the window holds no digest "
                    "(deleted, or log file validation turned off)"
                )
            return "NOT VERIFIED"
        if status == EXIT_UNCHECKED:
            return (
                f"NOT CHECKED: {self.counts['digests-unchecked']:,} digests could not be checked, their "
                "public keys could not be fetched (ListPublicKeys failed; the notes say why)"
            )
        if status == EXIT_PARTIAL:
            return f"VERIFIED ONLY IN PART: digests cover {_percent(self.covered_fraction)} of the window"
        text = "VERIFIED, WITH CHAIN GAPS" if status == EXIT_GAPS else "VERIFIED"
        if self.mirror_keys_only:
            text += (
                " WITH KEYS FROM THE MIRROR ONLY: not confirmed by CloudTrail's ListPublicKeys, so whoever "
                "can write the mirror could have planted them"
            )
        return text

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "source": self.source,
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "verified": self.verified,
            "exit_status": self.exit_status,
            "verdict": self.verdict,
            "window_covered": None if (f := self.covered_fraction) is None else round(f, 4),
            "partial_chains": self.partial_chains,
            "keys": [dict(k) for k in self.keys],
            "keys_confirmed": not self.mirror_keys_only,
            "counts": {k: self.counts[k] for k in sorted(self.counts)},
            "chains": [{"chain": k, **v} for k, v in sorted(self.chains.items())],
            "problems": [p.as_dict() for p in self.problems],
            "notes": list(self.notes),
        }

    def print(self, console: Console, *, per_kind: int = 25) -> None:
        """A human summary: the counts, then the problems grouped by kind."""
        c = self.counts
        colour = {EXIT_OK: "green", EXIT_GAPS: "yellow", EXIT_PARTIAL: "yellow"}.get(self.exit_status, "red")
        window = f"{_iso(self.start) or 'beginning'} to {_iso(self.end) or 'now'}"
        console.print(
            f"[{colour}]{escape(self.verdict)}[/{colour}]  {escape(self.source)}  ({window})", highlight=False
        )
        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(justify="right")
        rows = [
            ("accounts / regions / chains", f"{c['accounts']:,} / {c['regions']:,} / {len(self.chains):,}"),
            ("digests valid", f"{c['digests-valid']:,}"),
            ("digests invalid or missing", f"{c['digests-invalid'] + c['digest-missing']:,}"),
            ("digests not checked (key unavailable)", f"{c['digests-unchecked']:,}"),
            ("log files valid", f"{c['logs-valid']:,}"),
            ("log files modified", f"{c['log-modified']:,}"),
            ("log files missing", f"{c['log-missing']:,}"),
            ("log files not covered by a digest", f"{c['log-not-covered']:,}"),
            ("log files misdated (future, or not of their day)", f"{c['log-misdated']:,}"),
            ("chain restarts", f"{c['chain-restart']:,}"),
            ("window covered by digests", _percent(self.covered_fraction)),
            ("log data hashed", f"{c['log-bytes'] / 1e6:,.1f} MB"),
        ]
        for name, value in rows:
            t.add_row(name, value)
        console.print(t)
        for k in self.keys:
            origin = {
                "cloudtrail": f"CloudTrail ({k['where']})",
                "file": f"given file {k['where']}" if k["where"] else "given",
                "mirror": f"the mirror itself ({k['where']}), not confirmed by CloudTrail",
            }.get(k["source"], k["source"])
            if k.get("mirror_copy"):
                origin += "; the mirror's copy matches"
            console.print(
                f"key {k['fingerprint']} ({k['region']}, {k['digests']:,} digests): from {escape(origin)}",
                highlight=False,
                soft_wrap=True,
            )
        for note in self.notes:
            console.print(f"[yellow]note:[/yellow] {escape(note)}", highlight=False)
        for name in self.partial_chains[:per_kind]:
            span = self.spans[name]
            stretches = ", ".join(f"{_iso(a)} to {_iso(b)}" for a, b in span.uncovered[:5])
            more = f" and {len(span.uncovered) - 5} more" if len(span.uncovered) > 5 else ""
            console.print(
                f"[yellow]not covered:[/yellow] {escape(name)}: digests cover "
                f"{_percent(span.covered / span.length)} of {_iso(span.window_start)} to "
                f"{_iso(span.window_end)}; none for {stretches}{more}",
                highlight=False,
                soft_wrap=True,
            )
        by_kind: dict[str, list[Problem]] = {}
        for p in self.problems:
            by_kind.setdefault(p.kind, []).append(p)
        for kind, items in by_kind.items():
            severity, meaning = KINDS[kind]
            colour = {"failure": "red", "unchecked": "red", "warning": "yellow", "notice": "dim"}[
                severity.value
            ]
            console.print(f"\n[{colour}]{kind}[/{colour}] ({len(items):,}): {meaning}", highlight=False)
            for p in items[:per_kind]:
                console.print(
                    f"  {escape(p.location)}\n    {escape(p.detail)}", highlight=False, soft_wrap=True
                )
            if len(items) > per_kind:
                console.print(f"  … and {len(items) - per_kind:,} more (all of them are in --json)")


def _percent(fraction: float | None) -> str:
    if fraction is None:
        return "n/a"
    if fraction >= 1:
        return "100%"
    return f"{math.floor(fraction * 1000) / 10:.1f}%"  # never rounds a gap up to 100%


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
