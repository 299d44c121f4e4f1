"""Shared helpers for the benchmarks: timing on one core and loading the real corpus."""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Callable
from pathlib import Path

from trailrelay.testing import corpus_dir

__all__ = ["best_rate", "compare", "corpus_objects", "pin_one_core", "report"]


def pin_one_core() -> None:
    """Run the benchmark on one core, as the targets are stated."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def corpus_objects() -> list[bytes]:
    """The real CloudTrail corpus as gzip'd objects (as S3 holds them); empty when absent."""
    root = corpus_dir()
    if root is None:
        return []
    files = sorted(p for p in (root / "cloudtrail").rglob("*") if p.suffix in (".json", ".ndjson"))
    return [gzip.compress(p.read_bytes(), 6) for p in files]


def best_rate(work: Callable[[], int], *, repeat: int = 5, min_seconds: float = 0.3) -> float:
    """Items per second of ``work`` (which returns its item count): best of ``repeat`` rounds."""
    best = 0.0
    for _ in range(repeat):
        n = 0
        t0 = time.perf_counter()
        while True:
            n += work()
            elapsed = time.perf_counter() - t0
            if elapsed >= min_seconds:
                break
        best = max(best, n / elapsed)
    return best


def compare(baseline: Callable[[], int], ours: Callable[[], int], *, rounds: int = 5) -> tuple[float, float]:
    """Best rates of baseline and ours, measured in alternating rounds so load hits both alike."""
    base = mine = 0.0
    for _ in range(rounds):
        base = max(base, best_rate(baseline, repeat=1))
        mine = max(mine, best_rate(ours, repeat=1))
    return mine, base


def report(
    name: str, rate: float, baseline: float, target: float | None = None, ratio_target: float | None = None
) -> bool:
    """Print one line; True when the targets are met."""
    ratio = rate / baseline if baseline else float("inf")
    ok = (target is None or rate >= target) and (ratio_target is None or ratio >= ratio_target)
    goal = []
    if target is not None:
        goal.append(f">= {target:,.0f}/s")
    if ratio_target is not None:
        goal.append(f">= {ratio_target:g}x baseline")
    verdict = ("PASS" if ok else "MISS") if goal else "info"
    print(
        f"{name:<48} {rate:>12,.0f} rec/s  {ratio:>6.2f}x baseline ({baseline:,.0f}/s)  "
        f"[{verdict}{': ' + ', '.join(goal) if goal else ''}]"
    )
    return ok


def here() -> Path:
    """The bench folder."""
    return Path(__file__).parent
