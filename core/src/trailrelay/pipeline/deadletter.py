"""The dead-letter store: every record or object that could not be delivered, with the reason.

One NDJSON entry per item::

    {"time": "...", "stage": "read|parse|sink|notification", "reason": "...", "sink": "splunk",
     "origin": {"kind": "s3", "location": "s3://b/k", ...}, "index": 3,
     "raw": "<the record's JSON text>"}               # or "raw_base64" when not UTF-8

``raw_truncated_from`` (the original size in bytes) is added when ``raw`` holds only the first
bytes: an object that could not be read (1 MiB kept), a record over ``max_record_bytes``.

Entries go to a local folder (one file per UTC day) or to an S3 prefix (one gzip object per
flush). ``trailrelay replay-dead-letters`` reads them back and sends the records again.
"""

from __future__ import annotations

import base64
import datetime as dt
import gzip
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson

from trailrelay.appending import PartialAppendError, append_whole, is_regular
from trailrelay.record import Origin

__all__ = [
    "DeadLetterError",
    "DeadLetterStore",
    "FolderDeadLetters",
    "GuardedDeadLetters",
    "S3DeadLetters",
    "entry",
    "read_entries",
]

MAX_RAW = 1 << 20
"""Raw bytes kept of an object that could not be read (``read`` stage: a corrupt multi-GB object
is referenced by location, not copied). A record (``parse``, ``sink``) is kept whole, so a
replay sends all of it: records are bounded by ``max_record_bytes`` already."""


def entry(
    stage: str,
    reason: str,
    origin: Origin | None,
    raw: bytes | None,
    *,
    sink: str | None = None,
    index: int | None = None,
    size: int | None = None,
) -> dict[str, Any]:
    """Build one dead-letter entry.

    ``size``: how many bytes the item had when ``raw`` is only its first bytes already (a record
    over ``max_record_bytes``); the entry then says so in ``raw_truncated_from``, as it does for
    an object's bytes cut to :data:`MAX_RAW` here.
    """
    out: dict[str, Any] = {
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "stage": stage,
        "reason": reason,
    }
    if sink:
        out["sink"] = sink
    if origin is not None:
        out["origin"] = origin.as_dict()
    if index is not None:
        out["index"] = index
    if raw is not None:
        kept = raw[:MAX_RAW] if stage == "read" else raw
        whole = max(len(raw), size or 0)
        if len(kept) < whole:
            out["raw_truncated_from"] = whole
        try:
            out["raw"] = kept.decode("utf-8")
        except UnicodeDecodeError:
            out["raw_base64"] = base64.b64encode(kept).decode("ascii")
    return out


class DeadLetterStore(Protocol):
    """Where dead-letter entries go."""

    @property
    def count(self) -> int:
        """Entries written."""
        ...

    def write(self, item: dict[str, Any]) -> None:
        """Store one entry (a buffering store makes it durable by :meth:`sync`)."""
        ...

    def sync(self) -> None:
        """Make every entry written so far durable: called before a unit is acknowledged."""
        ...

    def close(self) -> None:
        """Flush and release."""
        ...


class DeadLetterError(Exception):
    """The dead-letter store failed (disk full, no access): what it should hold has no trace."""


class GuardedDeadLetters:
    """A store whose failure stops the run instead of a thread: ``on_failure(reason)`` is told once.

    A record that cannot be dead-lettered must not be acknowledged, so every failure raises
    :class:`DeadLetterError`, and the unit it belongs to is released, not acknowledged.
    """

    def __init__(self, inner: DeadLetterStore, on_failure: Callable[[str], None]) -> None:
        self.inner = inner
        self.on_failure = on_failure
        self._told = False

    @property
    def count(self) -> int:
        """Entries written."""
        return self.inner.count

    def write(self, item: dict[str, Any]) -> None:
        """Store one entry; DeadLetterError when the store cannot."""
        try:
            self.inner.write(item)
        except Exception as exc:
            raise self._failed(exc) from exc

    def sync(self) -> None:
        """Make the entries durable; DeadLetterError when the store cannot."""
        try:
            self.inner.sync()
        except Exception as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        """Flush and release (a failure is reported, not raised: the run is over)."""
        try:
            self.inner.close()
        except Exception as exc:
            self._failed(exc)

    def _failed(self, exc: Exception) -> DeadLetterError:
        reason = f"dead letters cannot be written: {type(exc).__name__}: {exc}"
        if not self._told:
            self._told = True
            self.on_failure(reason)
        return DeadLetterError(reason)


class FolderDeadLetters:
    """NDJSON files ``<folder>/dead-letters-YYYY-MM-DD.ndjson``, one whole line appended per entry.

    Writes are unbuffered (``os.write`` until every byte of the line is out), as the file sink's
    are: an entry is written when :meth:`write` returns. When a write fails (disk full), what went
    out of the line is cut off the file again before the error is raised, under an exclusive
    ``flock`` (the workers of ``forward --workers N`` share the folder), so the file never ends
    in part of a line that the next entry would be glued onto. A file that already does (an older
    version stopped mid-write) gets the next entry on a new line.
    """

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.count = 0
        self._lock = threading.Lock()

    def write(self, item: dict[str, Any]) -> None:
        """Append one entry: all of its line, or (OSError) none of it."""
        line = orjson.dumps(item) + b"\n"
        name = f"dead-letters-{dt.datetime.now(dt.UTC):%Y-%m-%d}.ndjson"
        with self._lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / name, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                append_whole(fd, line, regular=is_regular(fd), fresh_line=True)
            except PartialAppendError as exc:
                why = f" ({exc.cut_error.strerror})" if exc.cut_error is not None else ""
                raise OSError(
                    exc.errno,
                    f"{exc.strerror}, and the part of the entry already written could not be removed{why}",
                ) from None
            finally:
                os.close(fd)
            self.count += 1

    def sync(self) -> None:
        """Nothing buffered: each entry is written (to the page cache) when it comes."""

    def close(self) -> None:
        """Nothing buffered."""


class S3DeadLetters:
    """Gzip NDJSON objects under ``s3://bucket/prefix/YYYY/MM/DD/``.

    Uploaded every N entries, and before any unit of work is acknowledged (:meth:`sync`), so
    an entry never waits in memory for a unit already deleted from SQS or checkpointed.
    """

    def __init__(self, client: Any, bucket: str, prefix: str, flush_every: int = 500) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.rstrip("/")
        self.flush_every = flush_every
        self.count = 0
        self._buf: list[bytes] = []
        self._lock = threading.Lock()

    def write(self, item: dict[str, Any]) -> None:
        """Buffer one entry; upload when the buffer is full."""
        with self._lock:
            self._buf.append(orjson.dumps(item) + b"\n")
            self.count += 1
            if len(self._buf) >= self.flush_every:
                self._flush()

    def sync(self) -> None:
        """Upload what is buffered (before a unit whose records may be in it is acknowledged)."""
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Upload what is buffered."""
        self.sync()

    def _flush(self) -> None:
        if not self._buf:
            return
        now = dt.datetime.now(dt.UTC)
        key = f"{self.prefix}/{now:%Y/%m/%d}/{now:%H%M%S}-{uuid.uuid4().hex[:12]}.ndjson.gz"
        self.client.put_object(
            Bucket=self.bucket, Key=key.lstrip("/"), Body=gzip.compress(b"".join(self._buf))
        )
        self._buf = []


def read_entries(path: Path) -> Iterator[dict[str, Any]]:
    """Entries from a dead-letter file or folder (``.ndjson`` and ``.ndjson.gz``)."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*.ndjson*") if p.is_file())
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".gz":
            data = gzip.decompress(data)
        for line in data.splitlines():
            if line.strip():
                yield orjson.loads(line)
