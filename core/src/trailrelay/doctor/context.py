"""What every check shares: the clients, the settings, the report, and "could not check" handling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from trailrelay.doctor.aws import Clients, Denied, ReadFailed
from trailrelay.doctor.findings import Finding, Report, Severity

__all__ = ["Context", "Settings"]

UNCHECKED_WHY = (
    "doctor cannot rule this out without reading it: a setting it cannot read is reported, never "
    "counted as a pass."
)


@dataclass(frozen=True, slots=True)
class Settings:
    """The resolved inputs of one run (config, then command-line overrides)."""

    region: str | None = None
    trail: str | None = None
    bucket: str | None = None
    retention_days: int = 365
    fast_path: bool = True
    fast_path_regions: tuple[str, ...] = ()
    queue_url: str | None = None
    """The SQS source's queue (forwarding checks); None without an SQS source."""
    queue_region: str | None = None
    forwarding: bool = False
    """A config was given: check the forwarding set-up (queue, notifications, fast path)."""


@dataclass
class Context:
    """Clients, settings and the report one run writes into."""

    clients: Clients
    settings: Settings
    report: Report = field(default_factory=Report)

    @contextmanager
    def attempt(self, check: str, what: str, severity: Severity, resource: str) -> Iterator[None]:
        """Run reads for one check; a denial or failure becomes a "could not check" finding.

        ``severity`` is the worst the check could find: what could not be read cannot be ruled out.
        """
        try:
            yield
        except Denied as exc:
            self.report.add(
                Finding(
                    check,
                    severity,
                    f"could not check {what}: needs permission {exc.permission}",
                    resource,
                    UNCHECKED_WHY,
                    f"Allow {exc.permission} to the identity running trailrelay doctor "
                    "(`trailrelay doctor --permissions` prints the whole read-only policy).",
                    checked=False,
                    details={"permission": exc.permission, "error": exc.code},
                )
            )
        except ReadFailed as exc:
            self.report.add(
                Finding(
                    check,
                    severity,
                    f"could not check {what}: {exc}",
                    resource,
                    UNCHECKED_WHY,
                    "Run trailrelay doctor again; if it persists, check the endpoint, region and network.",
                    checked=False,
                    details={"error": str(exc)},
                )
            )
