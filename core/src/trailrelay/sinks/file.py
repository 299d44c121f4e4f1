"""Built-in sinks: ``file`` (an NDJSON file) and ``stdout``, one CloudTrail record per line.

Each line is the record's own bytes when they are already one line of JSON and no transform
touched them (so the file holds exactly what AWS wrote), compact JSON otherwise.

``stdout`` is a well-behaved stage of a shell pipeline: it flushes after every batch, and when
the reader downstream goes away (``| head``: EPIPE) it stops the run with a FatalSinkError
"downstream closed" (nothing of the batch is acknowledged, no traceback) after pointing standard
output at ``/dev/null``, so Python's exit-time flush cannot fail either. With ``format`` it
writes, instead of the raw record, the exact document a connector would send, one per line, so
another tool (Vector, Fluent Bit, Logstash, Cribl) can ship trailrelay's mapping:

- ``format = "splunk"``: the HEC event envelope (``time``, ``source``, ``sourcetype``, ``index``,
  ``host``, indexed ``fields``, ``event``);
- ``format = "elastic-ecs"``: the ECS document of a ``_bulk`` request (the action lines left out);
- ``format = "sentinel"``: the row of the Logs Ingestion request (``AWSCloudTrail`` columns).

Each is produced by that connector's own encoder, loaded through its plugin entry point with a
config built from ``format_options``. Only keys that change the documents are accepted there
(:data:`FORMAT_OPTIONS`); connection settings the connector requires are filled with
placeholders, because nothing is ever sent.
"""

from __future__ import annotations

import errno
import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import IO, Any

from trailrelay.contract import (
    DELIVERED,
    Batch,
    BatchLimits,
    CheckResult,
    ConfigError,
    Encoder,
    FatalSinkError,
    Outcome,
    Record,
    RetryableError,
    SinkContext,
)
from trailrelay.sinks.file_config import FORMAT_OPTIONS, FileConfig, StdoutConfig

__all__ = [
    "FORMAT_OPTIONS",
    "FileConfig",
    "FileSink",
    "LinesEncoder",
    "StdoutConfig",
    "document_encoder",
    "file_plugin",
    "stdout_plugin",
]


_FORCED: dict[str, dict[str, Any]] = {"elastic-ecs": {"mode": "ecs"}}


def document_encoder(fmt: str, options: dict[str, Any] | None = None) -> Callable[[Record], bytes]:
    """One record -> the one-line document ``fmt``'s connector would send (ValueError if it cannot).

    The connector's own encoder makes it (``plugins.load_sink(name).encoder(config)``), with a
    config of placeholder connection settings plus ``options``; ConfigError when the connector is
    not installed or the options are invalid for it.
    """
    if fmt == "raw":
        return Record.line
    from trailrelay.errors import PluginNotFound  # noqa: PLC0415 - only with a connector format
    from trailrelay.plugins import load_sink  # noqa: PLC0415
    from trailrelay.sinks.placeholders import DEMO_SINK_CONFIGS  # noqa: PLC0415

    connector, _ = FORMAT_OPTIONS[fmt]
    try:
        plugin = load_sink(connector)
    except PluginNotFound as exc:
        raise ConfigError(f'format = "{fmt}": {exc}') from None
    table = {**DEMO_SINK_CONFIGS[connector], **(options or {}), **_FORCED.get(fmt, {})}
    try:
        config = plugin.config_model.validate(table)
    except Exception as exc:
        raise ConfigError(f'format_options for format = "{fmt}": {exc}') from None
    encoder: Encoder = plugin.encoder(config)
    take = _DOCUMENT[fmt]

    def one(record: Record) -> bytes:
        bodies = encoder.encode([record])
        if len(bodies) != 1:
            raise ValueError(f"the {connector} encoder could not encode this record")
        return take(bodies[0])

    return one


def _elastic_document(body: bytes) -> bytes:
    """A one-record ``_bulk`` body is an action line and a document line: keep the document."""
    return body.rstrip(b"\n").split(b"\n", 1)[1]


def _sentinel_row(body: bytes) -> bytes:
    """A one-record request body is ``[row]``: keep the row."""
    return body[1:-1]


_DOCUMENT: dict[str, Callable[[bytes], bytes]] = {
    "splunk": lambda body: body,
    "elastic-ecs": _elastic_document,
    "sentinel": _sentinel_row,
}


class LinesEncoder:
    """NDJSON lines, one body per batch of ``batch_events``."""

    content_type = "application/x-ndjson"

    def __init__(self, batch_events: int = 1000, document: Callable[[Record], bytes] | None = None) -> None:
        self.batch_events = batch_events
        self.document = document or Record.line

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """One NDJSON body per ``batch_events`` records."""
        n, doc = self.batch_events, self.document
        return [b"".join(doc(r) + b"\n" for r in records[i : i + n]) for i in range(0, len(records), n)]


class FileSink:
    """Appends records to a file (or writes them to a stream such as stdout)."""

    def __init__(self, config: FileConfig | StdoutConfig, stream: IO[bytes] | None = None) -> None:
        self.config = config
        self._stream = stream
        self._fh: IO[bytes] | None = None
        self._lock = threading.Lock()
        self._gone = False
        self._format = getattr(config, "format", "raw")
        self._document = document_encoder(self._format, getattr(config, "format_options", None))
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
        """Write every record as one line; a write error is retryable (disk full, NFS hiccup).

        A closed pipe downstream is fatal: "downstream closed" stops the run, nothing of the
        batch is acknowledged.
        """
        if not batch.records:
            return []
        if self._document is Record.line:
            lines = [r.line() for r in batch.records]
            lines.append(b"")  # the last newline comes with the join: `+ b"\n"` would copy the body again
            body = b"\n".join(lines)
            outcomes: list[Outcome] = [DELIVERED] * len(batch.records)
        else:
            body, outcomes = self._documents(batch.records)
        with self._lock:
            if self._gone:
                raise FatalSinkError("downstream closed: standard output's reader went away")
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
                if self._stream is not None and (
                    isinstance(exc, BrokenPipeError) or exc.errno == errno.EPIPE
                ):
                    self._gone = True
                    _silence(fh)
                    raise FatalSinkError(
                        "downstream closed: the reader of standard output went away (EPIPE); "
                        "the records of this batch were not acknowledged"
                    ) from None
                raise RetryableError(f"write failed: {exc.strerror}") from None
        return outcomes

    def _documents(self, records: Sequence[Record]) -> tuple[bytes, list[Outcome]]:
        """The connector documents of a batch; a record its encoder refuses is REJECTED alone."""
        lines: list[bytes] = []
        outcomes: list[Outcome] = []
        for record in records:
            try:
                lines.append(self._document(record) + b"\n")
                outcomes.append(DELIVERED)
            except Exception as exc:  # the connector's own refusal, with its reason
                outcomes.append(
                    Outcome.rejected(f"cannot encode as {self._format}: {type(exc).__name__}: {exc}")
                )
        return b"".join(lines), outcomes

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


def _silence(fh: IO[bytes]) -> None:
    """Point standard output at /dev/null after EPIPE, so the exit-time flush cannot fail.

    (What the Python documentation recommends for SIGPIPE: without it the interpreter prints
    "Exception ignored ... BrokenPipeError" when it flushes stdout at exit.)
    """
    try:
        fd = fh.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except (OSError, ValueError):  # not a real file descriptor (a test's buffer): nothing to silence
        return


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
        return LinesEncoder(config.batch_events, document_encoder(config.format, config.format_options))


file_plugin = _FilePlugin()
stdout_plugin = _StdoutPlugin()
