"""Split one decompressed object into CloudTrail records, whatever shape it has.

Shapes read: ``{"Records": [...]}`` (CloudTrail's S3 delivery), a top-level array of records,
NDJSON of single records, one pretty-printed record, EventBridge "... via CloudTrail"
envelopes (alone, in arrays or as NDJSON lines), ``lookup-events`` output (``{"Events": [...]}``
with ``CloudTrailEvent`` strings), and CloudTrail files one after another (``zcat *.json.gz``).
Digest files are recognised and skipped. Records are never materialised here: msgspec slices
the object into raw byte ranges and only the routing fields are decoded.

Whole-object failures (bad JSON, not CloudTrail) raise :class:`InputError`; a single bad
record inside a good object is yielded as a :class:`Problem` so the rest still flows.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import count, repeat

import msgspec

from trailrelay.errors import InputError
from trailrelay.record import _ROUTING, BAD_JSON, Origin, Record, Routing, _normalize, decode_routing, why_bad

__all__ = [
    "NotALogFile",
    "Problem",
    "RecordRun",
    "iter_records",
    "ndjson_after_a_bad_line",
    "records_of",
    "records_of_array",
    "trailing_at",
]


@dataclass(frozen=True, slots=True)
class Problem:
    """A record that could not be read; it is dead-lettered with the reason."""

    reason: str
    origin: Origin
    index: int
    raw: bytes
    terminal: bool = False
    """Only from the streaming reader: reading stopped here and nothing follows. The rest of the
    object from ``index`` on was not read (``raw`` holds at most an excerpt of it); every item
    yielded before stays valid. It takes the place of the InputError ``iter_records`` raises."""
    size: int | None = None
    """The record's size in bytes when ``raw`` holds only its first bytes (a record over
    ``max_record_bytes``, skipped unread); None when ``raw`` is all of it."""


class NotALogFile(Exception):  # noqa: N818 - a signal, not an error
    """The object is a known non-log file (a digest); it is skipped and counted, not dead-lettered."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


_ABSENT = msgspec.Raw(b"")


class _Probe(msgspec.Struct):
    """Top-level keys that tell the shapes apart; everything else is skipped unparsed."""

    Records: list[msgspec.Raw] | None = None
    Events: list[msgspec.Raw] | None = None
    detail_type: msgspec.Raw = msgspec.field(default=_ABSENT, name="detail-type")
    detail: msgspec.Raw = _ABSENT
    digestStartTime: msgspec.Raw = _ABSENT  # noqa: N815 - JSON key
    logFiles: msgspec.Raw = _ABSENT  # noqa: N815 - JSON key


class _LookupEvent(msgspec.Struct):
    CloudTrailEvent: str | None = None


_PROBE = msgspec.json.Decoder(_Probe)
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_LOOKUP = msgspec.json.Decoder(_LookupEvent)
_WS = b" \t\r\n"
_OPEN_BRACE, _OPEN_BRACKET = ord("{"), ord("[")


def iter_records(data: bytes, origin: Origin, start: int = 0) -> Iterator[Record | Problem]:
    """Yield every record in a decompressed object; raises InputError or NotALogFile.

    ``start``: the index of the first record. CloudTrail files one after another (``zcat
    *.json.gz``, gzip members concatenated) are read in turn: after a ``{"Records": [...]}``
    object (or a digest, skipped), what follows is read as an object of its own.
    """
    if data.startswith(b"\xef\xbb\xbf"):  # a UTF-8 BOM, written by some Windows tools
        data = data[3:]
    runs: list[Iterator[Record | Problem]] = []
    view = memoryview(data)
    pos = 0
    while True:
        try:
            out = _document(data if pos == 0 else view[pos:], origin, start)
        except NotALogFile:
            if pos == 0:
                raise
            break  # a digest after the log files: skipped, as it would be alone
        if not isinstance(out, _More):
            runs.append(out)
            break
        runs.append(_from_items(out.records, origin, start))
        start += len(out.records)
        pos += out.end
        if _first_byte(view[pos:]) == -1:  # only whitespace after it
            break
    return runs[0] if len(runs) == 1 else itertools.chain.from_iterable(runs)


@dataclass(frozen=True, slots=True)
class _More:
    """A ``{"Records": [...]}`` object (or a digest) that ends at ``end``, where more JSON follows."""

    records: list[msgspec.Raw]
    end: int


_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")


def trailing_at(exc: BaseException) -> int | None:
    """Index of what follows a complete value and its whitespace, or None for any other failure.

    msgspec refuses to go on there: "trailing characters (byte N)", N counted from 1.
    """
    found = _TRAILING.search(str(exc))
    return int(found.group(1)) - 1 if found is not None else None


def _document(data: bytes | memoryview, origin: Origin, start: int) -> Iterator[Record | Problem] | _More:
    """The records of one JSON document (or of NDJSON), or :class:`_More` when another follows.

    ``data`` is a view when it is not the first document: it is copied only for the shapes that
    end the object (never for a run of CloudTrail files, so that run is read in linear time).
    Raises InputError or NotALogFile.
    """
    first = _first_byte(data)
    if first == -1:
        raise InputError("object is empty (no JSON)")
    if data[first] == _OPEN_BRACE:
        try:
            probe = _PROBE.decode(data)
        except msgspec.ValidationError as exc:
            raise InputError(f"not a CloudTrail log: {exc}") from None
        except BAD_JSON as exc:
            end = trailing_at(exc)
            if end is not None:
                leading = _probe_or_none(data[:end])
                if leading is not None and leading.Records is not None:
                    return _More(leading.Records, end)
                if leading is not None and leading.digestStartTime and leading.logFiles:
                    return _More([], end)  # a digest file, skipped
            data = bytes(data)
            if _looks_like_ndjson(data, first):
                return _from_lines(data, origin, start)
            raise InputError(f"malformed JSON: {why_bad(exc, data)}") from None
        if probe.Records is not None:
            return _from_items(probe.Records, origin, start)
        if probe.digestStartTime and probe.logFiles:
            raise NotALogFile("digest")
        if probe.Events is not None:
            return _from_lookup(probe.Events, origin, start)
        return iter((_one(bytes(data), probe, origin, start),))
    data = bytes(data)
    if data[first] == _OPEN_BRACKET:
        try:
            items = _ARRAY.decode(data)
        except (*BAD_JSON, msgspec.ValidationError) as exc:
            raise InputError(f"malformed JSON array: {why_bad(exc, data)}") from None
        return _from_items(items, origin, start)
    if ndjson_after_a_bad_line(data, first, complete=True):
        return _from_lines(data, origin, start)
    raise InputError(f"not JSON: object starts with {data[first : first + 16]!r}")


def _probe_or_none(data: bytes | memoryview) -> _Probe | None:
    try:
        return _PROBE.decode(data)
    except (*BAD_JSON, msgspec.ValidationError):
        return None


def _first_byte(data: bytes | memoryview) -> int:
    """Index of the first non-whitespace byte, or -1."""
    i = 0
    n = len(data)
    while i < n and data[i] in _WS:
        i += 1
    return i if i < n else -1


def _looks_like_ndjson(data: bytes, start: int) -> bool:
    """True when the first line alone is a complete JSON object."""
    end = data.find(b"\n", start)
    if end == -1:
        return False
    try:
        return isinstance(msgspec.json.decode(data[start:end]), dict)
    except BAD_JSON:
        return False


def ndjson_after_a_bad_line(data: bytes, start: int, *, complete: bool) -> bool:
    """True when the line after the first one (which is not a JSON object) is a whole JSON object.

    That is NDJSON whose first line is damaged: a pipe that began in the middle of a record, a
    stray banner. Its lines are then read one by one (the first becomes a dead letter), instead of
    the whole input being refused as "not JSON". ``complete``: ``data`` is all there is (a last
    line without a line break counts).
    """
    nl = data.find(b"\n", start)
    if nl < 0:
        return False
    nxt, n = nl + 1, len(data)
    while nxt < n and data[nxt] in _WS:
        nxt += 1
    if nxt >= n or data[nxt] != _OPEN_BRACE:
        return False
    end = data.find(b"\n", nxt)
    if end < 0:
        if not complete:
            return False
        end = n
    try:
        return isinstance(msgspec.json.decode(data[nxt:end]), dict)
    except BAD_JSON:
        return False


class RecordRun(list):  # type: ignore[type-arg]  # list[Record]
    """The items of one cut when every one is a record, in order: the pipeline takes it whole."""

    __slots__ = ()


def records_of(
    items: Sequence[msgspec.Raw | bytes], origin: Origin, start: int = 0
) -> list[Record | Problem]:
    """The items of raw element slices in order (``start``: the first one's index).

    A :class:`RecordRun` when all are records (the common case), so the pipeline need not look
    at each one; a plain list when a problem is among them.
    """
    out = RecordRun()
    append = out.append
    decode = _ROUTING.decode
    normalize = _normalize
    clean = True
    for index, raw_slice in enumerate(items, start):
        raw = bytes(raw_slice)
        if raw.isascii():  # the common case inline; anything unusual (UTF-8 too) takes the careful path
            try:
                routing = decode(raw)
            except (msgspec.ValidationError, *BAD_JSON):
                pass
            else:
                if routing.event_name is not None or routing.event_id is not None:
                    normalize(routing)
                    append(Record(raw, routing, origin, index))
                    continue
        item = _record(raw, origin, index)
        clean = clean and item.__class__ is Record
        append(item)
    return out if clean else list(out)


_ROUTINGS = msgspec.json.Decoder(list[Routing])


def records_of_array(
    array: bytes, items: Sequence[msgspec.Raw], origin: Origin, start: int = 0
) -> list[Record | Problem]:
    """:func:`records_of` for ``items``, the elements of the JSON array ``array``; the same result.

    A cut of a CloudTrail file (ASCII, every element a record) has the routing fields of all its
    elements decoded in one call and its records built without a Python step each: about 1 µs a
    record less than :func:`records_of`. Any element that would take :func:`records_of`'s careful
    path (non-ASCII text, a field of an unexpected type, no eventName nor eventID) sends the whole
    cut through :func:`records_of` instead.
    """
    if array.isascii():
        try:
            routings: list[Routing] | None = _ROUTINGS.decode(array)
        except (msgspec.ValidationError, *BAD_JSON):
            routings = None
        if routings is not None and len(routings) == len(items):
            normalize = _normalize
            for routing in routings:
                if routing.event_name is None and routing.event_id is None:
                    break
                normalize(routing)
            else:
                return RecordRun(map(Record, map(bytes, items), routings, repeat(origin), count(start)))
    return records_of(items, origin, start)


def _from_items(
    items: Sequence[msgspec.Raw | bytes], origin: Origin, start: int = 0
) -> Iterator[Record | Problem]:
    """Like :func:`records_of`, one slice at a time (a whole object's records are not held twice)."""
    for index, raw_slice in enumerate(items, start):
        yield from records_of((raw_slice,), origin, index)


def _from_lines(data: bytes, origin: Origin, start: int = 0) -> Iterator[Record | Problem]:
    index = start
    for line in data.splitlines():
        if not line.strip():
            continue
        yield _line(line, origin, index)
        index += 1


def _line(line: bytes, origin: Origin, index: int) -> Record | Problem:
    """One non-blank NDJSON line: a record, an EventBridge envelope, or a problem."""
    try:
        probe = _PROBE.decode(line)
    except (*BAD_JSON, msgspec.ValidationError) as exc:
        return Problem(f"line {index + 1}: malformed JSON: {why_bad(exc, line)}", origin, index, line)
    return _one(line, probe, origin, index)


def _from_lookup(events: list[msgspec.Raw], origin: Origin, start: int = 0) -> Iterator[Record | Problem]:
    for index, raw in enumerate(events, start):
        try:
            inner = _LOOKUP.decode(raw).CloudTrailEvent
        except (*BAD_JSON, msgspec.ValidationError) as exc:
            yield Problem(f"lookup event is malformed: {exc}", origin, index, bytes(raw))
            continue
        yield _record(inner.encode() if inner else bytes(raw), origin, index)


def _one(data: bytes, probe: _Probe, origin: Origin, index: int) -> Record | Problem:
    """A single top-level object: an EventBridge envelope or one record."""
    if probe.detail_type:
        try:
            kind = msgspec.json.decode(probe.detail_type)
        except BAD_JSON as exc:
            return Problem(f"malformed EventBridge envelope: {why_bad(exc)}", origin, index, data)
        if isinstance(kind, str) and kind.endswith("via CloudTrail") and probe.detail:
            return _record(bytes(probe.detail), origin, index)
        return Problem(f"EventBridge event of type {kind!r} is not a CloudTrail record", origin, index, data)
    return _record(data.strip(_WS), origin, index)


def _record(raw: bytes, origin: Origin, index: int) -> Record | Problem:
    try:
        routing = decode_routing(raw)
    except ValueError as exc:
        return Problem(str(exc), origin, index, raw)
    if routing.event_name is None and routing.event_id is None:
        if raw[:1] == b"{" and b'"detail-type"' in raw:
            try:
                probe = _PROBE.decode(raw)
            except (*BAD_JSON, msgspec.ValidationError) as exc:
                return Problem(f"malformed EventBridge envelope: {exc}", origin, index, raw)
            return _one(raw, probe, origin, index)
        return Problem("not a CloudTrail record: no eventName or eventID", origin, index, raw)
    return Record(raw, routing, origin, index)
