"""Built-in sinks: ``file`` (an NDJSON file) and ``stdout``, one CloudTrail record per line.

Each line is the record's own bytes when they are already one line of JSON and no transform
touched them (so the file holds exactly what AWS wrote), compact JSON otherwise.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Sequence
from typing import IO, Any

from trailrelay.contract import (
    DELIVERED,
    Batch,
    BatchLimits,
    CheckResult,
    FatalSinkError,
    Outcome,
    Record,
    RetryableError,
    SinkContext,
)
from trailrelay.sinks.file_config import FileConfig, StdoutConfig

__all__ = ["FileConfig", "FileSink", "LinesEncoder", "StdoutConfig", "file_plugin", "stdout_plugin"]


class LinesEncoder:
    """NDJSON lines, one body per batch of ``batch_events``."""

    content_type = "application/x-ndjson"

    def __init__(self, batch_events: int = 1000) -> None:
        self.batch_events = batch_events

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """One NDJSON body per ``batch_events`` records."""
        n = self.batch_events
        return [b"".join(r.line() + b"\n" for r in records[i : i + n]) for i in range(0, len(records), n)]


class FileSink:
    """Appends records to a file (or writes them to a stream such as stdout)."""

    def __init__(self, config: FileConfig | StdoutConfig, stream: IO[bytes] | None = None) -> None:
        self.config = config
        self._stream = stream
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()
        self.limits = BatchLimits(
            max_records=config.batch_events, max_bytes=8 << 20, max_age=config.batch_seconds, concurrency=1
        )

    def open(self) -> None:
        """Open the file for appending (or take the stream)."""
        if self._stream is not None:
            self._fh = self._stream
            return
        assert isinstance(self.config, FileConfig)
        try:
            self.config.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.config.path.open("ab")
        except OSError as exc:
            raise FatalSinkError(f"cannot open {self.config.path}: {exc.strerror}") from None

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Write every record as one line; a write error is retryable (disk full, NFS hiccup)."""
        if not batch.records:
            return []
        body = b"".join(r.line() + b"\n" for r in batch.records)
        with self._lock:
            if self._fh is None:
                self.open()
            fh = self._fh
            assert fh is not None
            try:
                fh.write(body)
                fh.flush()
                if isinstance(self.config, FileConfig) and self.config.fsync:
                    os.fsync(fh.fileno())
            except OSError as exc:
                raise RetryableError(f"write failed: {exc.strerror}") from None
        return [DELIVERED] * len(batch.records)

    def check(self) -> CheckResult:
        """The file's folder is writable (or the stream is open)."""
        if isinstance(self.config, FileConfig):
            folder = self.config.path.parent
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise FatalSinkError(f"{folder} is not writable")
            return CheckResult(True, f"will append to {self.config.path}")
        return CheckResult(True, "will write to standard output")

    def close(self) -> None:
        """Close the file (never the borrowed stream)."""
        with self._lock:
            fh, self._fh = self._fh, None
            if fh is not None and self._stream is None:
                try:
                    fh.close()
                except OSError as exc:  # every batch was flushed already; nothing is lost here
                    logging.getLogger("trailrelay.sinks.file").warning(
                        "closing %s: %s", self.config.display_name, exc
                    )

    def __repr__(self) -> str:
        return f"FileSink({self.config.display_name})"


class _FilePlugin:
    name = "file"
    config_model = FileConfig

    def create(self, config: Any, context: SinkContext) -> FileSink:  # noqa: ARG002 - contract signature
        return FileSink(config)

    def encoder(self, config: Any) -> LinesEncoder:
        return LinesEncoder(config.batch_events)


class _StdoutPlugin:
    name = "stdout"
    config_model = StdoutConfig

    def create(self, config: Any, context: SinkContext) -> FileSink:  # noqa: ARG002 - contract signature
        return FileSink(config, stream=sys.stdout.buffer)

    def encoder(self, config: Any) -> LinesEncoder:
        return LinesEncoder(config.batch_events)


file_plugin = _FilePlugin()
stdout_plugin = _StdoutPlugin()
