"""The human report: findings worst first, each with why and the fix; then what passed."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from trailrelay.doctor.findings import Report, Severity

__all__ = ["print_report"]

_STYLE = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


def print_report(report: Report, console: Console, fail_on: Severity | None, *, sent: bool = True) -> None:
    """Print ``report`` for a person; ``sent`` False: ``--send`` did not deliver every finding."""
    for f in report.sorted_findings():
        tag = f"[{_STYLE[f.severity]}]{f.severity.label.upper():>8}[/]"
        mark = "" if f.checked else " [bold](not checked)[/bold]"
        console.print(f"{tag}  [bold]{escape(f.check)}[/bold]{mark}  {escape(f.resource)}", highlight=False)
        console.print(f"          {escape(f.title)}", highlight=False)
        console.print(f"          [dim]why:[/dim] {escape(f.why)}", highlight=False)
        console.print(f"          [dim]fix:[/dim] {escape(f.fix)}", highlight=False, soft_wrap=True)
        console.print()
    if report.passed:
        console.print(f"[green]passed[/green] ({len(report.passed)}):", highlight=False)
        for p in report.passed:
            console.print(
                f"  [green]✓[/green] {escape(p.check)}  [dim]{escape(p.resource)}[/dim]", highlight=False
            )
    for note in report.notes:
        console.print(f"[dim]note: {escape(note)}[/dim]", highlight=False)
    counts = ", ".join(f"{n} {label}" for label, n in report.counts().items() if n)
    threshold = (
        f"failing on {fail_on.label} and above"
        if fail_on is not None
        else "no finding fails the run (--fail-on never)"
    )
    verdict = "FAIL" if report.exit_status(fail_on) or not sent else "OK"
    unsent = "" if sent else "; --send did not deliver every finding"
    console.print(
        f"{verdict}: {_count(len(report.findings), 'finding')} ({counts or 'none'}), "
        f"{_count(len(report.passed), 'check')} passed; {threshold}{unsent}",
        highlight=False,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
