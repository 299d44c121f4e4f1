"""Human-facing output: the progress bar of a backfill and the final summary table."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from trailrelay.pipeline.metrics import Metrics

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["print_summary", "progress_reporter"]


@contextmanager
def progress_reporter(*, enabled: bool) -> Iterator[Callable[[Metrics], None] | None]:
    """A callback that refreshes a rich progress line (at most 10 times a second), or None."""
    if not enabled:
        yield None
        return
    from rich.console import Console  # noqa: PLC0415 - only a terminal shows a progress bar
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn  # noqa: PLC0415

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("starting", total=None)
        lock = threading.Lock()
        last = [0.0]

        def update(m: Metrics) -> None:
            now = time.monotonic()
            with lock:
                if now - last[0] < 0.1:
                    return
                last[0] = now
            delivered = sum(m.delivered.values())
            bar.update(
                task,
                description=(
                    f"objects {m.objects_read:,}  records {m.records_in:,}  delivered {delivered:,}  "
                    f"dead-lettered {sum(m.dead_lettered.values()):,}"
                ),
            )

        yield update


def print_summary(console: Console, snap: dict[str, Any], *, dead_letters: str | None = None) -> None:
    """The end-of-run table."""
    from rich.markup import escape  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415 - loaded when the run is over, not before

    t = Table(title="trailrelay run", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("objects read", f"{snap['objects_read']:,}")
    t.add_row("records read", f"{snap['records_in']:,}")
    t.add_row("records filtered out", f"{snap['records_filtered']:,}")
    t.add_row("high-risk records", f"{snap['records_tagged_high_risk']:,}")
    for reason, n in sorted(snap["skipped"].items()):
        t.add_row(f"skipped: {escape(reason)}", f"{n:,}")
    for name, n in sorted(snap.get("filtered_by_sink", {}).items()):  # e.g. data events, by default
        t.add_row(f"not sent to {escape(name)} (its filter)", f"{n:,}")
    for name, n in sorted(snap["delivered"].items()):
        t.add_row(f"delivered to {escape(name)}", f"{n:,} ({snap['bytes_out'].get(name, 0):,} bytes)")
    for name, n in sorted(snap["duplicates"].items()):
        t.add_row(f"already in {escape(name)}", f"{n:,}")
    for name, n in sorted(snap["retries"].items()):
        t.add_row(f"retried sends to {escape(name)}", f"{n:,}")
    for stage, n in sorted(snap["dead_lettered"].items()):
        t.add_row(f"dead-lettered ({escape(stage)})", f"{n:,}")
    if snap["units_released"]:
        t.add_row("units left for redelivery", f"{snap['units_released']:,}")
    for lost in snap.get("workers_without_summary", []):  # a fleet's worker killed mid-run
        t.add_row(f"worker {lost['worker']} (pid {lost['pid']}): no counters", escape(lost["ended"]))
    t.add_row("records/s", f"{snap['records_per_second']:,.0f}")
    if lat := snap.get("latency_seconds"):
        t.add_row("delay eventTime→final p50/p99", f"{lat['p50']:,.1f}s / {lat['p99']:,.1f}s")
    console.print(t)
    if dead_letters and sum(snap["dead_lettered"].values()):
        console.print(f"dead-letter entries are in {dead_letters}", highlight=False, markup=False)
