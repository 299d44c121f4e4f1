"""Core test helpers: a scriptable in-memory sink and builders for test inputs."""

from __future__ import annotations

import gzip
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from trailrelay.contract import DELIVERED, Batch, BatchLimits, CheckResult, FatalSinkError, Outcome, Record
from trailrelay.testing import SAMPLE_EVENTS


class ScriptedSink:
    """An in-memory sink whose answers a test scripts (a stand-in SIEM, not a mock of our code)."""

    def __init__(self, limits: BatchLimits | None = None) -> None:
        self.limits = limits or BatchLimits(max_records=50, max_bytes=1 << 20, max_age=0.05, concurrency=2)
        self.stored: list[str] = []
        self.calls = 0
        self.retry_calls = 0
        self.reject_ids: set[str] = set()
        self.fatal_after: int | None = None
        self.on_send: Callable[[Batch], None] | None = None
        self._lock = threading.Lock()

    def open(self) -> None:
        pass

    def send(self, batch: Batch) -> Sequence[Outcome]:
        with self._lock:
            self.calls += 1
            call = self.calls
        if self.on_send:
            self.on_send(batch)
        if self.fatal_after is not None and call > self.fatal_after:
            raise FatalSinkError("token revoked (scripted)")
        if self.retry_calls:
            with self._lock:
                self.retry_calls -= 1
            return [Outcome.retry("busy (scripted)", 0.0)] * len(batch.records)
        out: list[Outcome] = []
        for r in batch.records:
            if r.event_id in self.reject_ids:
                out.append(Outcome.rejected(f"refused {r.event_id} (scripted)"))
            else:
                with self._lock:
                    self.stored.append(str(r.event_id))
                out.append(DELIVERED)
        return out

    def check(self) -> CheckResult:
        return CheckResult(True, "ok")

    def close(self) -> None:
        pass


@pytest.fixture
def scripted() -> type[ScriptedSink]:
    return ScriptedSink


def events(n: int, prefix: str = "ev") -> list[dict[str, Any]]:
    """``n`` distinct CloudTrail events based on the sample set."""
    out = []
    for i in range(n):
        e = dict(SAMPLE_EVENTS[i % len(SAMPLE_EVENTS)])
        e["eventID"] = f"{prefix}-{i:06d}"
        out.append(e)
    return out


def write_object(path: Path, evs: list[dict[str, Any]], *, gz: bool = True) -> Path:
    """A CloudTrail-style ``{"Records": [...]}`` object on disk."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = orjson.dumps({"Records": evs})
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.fixture
def make_events() -> Callable[..., list[dict[str, Any]]]:
    return events


@pytest.fixture
def make_object() -> Callable[..., Path]:
    return write_object


def record_ids(records: Sequence[Record]) -> list[str]:
    return [str(r.event_id) for r in records]
