"""What every source hands the pipeline: units of work that are acknowledged as a whole."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Protocol

from trailrelay.record import Origin, Record

if TYPE_CHECKING:
    from trailrelay.sources.parse import Problem

__all__ = [
    "CLAIMS_ENV",
    "Claims",
    "ItemStream",
    "ObjectDone",
    "ObjectRef",
    "Sharded",
    "Source",
    "Work",
    "in_shard",
]


class ItemStream(Protocol):
    """What ``ObjectRef.items`` returns: records and problems, and the bytes they came from."""

    bytes_in: int
    sha256: str | None

    def __iter__(self) -> Iterator[Record | Problem]:
        """The items, in order."""
        ...


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """One object to read: where it is and how to fetch its bytes, whole or as a stream."""

    origin: Origin
    fetch: Callable[[], bytes]
    """Return the object's (possibly gzip) bytes; raise on failure (missing, denied)."""
    open: Callable[[], BinaryIO] | None = None
    """Open the object's (possibly gzip) bytes for reading in chunks (an S3 body, a file); raise
    on failure like ``fetch``. The caller closes it. None when the source only offers ``fetch``."""
    items: Callable[[], ItemStream] | None = None
    """Records the source cut itself (standard input): the pipeline reads these instead of parsing
    bytes. They are tagged, filtered and delivered like parsed ones; None for every other source."""
    held: bool = False
    """The bytes exist only in this process (a Firehose record, a payload inside an event): a
    problem that stops the reading keeps them whole in its dead letter, since once the unit is
    acknowledged no other copy is left. An S3 object or a file is named by its origin instead."""

    def reader(self) -> BinaryIO:
        """The object's bytes as a stream: ``open`` when the source streams, else ``fetch`` in memory."""
        if self.open is not None:
            return self.open()
        return io.BytesIO(self.fetch())


@dataclass(frozen=True, slots=True)
class ObjectDone:
    """An object whose every record reached a final outcome in every sink."""

    origin: Origin
    records: int
    sha256: str | None


def _nothing(*_: object) -> None:
    return None


@dataclass(slots=True)
class Work:
    """A unit the source acknowledges once: an object, a file, or one SQS message.

    The pipeline calls ``ack`` exactly once, after every record of every object reached a
    final outcome in every sink; or ``release`` when it cannot finish (an object could not be
    fetched, or the run is stopping), so the source can offer the work again later.
    """

    objects: list[ObjectRef]
    ack: Callable[[list[ObjectDone]], None] = _nothing
    release: Callable[[str], None] = _nothing
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """(reason, location) of things this unit named that are not log files (counted)."""
    invalid: list[tuple[str, bytes]] = field(default_factory=list)
    """(reason, raw message) of notifications that could not be read: dead-lettered."""
    label: str = ""
    idle: bool = False
    """An empty poll: nothing to do, but proof the source is alive (health checks)."""
    records: list[Record] = field(default_factory=list)
    """Ready-made records (integrity events) handed to every sink as they are: not read, not
    transformed or filtered; acknowledged with the unit like any other record."""
    urgent: bool = False
    """Someone waits for this unit's acknowledgement (a Firehose request): flush partial batches
    once it is read instead of waiting for them to fill."""


class Source(Protocol):
    """Yields work until drained (``once``) or stopped.

    A source whose ``ack`` only starts the acknowledgement (SQS deletes go in batches) may also
    have ``report_failed_acks(report)``: the pipeline passes a callable that it calls with the
    number of acknowledged units that failed later, which are then counted as released.
    """

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """Units of work, in an order that suits checkpointing; ends when drained or stopped."""
        ...

    def close(self) -> None:
        """Release clients and background threads."""
        ...


def in_shard(label: str, index: int, count: int) -> bool:
    """True when the unit named ``label`` belongs to worker ``index`` of ``count`` (stable hash)."""
    return zlib.crc32(label.encode("utf-8", "surrogateescape")) % count == index


CLAIMS_ENV = "TRAILRELAY_CLAIMS"
"""The environment variable a fleet names its workers' shared :class:`Claims` folder in."""


class Claims:
    """The units the workers of one fleet have taken, as files in a folder they share.

    A unit goes to the first worker that asks for it (an exclusive create is atomic across
    processes), so a worker that is done early takes what the others have not started, and the
    run ends with the workers finishing together rather than one waiting on a slower share.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def take(self, label: str) -> bool:
        """True for the one caller, in any process, that asks first for the unit ``label``."""
        try:
            fd = os.open(self._path(label), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except FileExistsError:
            return False
        os.close(fd)
        return True

    def taken(self, label: str) -> bool:
        """Whether a worker has taken ``label`` (a claim is made before the unit is read)."""
        return self._path(label).exists()

    def _path(self, label: str) -> Path:
        return (
            self.folder
            / hashlib.blake2b(label.encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
        )


class Sharded:
    """One worker's share of a listing source: each unit is read by exactly one of ``count`` workers.

    Every worker lists the same objects (listing is cheap). A unit is kept by the worker its
    label hashes to, or, with ``claims`` (the workers of one fleet), by whichever worker takes it
    first. Checkpoints stay per object either way. What a unit without objects reports as skipped
    is counted by the worker each location hashes to, and idle polls by worker 0, so every count
    is made once. With claims, a location a worker has taken is not counted at all: another
    worker's listing that reaches it after it was read in this run sees it as already done.
    """

    def __init__(self, inner: Source, index: int, count: int, claims: Claims | None = None) -> None:
        if not 0 <= index < count:
            raise ValueError(f"shard {index}/{count} does not exist")
        self.inner = inner
        self.index = index
        self.count = count
        self.claims = claims

    def work(self, stop: threading.Event) -> Iterator[Work]:
        """The inner source's units that belong to this worker."""
        index, count, claims = self.index, self.count, self.claims
        for unit in self.inner.work(stop):
            if unit.objects or unit.records:
                if claims.take(unit.label) if claims is not None else in_shard(unit.label, index, count):
                    yield unit
            elif unit.skipped:
                mine = [
                    (why, where)
                    for why, where in unit.skipped
                    if in_shard(where, index, count) and not (claims is not None and claims.taken(where))
                ]
                if mine:
                    yield dataclasses.replace(unit, skipped=mine)
            elif index == 0:
                yield unit

    def close(self) -> None:
        """Close the inner source."""
        self.inner.close()
