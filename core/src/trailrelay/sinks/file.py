"""Built-in sinks: ``file`` (an NDJSON file) and ``stdout``, one CloudTrail record per line.

Each line is the record's own bytes when no transform touched them (so the file holds exactly
what AWS wrote), without the whitespace between tokens when they span several lines (every value
as written), compact JSON otherwise.

``stdout`` is a well-behaved stage of a shell pipeline: each batch is written out whole before
it counts as delivered, and when the reader downstream goes away (``| head``: EPIPE) it stops
the run with a FatalSinkError "downstream closed" (nothing of the batch is acknowledged, no
traceback) after pointing standard output at ``/dev/null``, so Python's exit-time flush cannot
fail either. With ``format`` it writes, instead of the raw record, the exact document a
connector would send, one per line, so another tool (Vector, Fluent Bit, Logstash, Cribl) can
ship trailrelay's mapping:

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
from pathlib import Path
from typing import IO, Any, NoReturn

from trailrelay.appending import PartialAppendError, append_whole, is_regular
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

_log = logging.getLogger("trailrelay.sinks.file")


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
    """Appends records to a file (or writes them to a stream such as stdout).

    Writes are unbuffered (``os.write`` until every byte of the batch is out), so a batch is
    delivered only when all its bytes were written, and nothing of a failed batch lingers in a
    buffer to be written later. When a write to a regular file fails (disk full), the file is cut
    back to where the batch started before the batch is retried: a retry never leaves a partial
    line. Where that is impossible (a pipe), a batch that failed half-written stops the run.
    """

    def __init__(self, config: FileConfig | StdoutConfig, stream: IO[bytes] | None = None) -> None:
        self.config = config
        self._stream = stream
        self._fd: int | None = None
        """The file's descriptor (or the stream's); None before open and for an in-memory stream."""
        self._opened = False
        self._rewindable = False
        """A regular file: what a failed batch wrote can be cut off again."""
        self._mend = False
        """The file can be read too: a line torn at its end is cut off before the next batch."""
        self._lock = threading.Lock()
        self._gone = False
        self._format = getattr(config, "format", "raw")
        self._document = document_encoder(self._format, getattr(config, "format_options", None))
        self.limits = BatchLimits(
            max_records=config.batch_events, max_bytes=8 << 20, max_age=config.batch_seconds, concurrency=1
        )

    def open(self) -> None:
        """Open the file for appending (or take the stream's descriptor)."""
        if self._stream is not None:
            try:
                self._fd = self._stream.fileno()
            except (OSError, ValueError):  # an in-memory stream (a test's buffer): written as a stream
                self._fd = None
            readable = False
        else:
            assert isinstance(self.config, FileConfig)
            try:
                self.config.path.parent.mkdir(parents=True, exist_ok=True)
                self._fd, readable = _open_for_append(self.config.path)
            except OSError as exc:
                raise FatalSinkError(f"cannot open {self.config.path}: {exc.strerror}") from None
        self._rewindable = self._fd is not None and _is_regular(self._fd)
        self._mend = self._rewindable and readable
        self._opened = True

    def send(self, batch: Batch) -> Sequence[Outcome]:
        """Write every record as one line; a write error is retryable (disk full, NFS hiccup).

        A closed pipe downstream is fatal: "downstream closed" stops the run, nothing of the
        batch is acknowledged. So is a failed write that cannot be taken back (part of the
        batch went into a pipe, or the file could not be cut back).
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
            if not self._opened:
                self.open()
            elif isinstance(self.config, FileConfig):
                self._reopen_if_moved(self.config)
            if self._fd is None:
                self._write_stream(body)
            else:
                self._write(self._fd, body)
        return outcomes

    def _write(self, fd: int, body: bytes) -> None:
        """Write all of ``body`` to ``fd`` (and fsync it if asked), or raise with none of it kept.

        The workers of ``forward --workers N`` append to one file: :func:`append_whole` writes a
        batch, and cuts it back if it fails, under an exclusive ``flock``, so a cut never takes
        another worker's lines with it. A line torn at the end by a writer killed mid-write
        (``kill -9``) is cut off first, so the batch does not continue it.
        """
        fsync = isinstance(self.config, FileConfig) and self.config.fsync
        try:
            append_whole(fd, body, regular=self._rewindable, cut_torn=self._mend, fsync=fsync)
        except OSError as exc:
            self._failed(exc, fd, len(body))

    def _failed(self, exc: OSError, fd: int, size: int) -> NoReturn:
        """The error for a batch whose write failed (a :class:`PartialAppendError` when part stayed)."""
        if self._stream is not None and exc.errno == errno.EPIPE:
            self._gone = True
            _silence(fd)
            raise FatalSinkError(
                "downstream closed: the reader of standard output went away (EPIPE); "
                "the records of this batch were not acknowledged"
            ) from None
        name = self.config.display_name
        if isinstance(exc, PartialAppendError) and exc.cut_error is not None:
            raise FatalSinkError(
                f"write to {name} failed ({exc.strerror}) and the part of the batch already "
                f"written could not be removed ({exc.cut_error.strerror}): stopping, so that nothing "
                "is appended to a partial line"
            ) from None
        if isinstance(exc, PartialAppendError):
            raise FatalSinkError(
                f"write to {name} failed after {exc.written} of {size} bytes ({exc.strerror}): a "
                "partial line cannot be taken back from a pipe or device; the records of this batch "
                "were not acknowledged"
            ) from None
        raise RetryableError(f"write failed: {exc.strerror}") from None

    def _write_stream(self, body: bytes) -> None:
        """Write ``body`` to a stream without a descriptor (an in-memory buffer)."""
        stream = self._stream
        assert stream is not None
        try:
            written = stream.write(body)
            stream.flush()
        except OSError as exc:
            raise RetryableError(f"write failed: {exc.strerror}") from None
        if written != len(body):
            raise FatalSinkError(
                f"write to {self.config.display_name} took {written} of {len(body)} bytes; "
                "the records of this batch were not acknowledged"
            )

    def _reopen_if_moved(self, config: FileConfig) -> None:
        """Reopen the file when its path no longer names it: removed, or renamed by logrotate."""
        fd = self._fd
        assert fd is not None
        try:
            now = config.path.stat()
        except FileNotFoundError:
            pass
        except OSError:  # cannot tell (a folder made unreadable): keep the file that is open
            return
        else:
            ours = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (ours.st_dev, ours.st_ino):
                return
        _log.info("%s was removed or renamed (rotated): reopening it", config.path)
        self._fd = None
        self._opened = False
        _close(fd, config.display_name)
        self.open()

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
            fd, self._fd = self._fd, None
            self._opened = False
            if fd is not None and self._stream is None:
                _close(fd, self.config.display_name)

    def __repr__(self) -> str:
        return f"FileSink({self.config.display_name})"


def _silence(fd: int) -> None:
    """Point standard output at /dev/null after EPIPE, so the exit-time flush cannot fail.

    (What the Python documentation recommends for SIGPIPE: without it the interpreter prints
    "Exception ignored ... BrokenPipeError" when it flushes stdout at exit.)
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)
    except OSError:
        return


def _is_regular(fd: int) -> bool:
    try:
        return is_regular(fd)
    except OSError:
        return False


def _close(fd: int, name: str) -> None:
    try:
        os.close(fd)
    except OSError as exc:  # every batch was written already; nothing is lost here
        _log.warning("closing %s: %s", name, exc.strerror)


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


def _open_for_append(path: Path) -> tuple[int, bool]:
    """The file opened for appending, and whether it is readable too (to find a torn last line)."""
    flags = os.O_APPEND | os.O_CREAT
    try:
        return os.open(path, os.O_RDWR | flags, 0o666), True
    except PermissionError:  # a file we may write but not read: appended to without the check
        return os.open(path, os.O_WRONLY | flags, 0o666), False
