"""What ``trailrelay doctor`` reports: findings with a severity, why they matter and the fix.

A check that could not read what it needs (access denied, an API error) is a finding too, never
a pass: ``checked`` is False, the title says "could not check X: needs permission Y", and the
severity is that of the worst thing the check could have found, because it cannot be ruled out.
"""

from __future__ import annotations

import enum
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EXIT_FOUND", "EXIT_OK", "Finding", "Passed", "Report", "Severity"]

EXIT_OK = 0
"""Nothing at or above ``--fail-on`` was found."""
EXIT_FOUND = 1
"""At least one finding (a could-not-check included) is at or above ``--fail-on``."""


class Severity(enum.IntEnum):
    """How bad a finding is; ordered, so ``severity >= Severity.HIGH`` reads as it says."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The lowercase name used in output, options and events."""
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Severity:
        """``critical`` … ``info`` (any case) as a Severity; ValueError otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not one of {', '.join(s.label for s in cls)}") from None


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing wrong (or not checkable) with one resource."""

    check: str
    """Stable id of the check, e.g. ``trail-not-multi-region`` (what alerts and tests key on)."""
    severity: Severity
    title: str
    """One line: what is wrong."""
    resource: str
    """The trail ARN, ``s3://bucket``, queue URL or region the finding is about."""
    why: str
    """Why it matters, in a sentence or two."""
    fix: str
    """The exact AWS CLI command(s) or template change that fixes it."""
    checked: bool = True
    """False for "could not check": the permission or the API failed, so nothing is known."""
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for ``--json`` and events."""
        return {
            "check": self.check,
            "severity": self.severity.label,
            "checked": self.checked,
            "title": self.title,
            "resource": self.resource,
            "why": self.why,
            "fix": self.fix,
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Passed:
    """A check that read what it needed and found nothing wrong."""

    check: str
    resource: str

    def as_dict(self) -> dict[str, str]:
        """Plain data for ``--json``."""
        return {"check": self.check, "resource": self.resource}


@dataclass
class Report:
    """Everything one run found, what passed, and what it looked at."""

    findings: list[Finding] = field(default_factory=list)
    passed: list[Passed] = field(default_factory=list)
    context: dict[str, Any] = field(default_factory=dict)
    """Account, organization, trails, buckets, queue and regions the run looked at."""
    notes: list[str] = field(default_factory=list)
    """What was not checked and why (no config: no forwarding checks), not findings."""

    def add(self, finding: Finding) -> None:
        """Record a finding."""
        self.findings.append(finding)

    def ok(self, check: str, resource: str) -> None:
        """Record a passed check."""
        self.passed.append(Passed(check, resource))

    def sorted_findings(self) -> list[Finding]:
        """Findings, worst first, then by check and resource."""
        return sorted(self.findings, key=lambda f: (-f.severity, f.check, f.resource))

    def counts(self) -> dict[str, int]:
        """Findings per severity label (every label present)."""
        n = Counter(f.severity for f in self.findings)
        return {s.label: n.get(s, 0) for s in sorted(Severity, reverse=True)}

    def worst(self) -> Severity | None:
        """The most severe finding's severity, or None when there is none."""
        return max((f.severity for f in self.findings), default=None)

    def exit_status(self, fail_on: Severity | None) -> int:
        """1 when a finding is at or above ``fail_on`` (None: never), else 0."""
        worst = self.worst()
        return EXIT_FOUND if fail_on is not None and worst is not None and worst >= fail_on else EXIT_OK

    def as_dict(self, fail_on: Severity | None = None) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {
            "findings": [f.as_dict() for f in self.sorted_findings()],
            "passed": [p.as_dict() for p in self.passed],
            "counts": self.counts(),
            "context": self.context,
            "notes": self.notes,
            "fail_on": fail_on.label if fail_on is not None else "never",
            "exit_status": self.exit_status(fail_on),
        }
