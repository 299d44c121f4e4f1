# ruff: noqa: INP001, T201 - a standalone example script that reports on stdout
"""A scheduled batch job (cron, Airflow, a Kubernetes CronJob) built on trailrelay (docs/api.md).

Reads yesterday's (or any) exported CloudTrail files, forwards them through the configuration's
detection, filters and pseudonymization to its sinks, and exits non-zero when something was
dead-lettered, so the scheduler shows the run as failed with the reasons in its log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from trailrelay.api import Forwarder, Problem, read_records


def run(config: str | Path, files: list[Path]) -> int:
    """Forward every file; 0 when all was delivered, 1 when something was dead-lettered."""
    failed = False
    with Forwarder.from_config(config) as forwarder:
        for path in files:
            items = list(read_records(path))
            problems = [i for i in items if isinstance(i, Problem)]
            report = forwarder.forward(items)
            print(f"{path}: {sum(report.delivered.values())} delivered, {report.dead_lettered} dead-lettered")
            for outcome in report.outcomes:
                where = outcome.sink or "read"
                print(f"  {outcome.event_id or '?'}: {outcome.status} ({where}): {outcome.reason}")
            failed = failed or not report.ok or bool(problems)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1], [Path(p) for p in sys.argv[2:]]))
