"""Seeded fault decisions for a stand-in: random 5xx/429, resets, slow replies, partial batches, outages.

A :class:`FaultPlan` is the ``fault`` hook of one stand-in: the stand-in asks it once per
request (``"event"``/``"bulk"``/``"upload"`` for data, ``"ack"``/``"token"``/``"other"`` for the
rest) and injects the kind it answers in its own protocol (see each stand-in's docstring).
Random faults hit data requests only; an outage hits every request. Every decision is counted,
so the report can say how many faults of each kind were injected.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DATA_LABELS", "FaultPlan", "FaultRates"]

DATA_LABELS = frozenset({"event", "bulk", "upload"})
"""Requests that carry records (random faults apply only to these)."""


@dataclass(frozen=True)
class FaultRates:
    """Probability of each random fault per data request."""

    server_error: float = 0.05
    """5xx or 429 (half each): the issue's "5% random 5xx/429"."""
    reset: float = 0.01
    """Connection reset after half the request body was read."""
    slow: float = 0.01
    """Stored, but answered after the client's timeout (the client sends it again)."""
    partial: float = 0.02
    """Part of the batch refused in the SIEM's own way (see each stand-in)."""


class FaultPlan:
    """The fault hook of one stand-in: thread-safe, seeded, counting what it injected."""

    def __init__(
        self,
        seed: int | str,
        rates: FaultRates | None = None,
        *,
        ensure: tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rates = rates
        self.ensure = ensure
        """Kinds injected once each, into data requests 3, 6, 9, ... (so a short run sees them all)."""
        self.counts: Counter[str] = Counter()
        self.data_requests = 0
        self._rng = random.Random(seed)  # noqa: S311 - reproducible fault schedule, not crypto
        self._clock = clock
        self._outage: tuple[float, float] | None = None
        self._lock = threading.Lock()

    def start_outage(self, seconds: float) -> None:
        """Refuse every request from now for ``seconds``."""
        now = self._clock()
        with self._lock:
            self._outage = (now, now + seconds)

    def outage_active(self) -> bool:
        """True while an outage is on."""
        now = self._clock()
        with self._lock:
            return self._outage is not None and self._outage[0] <= now < self._outage[1]

    def __call__(self, label: str) -> str | None:
        """The fault to inject into this request, or None."""
        now = self._clock()
        with self._lock:
            if self._outage is not None and self._outage[0] <= now < self._outage[1]:
                self.counts["outage"] += 1
                return "outage"
            if label not in DATA_LABELS or self.rates is None:
                return None
            self.data_requests += 1
            n = self.data_requests
            if n % 3 == 0 and n // 3 <= len(self.ensure):
                kind: str | None = self.ensure[n // 3 - 1]
            else:
                kind = self._draw(self.rates)
            if kind is not None:
                self.counts[kind] += 1
            return kind

    def _draw(self, r: FaultRates) -> str | None:
        x = self._rng.random()
        for kind, p in (
            ("5xx", r.server_error / 2),
            ("429", r.server_error / 2),
            ("reset", r.reset),
            ("slow", r.slow),
            ("partial", r.partial),
        ):
            if x < p:
                return kind
            x -= p
        return None
