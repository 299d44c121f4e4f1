"""Run counters: what was read, skipped, filtered, delivered and dead-lettered, and how late."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Metrics"]

_RESERVOIR = 10_000


@dataclass
class Metrics:
    """Thread-safe counters for one run; ``snapshot`` gives a plain dict for reports and logs."""

    started: float = field(default_factory=time.monotonic)
    last_activity: float = field(default_factory=time.monotonic)
    """When the source last produced work or an empty poll (liveness)."""
    objects_read: int = 0
    bytes_read: int = 0
    records_in: int = 0
    records_filtered: int = 0
    tagged: int = 0
    acked: int = 0
    released: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    dead_lettered: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    retries: Counter[str] = field(default_factory=Counter)
    filtered_by_sink: Counter[str] = field(default_factory=Counter)
    bytes_out: Counter[str] = field(default_factory=Counter)
    high_risk: list[dict[str, Any]] = field(default_factory=list)
    _latency: list[float] = field(default_factory=list)
    _latency_seen: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(default_factory=lambda: random.Random(0))  # noqa: S311 - sampling, not crypto

    def add(self, name: str, n: int = 1) -> None:
        """Increase a plain counter."""
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def bump(self, counter: str, key: str, n: int = 1) -> None:
        """Increase a keyed counter (per sink, per reason)."""
        with self._lock:
            getattr(self, counter)[key] += n

    def latencies(self, delays: list[float]) -> None:
        """Record end-to-end delays of a settled batch, reservoir-sampled, under one lock."""
        if not delays:
            return
        with self._lock:
            sample = self._latency
            for seconds in delays:
                self._latency_seen += 1
                if len(sample) < _RESERVOIR:
                    sample.append(seconds)
                else:
                    j = self._rng.randrange(self._latency_seen)
                    if j < _RESERVOIR:
                        sample[j] = seconds

    def snapshot(self) -> dict[str, Any]:
        """All counters as plain data."""
        with self._lock:
            lat = sorted(self._latency)
            elapsed = time.monotonic() - self.started
            out: dict[str, Any] = {
                "elapsed_seconds": round(elapsed, 3),
                "objects_read": self.objects_read,
                "bytes_read": self.bytes_read,
                "records_in": self.records_in,
                "records_filtered": self.records_filtered,
                "records_tagged_high_risk": self.tagged,
                "units_acknowledged": self.acked,
                "units_released": self.released,
                "skipped": dict(self.skipped),
                "dead_lettered": dict(self.dead_lettered),
                "delivered": dict(self.delivered),
                "duplicates": dict(self.duplicates),
                "rejected": dict(self.rejected),
                "retries": dict(self.retries),
                "filtered_by_sink": dict(self.filtered_by_sink),
                "bytes_out": dict(self.bytes_out),
                "records_per_second": round(self.records_in / elapsed, 1) if elapsed > 0 else 0.0,
            }
            if lat:
                out["latency_seconds"] = {
                    "p50": round(lat[len(lat) // 2], 3),
                    "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
                    "max": round(lat[-1], 3),
                }
            return out
