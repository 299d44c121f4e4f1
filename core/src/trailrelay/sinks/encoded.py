"""A sink that writes each request body an encoder produces to a folder, sending nothing.

Used by ``trailrelay demo`` (and cost measurement) to show the exact wire payloads each
installed connector would send.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Sequence
from pathlib import Path

from trailrelay.contract import DELIVERED, Batch, BatchLimits, CheckResult, Encoder, Outcome

__all__ = ["EncodedFolderSink"]

_EXT = {"application/json": "json", "application/x-ndjson": "ndjson"}


class EncodedFolderSink:
    """Writes ``payload-NNNNN.<ext>`` files; counts raw and gzip bytes."""

    def __init__(self, encoder: Encoder, folder: Path, limits: BatchLimits | None = None) -> None:
        self.encoder = encoder
        self.folder = folder
        self.limits = limits or BatchLimits(max_records=500, max_bytes=4 << 20, max_age=0.5, concurrency=1)
        self.bodies = 0
        self.raw_bytes = 0
        self.gzip_bytes = 0
        self._lock = threading.Lock()

    def open(self) -> None:
        """Create the folder."""
        self.folder.mkdir(parents=True, exist_ok=True)

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Encode and write the bodies."""
        if not batch.records:
            return []
        bodies = self.encoder.encode(batch.records)
        ext = _EXT.get(self.encoder.content_type.split(";")[0], "bin")
        with self._lock:
            for body in bodies:
                self.bodies += 1
                self.raw_bytes += len(body)
                self.gzip_bytes += len(gzip.compress(body, 6))
                (self.folder / f"payload-{self.bodies:05d}.{ext}").write_bytes(body)
        return [DELIVERED] * len(batch.records)

    def check(self) -> CheckResult:
        """Always reachable."""
        return CheckResult(True, f"writes payloads to {self.folder}")

    def close(self) -> None:
        """Nothing to release."""
