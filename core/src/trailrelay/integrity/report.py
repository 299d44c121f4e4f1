"""What a verification found: named problems, counts, a human summary (rich) and JSON.

Every problem has a stable ``kind`` (alerts and the integrity events key on it) and a severity:
a *failure* means something could not be proven to be what AWS wrote; a *warning* (a chain
restart) means the chain has a gap that only stopping logging or turning validation off makes;
a *notice* (a log file whose digest is not due yet) changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["EXIT_FAILED", "EXIT_GAPS", "EXIT_OK", "KINDS", "Problem", "Severity", "VerifyReport"]

EXIT_OK = 0
EXIT_FAILED = 1
"""At least one file or digest could not be verified."""
EXIT_GAPS = 4
"""Everything verified, but a chain was restarted (logging was stopped or validation turned off)."""


class Severity(StrEnum):
    """How much a problem matters for the verdict."""

    FAILURE = "failure"
    WARNING = "warning"
    NOTICE = "notice"


KINDS: dict[str, tuple[Severity, str]] = {
    "log-modified": (Severity.FAILURE, "log file changed since CloudTrail delivered it (hash mismatch)"),
    "log-missing": (Severity.FAILURE, "log file listed in a digest is gone (deleted)"),
    "log-unreadable": (Severity.FAILURE, "log file could not be read, so it could not be checked"),
    "log-not-covered": (Severity.FAILURE, "log file that no valid digest lists (added, or not provable)"),
    "digest-missing": (Severity.FAILURE, "digest referenced by the chain is gone (deleted)"),
    "digest-signature-invalid": (Severity.FAILURE, "digest signature does not verify (forged or altered)"),
    "digest-signature-missing": (Severity.FAILURE, "digest has no signature to check"),
    "digest-unknown-key": (Severity.FAILURE, "digest names a public key fingerprint that is not known"),
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

    def add(self, problem: Problem) -> None:
        """Record a problem and count it by kind."""
        self.problems.append(problem)
        self.counts[problem.kind] += 1

    @property
    def failures(self) -> int:
        """Problems that make the verdict a failure."""
        return sum(1 for p in self.problems if p.severity is Severity.FAILURE)

    @property
    def verified(self) -> bool:
        """True when every digest and log file in the window verified."""
        return self.failures == 0

    @property
    def exit_status(self) -> int:
        """0 all verified; 1 failures; 4 all verified but a chain restarted."""
        if not self.verified:
            return EXIT_FAILED
        if self.counts["chain-restart"]:
            return EXIT_GAPS
        return EXIT_OK

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return {
            "source": self.source,
            "window": {"start": _iso(self.start), "end": _iso(self.end)},
            "verified": self.verified,
            "exit_status": self.exit_status,
            "counts": {k: self.counts[k] for k in sorted(self.counts)},
            "chains": [{"chain": k, **v} for k, v in sorted(self.chains.items())],
            "problems": [p.as_dict() for p in self.problems],
            "notes": list(self.notes),
        }

    def print(self, console: Console, *, per_kind: int = 25) -> None:
        """A human summary: the counts, then the problems grouped by kind."""
        c = self.counts
        verdict = (
            "[green]VERIFIED[/green]"
            if self.exit_status == EXIT_OK
            else "[yellow]VERIFIED, WITH CHAIN GAPS[/yellow]"
            if self.exit_status == EXIT_GAPS
            else "[red]NOT VERIFIED[/red]"
        )
        window = f"{_iso(self.start) or 'beginning'} to {_iso(self.end) or 'now'}"
        console.print(f"{verdict}  {self.source}  ({window})", highlight=False)
        t = Table(show_header=False, box=None, pad_edge=False)
        t.add_column(style="bold")
        t.add_column(justify="right")
        rows = [
            ("accounts / regions / chains", f"{c['accounts']:,} / {c['regions']:,} / {len(self.chains):,}"),
            ("digests valid", f"{c['digests-valid']:,}"),
            ("digests invalid or missing", f"{c['digests-invalid'] + c['digest-missing']:,}"),
            ("log files valid", f"{c['logs-valid']:,}"),
            ("log files modified", f"{c['log-modified']:,}"),
            ("log files missing", f"{c['log-missing']:,}"),
            ("log files not covered by a digest", f"{c['log-not-covered']:,}"),
            ("chain restarts", f"{c['chain-restart']:,}"),
            ("log data hashed", f"{c['log-bytes'] / 1e6:,.1f} MB"),
        ]
        for name, value in rows:
            t.add_row(name, value)
        console.print(t)
        for note in self.notes:
            console.print(f"[yellow]note:[/yellow] {note}", highlight=False)
        by_kind: dict[str, list[Problem]] = {}
        for p in self.problems:
            by_kind.setdefault(p.kind, []).append(p)
        for kind, items in by_kind.items():
            severity, meaning = KINDS[kind]
            colour = {"failure": "red", "warning": "yellow", "notice": "dim"}[severity.value]
            console.print(f"\n[{colour}]{kind}[/{colour}] ({len(items):,}): {meaning}", highlight=False)
            for p in items[:per_kind]:
                console.print(f"  {p.location}\n    {p.detail}", highlight=False, soft_wrap=True)
            if len(items) > per_kind:
                console.print(f"  … and {len(items) - per_kind:,} more (all of them are in --json)")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if value else None
