"""Unwrap what AWS puts CloudTrail records in: Firehose record data and CloudWatch Logs payloads.

Firehose (the HTTP endpoint and the data-transformation Lambda event) carries each record as
base64; a record is a CloudTrail record, an EventBridge envelope, NDJSON of those, or a
CloudWatch Logs subscription payload (gzip'd JSON whose ``logEvents[].message`` are CloudTrail
records, which is how a trail that writes to CloudWatch Logs reaches Firehose or Lambda).
``CONTROL_MESSAGE`` payloads (CloudWatch checking that the destination is reachable) carry no
records and are skipped.

Nothing here parses records: :class:`PayloadCollector` only unwraps and groups the documents
into objects for :func:`trailrelay.sources.parse.iter_records`, which the pipeline runs on each.
Documents that are one JSON object each are joined into one JSON array (one parse for many
small records); anything else travels alone so one bad document never spoils the others, and so
does a whole CloudTrail file (``{"Records": [...]}``, a digest) put in one record.
Each object can also be read as a stream (``ObjectRef.open``, for
:func:`trailrelay.sources.stream.read_stream`): the joined array is then handed over piece by
piece and never built in memory.
"""

from __future__ import annotations

import binascii
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import msgspec

from trailrelay.errors import InputError
from trailrelay.record import Origin
from trailrelay.sources.base import ObjectRef
from trailrelay.sources.decompress import DEFAULT_LIMIT, TooLargeError, decompress

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = [
    "LogsBatch",
    "PayloadCollector",
    "decode_awslogs",
    "decode_base64",
    "group_documents",
    "logs_batch",
    "unwrap",
]

_WS = b" \t\r\n"


class _LogEvent(msgspec.Struct):
    message: str
    id: str | None = None


class _LogsPayload(msgspec.Struct, rename="camel"):
    message_type: str | None = None
    owner: str | None = None
    log_group: str | None = None
    log_stream: str | None = None
    log_events: list[_LogEvent] | None = None


class _AnyObject(msgspec.Struct):
    """Decoding checks "one JSON object" while skipping its content but for three keys no record has.

    ``Records`` (a whole CloudTrail file), ``Events`` (lookup-events output) or ``digestStartTime``
    (a digest file): such a document is read alone, as a file is, not as one record of an array.
    """

    Records: msgspec.Raw | None = None
    Events: msgspec.Raw | None = None
    digestStartTime: msgspec.Raw | None = None  # noqa: N815 - JSON key


_LOGS = msgspec.json.Decoder(_LogsPayload)
_OBJECT = msgspec.json.Decoder(_AnyObject)


@dataclass(frozen=True, slots=True)
class LogsBatch:
    """One CloudWatch Logs subscription payload: its log events' messages and where they are from."""

    message_type: str
    owner: str
    log_group: str
    log_stream: str
    messages: list[bytes]

    @property
    def control(self) -> bool:
        """True for CloudWatch's reachability check, which carries no records."""
        return self.message_type == "CONTROL_MESSAGE"

    @property
    def location(self) -> str:
        """``cloudwatch://<account>/<log group>/<log stream>``."""
        return f"cloudwatch://{self.owner}/{self.log_group.lstrip('/')}/{self.log_stream}"


def decode_base64(data: str | bytes) -> bytes:
    """Strict base64 (standard alphabet, padding required); InputError otherwise."""
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"data is not valid base64: {exc}") from None


def logs_batch(payload: bytes) -> LogsBatch | None:
    """The CloudWatch Logs subscription payload in these (decompressed) bytes, or None if not one."""
    if b'"logEvents"' not in payload or b'"messageType"' not in payload:
        return None  # a substring test first: CloudTrail records never pay for the decode below
    try:
        doc = _LOGS.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    if doc.message_type is None or doc.log_events is None:
        return None
    return LogsBatch(
        doc.message_type,
        doc.owner or "",
        doc.log_group or "",
        doc.log_stream or "",
        [e.message.encode() for e in doc.log_events],
    )


def decode_awslogs(data: str, limit: int = DEFAULT_LIMIT) -> LogsBatch:
    """The payload of a Lambda CloudWatch Logs event (``awslogs.data``: base64 of gzip'd JSON)."""
    batch = logs_batch(decompress(decode_base64(data), limit))
    if batch is None:
        raise InputError("awslogs.data is not a CloudWatch Logs subscription payload")
    return batch


def unwrap(raw: bytes, limit: int = DEFAULT_LIMIT) -> bytes | LogsBatch:
    """One record's payload gunzipped (when gzip) and, if it is one, read as a CloudWatch Logs batch."""
    data = decompress(raw, limit)
    batch = logs_batch(data)
    return data if batch is None else batch


def group_documents(docs: Sequence[bytes]) -> list[bytes]:
    """Objects for the record parser: documents that are one JSON object each joined into one array.

    Anything else (NDJSON, an array, not JSON) becomes an object of its own, so the parser reads
    it in its own way or reports it, without spoiling the others.
    """
    joined, alone = _group(docs)
    out = [b"[" + b",".join(joined) + b"]"] if joined else []
    return out + alone


def _group(docs: Sequence[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(documents that are one JSON object each, stripped; every other document)."""
    joined: list[bytes] = []
    alone: list[bytes] = []
    decode = _OBJECT.decode
    for doc in docs:
        body = doc if doc[:1] == b"{" and doc[-1:] == b"}" else doc.strip(_WS)
        try:
            found = decode(body)  # one JSON object, nothing after it: safe to put in an array
        except (msgspec.DecodeError, msgspec.ValidationError):
            alone.append(doc)
            continue
        if found.Records is None and found.Events is None and found.digestStartTime is None:
            joined.append(body)
        else:  # a whole file in one document: its records are read from it
            alone.append(doc)
    return joined, alone


def _const(data: bytes) -> Callable[[], bytes]:
    return lambda: data


def _ref(origin: Origin, data: bytes) -> ObjectRef:
    return ObjectRef(origin, _const(data), lambda: io.BytesIO(data), held=True)


def _array_ref(origin: Origin, docs: list[bytes]) -> ObjectRef:
    """The documents as one JSON array: joined when fetched, streamed piece by piece when opened."""
    return ObjectRef(
        origin,
        lambda: b"[" + b",".join(docs) + b"]",
        lambda: io.BufferedReader(_Pieces(docs), 1 << 20),
        held=True,
    )


class _Pieces(io.RawIOBase):
    """``[``, the documents separated by ``,``, and ``]``, read without joining them."""

    def __init__(self, docs: list[bytes]) -> None:
        super().__init__()
        self._docs = docs
        self._next = 0
        self._current = memoryview(b"[")
        self._done = False

    def readable(self) -> bool:
        """Always: this is a reader."""
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        """Fill ``buffer`` from the current piece, moving to the next when it is used up."""
        while not self._current:
            if self._done:
                return 0
            if self._next < len(self._docs):
                piece = (b"," if self._next else b"") + self._docs[self._next]
                self._next += 1
            else:
                piece, self._done = b"]", True
            self._current = memoryview(piece)
        out = memoryview(buffer).cast("B")
        n = min(len(out), len(self._current))
        out[:n] = self._current[:n]
        self._current = self._current[n:]
        return n


@dataclass
class PayloadCollector:
    """Collects the payloads of one unit of work and turns them into objects for the pipeline.

    ``add_base64`` and ``add_bytes`` take one wrapped record each; documents that are plain
    records are grouped under ``origin`` by :meth:`refs`, CloudWatch Logs batches become objects
    of their own (their origin names the log group and stream), control messages are skipped
    and undecodable data is listed in ``invalid`` (dead-lettered with the reason).

    ``limit`` bounds what each record unpacks to, ``budget`` (the Firehose endpoint's
    ``max_body_bytes``) what the records of one request unpack to together: a record that would
    go past what is left is listed in ``invalid`` with its packed bytes, and the records after it
    still have what is left.
    """

    origin: Origin
    limit: int = DEFAULT_LIMIT
    budget: int | None = None
    unpacked: int = 0
    documents: list[bytes] = field(default_factory=list)
    objects: list[ObjectRef] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    invalid: list[tuple[str, bytes]] = field(default_factory=list)

    def add_base64(self, data: str, where: str) -> None:
        """A base64 record (Firehose ``data``)."""
        try:
            raw = decode_base64(data)
        except InputError as exc:
            self.invalid.append((f"{where}: {exc}", data.encode()))
            return
        self.add_bytes(raw, where)

    def add_bytes(self, raw: bytes, where: str) -> None:
        """A record's bytes: gzip or not, a CloudWatch Logs payload or documents."""
        if not raw or raw.isspace():
            self.skipped.append(("empty-record", where))
            return
        left = self.limit if self.budget is None else min(self.limit, self.budget - self.unpacked)
        try:
            data = decompress(raw, left)
        except InputError as exc:
            if isinstance(exc, TooLargeError) and left < self.limit:  # the budget, not the record, is short
                why = f"the {left} bytes left of the {self.budget} one request's records may unpack to"
                self.invalid.append((f"{where}: unpacks past {why}", raw))
            else:  # corrupt gzip, bomb: the pipeline reads it again and dead-letters it
                self.objects.append(_ref(Origin(self.origin.kind, where), raw))
            return
        self.unpacked += len(data)
        batch = logs_batch(data)
        if batch is not None:
            self.add_logs(batch, where)
        else:
            self.documents.append(data)

    def add_logs(self, batch: LogsBatch, where: str) -> None:
        """A CloudWatch Logs subscription payload (its messages are the records)."""
        if batch.control:
            self.skipped.append(("cloudwatch-control-message", where))
            return
        origin = Origin("cloudwatch", batch.location)
        self.objects.extend(self._grouped(origin, batch.messages))

    def refs(self) -> list[ObjectRef]:
        """Every object collected, the grouped plain documents first."""
        return self._grouped(self.origin, self.documents) + self.objects

    @staticmethod
    def _grouped(origin: Origin, docs: Sequence[bytes]) -> list[ObjectRef]:
        joined, alone = _group(docs)
        refs = [_array_ref(origin, joined)] if joined else []
        return refs + [_ref(origin, doc) for doc in alone]
