"""Read one object as a stream: gunzip in chunks, hash, and cut records out as they complete.

:func:`read_stream` is the streaming twin of ``iter_records(decompress(data))``. For an object
that reads cleanly it yields the same items: each record's exact bytes, index and routing fields,
and the same problems, while it holds one chunk and the record being assembled instead of the
object. The SHA-256 of the uncompressed bytes (what CloudTrail's digests sign) is computed on
the way, and ``limit`` (``max_object_bytes``) is counted on the stream, so a gzip bomb stops
early.

Shapes read with bounded memory:

- ``{"Records": [...]}`` whose first key is ``Records`` (CloudTrail's S3 delivery, compact or
  pretty-printed); what follows the array up to the object's ``}`` is held (up to
  ``max_record_bytes``) and checked;
- a top-level array of records or EventBridge envelopes;
- NDJSON: one record or envelope per line.

Read whole, exactly as :func:`~trailrelay.sources.parse.iter_records` reads them (memory bounded
by ``limit`` only): objects whose first key is not ``Records`` (lookup-events output, one
pretty-printed record or EventBridge envelope, a digest) and bytes that are no JSON at all.

How records are cut, fast: after two records the reader knows the bytes that separate them
(``},{"eventVersion"`` in CloudTrail's files). It looks for the last such separator in what it
holds and lets msgspec split everything before it (``[`` + that + ``]`` decoded as a list of raw
slices, at C speed). The decode is the proof: it succeeds only when the cut falls between two
records, never inside a string or a nested object. When there is no separator or the decode
fails, an exact scan takes over: msgspec decodes one value at a time and reports where it ends
("trailing characters at byte N"); a small bracket-and-string scanner (:class:`_Scanner`) finds
the end of values msgspec refuses (malformed or nested too deeply), which then become problems
of their own.

What arrives how:

- a record that cannot be read: a :class:`Problem`, as ``iter_records`` yields it; reading goes on;
- a record longer than ``max_record_bytes``: a :class:`Problem` saying so; its bytes are skipped
  (never held whole) and reading goes on after it;
- anything that stops the reading (corrupt, truncated or bomb gzip; not JSON; malformed JSON
  between records; an object that ends inside a record or before its array closes): one last
  :class:`Problem` with ``terminal=True`` whose reason is the InputError text ``iter_records`` or
  ``decompress`` would have raised (plus where reading stopped, when records came before it).
  Records yielded before it stay valid; nothing follows it;
- a digest: :class:`NotALogFile`, raised before any item (as today);
- the source failing part-way (network, S3): :class:`FetchError`; release the unit.

Where this differs from ``iter_records`` (all on input ``iter_records`` refuses whole): the
streaming reader delivers the records before the point where an object goes bad, and reads a
malformed record inside an array as a problem of its own instead of refusing the object.

Objects one after another are read in turn by both: after a ``{"Records": [...]}`` object (or
a digest, skipped) whatever follows is read as an object of its own, the record index going on.
That is what ``cat *.json.gz`` or ``zcat *.json.gz`` piped to standard input gives.
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Generator, Iterable, Iterator
from typing import Any, BinaryIO

import msgspec

from trailrelay.errors import FetchError, InputError
from trailrelay.record import BAD_JSON, Origin, Record, why_bad
from trailrelay.sources.decompress import DEFAULT_LIMIT, bad_gzip_header, is_gzip
from trailrelay.sources.parse import (
    _PROBE,
    NotALogFile,
    Problem,
    _line,
    _looks_like_ndjson,
    iter_records,
    ndjson_after_a_bad_line,
    records_of,
    records_of_array,
    trailing_at,
)

try:  # ISA-L inflates ~1.4x faster than zlib, with identical output
    from isal import isal_zlib as _zlib
except ImportError:  # pragma: no cover - isal ships wheels for every supported platform
    _zlib: Any = zlib  # type: ignore[no-redef]

__all__ = [
    "CHUNK_BYTES",
    "DEFAULT_MAX_RECORD_BYTES",
    "READ_BYTES",
    "NotALogFile",
    "ObjectStream",
    "Problem",
    "read_stream",
]

DEFAULT_MAX_RECORD_BYTES = 16 << 20
"""Largest single record read by default (16 MiB); ``[pipeline] max_record_bytes`` overrides."""
READ_BYTES = 256 << 10
"""Compressed bytes asked of the source per read."""
CHUNK_BYTES = 1 << 20
"""Uncompressed bytes produced per step: the unit the splitter works on."""
EXCERPT_BYTES = 1 << 20
"""Most bytes a problem keeps of a record it could not read (the dead-letter store keeps 1 MiB)."""

_ZLIB_ERRORS: tuple[Any, ...] = (zlib.error, _zlib.error)
_HEAD = 4096  # bytes gathered before deciding the shape
_EXACT_MIN = 4 << 10  # with no separator in sight, scan exactly once this much (then twice as much) is held
_BOM = b"\xef\xbb\xbf"
_WS = b" \t\r\n"
_NONWS = re.compile(rb"[^ \t\r\n]")
_ENVELOPE = re.compile(rb'\{[ \t\r\n]*"Records"[ \t\r\n]*:[ \t\r\n]*\[')
_EOL = re.compile(rb"[\r\n]")
_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])
_RAW = msgspec.json.Decoder(msgspec.Raw)
_Batches = Iterator[Iterable[Record | Problem]]
"""What the splitter yields: the items of one chunk at a time (fewer generator hops per record)."""
_COMMA, _CLOSE, _OPEN_OBJECT, _CLOSE_OBJECT, _QUOTE, _OPEN_ARRAY = 0x2C, 0x5D, 0x7B, 0x7D, 0x22, 0x5B


def read_stream(
    raw: BinaryIO,
    origin: Origin,
    *,
    limit: int = DEFAULT_LIMIT,
    hash_sha256: bool = False,
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
) -> ObjectStream:
    """The records of one object read from ``raw`` (gzip or not); iterate it once, it closes ``raw``."""
    return ObjectStream(raw, origin, limit=limit, hash_sha256=hash_sha256, max_record_bytes=max_record_bytes)


class ObjectStream:
    """One object's records, read as they arrive; see the module docstring for what is yielded.

    After iteration, ``sha256`` is the hex SHA-256 of the whole uncompressed content (when asked
    for and the content could be read to its end, also past a terminal problem in the JSON),
    ``bytes_in`` the bytes read from the source and ``bytes_out`` the uncompressed bytes.
    """

    def __init__(
        self,
        raw: BinaryIO,
        origin: Origin,
        *,
        limit: int = DEFAULT_LIMIT,
        hash_sha256: bool = False,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        read_bytes: int = READ_BYTES,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self.origin = origin
        self.limit = limit
        self.max_record_bytes = max_record_bytes
        self.sha256: str | None = None
        self.bytes_in = 0
        self.bytes_out = 0
        self._raw = raw
        self._hasher = hashlib.sha256() if hash_sha256 else None
        self._read_bytes = read_bytes
        self._chunk_bytes = chunk_bytes
        self._inflate_failed = False
        self._started = False

    def __iter__(self) -> Iterator[Record | Problem]:
        return self._items()

    def _items(self) -> Iterator[Record | Problem]:
        batches = self.batches()
        try:
            for batch in batches:
                yield from batch
        finally:
            batches.close()  # stopped early: the source is closed now, not when collected

    def batches(self) -> Generator[Iterable[Record | Problem], None, None]:
        """The items a cut at a time, in order: the pipeline's way (no hop per record).

        A cut holding only records is a :class:`~trailrelay.sources.parse.RecordRun`. Iterate each
        batch before asking for the next; iterate the stream (or its batches) once.
        """
        if self._started:
            raise RuntimeError("an ObjectStream can be iterated only once")
        self._started = True
        return self._run()

    def _run(self) -> Generator[Iterable[Record | Problem], None, None]:
        chunks = self._inflate()
        splitter = _Splitter(self.origin, self.max_record_bytes)
        try:
            try:
                yield from splitter.items(chunks)
            except InputError as exc:
                yield (splitter.stopped(str(exc)),)
                if self._hasher is not None and not self._inflate_failed:
                    self._drain(chunks)  # the digest check wants the hash even of a bad file
        finally:
            chunks.close()

    def _drain(self, chunks: Iterator[bytes]) -> None:
        try:
            for _ in chunks:
                pass
        except InputError:
            pass  # no hash: the content could not be read to its end

    def _read(self) -> bytes:
        try:
            data = self._raw.read(self._read_bytes)
        except InputError:
            raise
        except Exception as exc:
            raise FetchError(
                f"reading {self.origin.location} failed after {self.bytes_in} bytes: {exc}"
            ) from exc
        self.bytes_in += len(data)
        return data

    def _emit(self, out: bytes) -> bytes:
        self.bytes_out += len(out)
        if self.bytes_out > self.limit:
            self._inflate_failed = True
            raise InputError(f"gzip expands past the {self.limit}-byte limit (possible gzip bomb)")
        if self._hasher is not None:
            self._hasher.update(out)
        return out

    def _inflate(self) -> Generator[bytes, None, None]:
        """Uncompressed chunks of the object; InputError with the texts of ``decompress``."""
        try:
            data = self._read()
            while 0 < len(data) < 2:  # the magic number may arrive a byte at a time
                more = self._read()
                if not more:
                    break
                data += more
            if is_gzip(data):
                yield from self._gunzip(data)
            else:
                while data:
                    self.bytes_out += len(data)
                    if self.bytes_out > self.limit:
                        self._inflate_failed = True
                        raise InputError(f"object is over the {self.limit}-byte limit")
                    if self._hasher is not None:
                        self._hasher.update(data)
                    yield data
                    data = self._read()
            if self._hasher is not None:
                self.sha256 = self._hasher.hexdigest()
        finally:
            self._raw.close()

    def _member_start(self, data: bytes) -> bytes:
        """``data`` opening a gzip member, with its first 4 bytes; corrupt when they are no header."""
        while len(data) < 4:
            more = self._read()
            if not more:
                break
            data += more
        bad = bad_gzip_header(data)
        if bad:
            self._inflate_failed = True
            raise InputError(f"corrupt gzip data: {bad}")
        return data

    def _gunzip(self, data: bytes) -> Iterator[bytes]:
        """Every gzip member in turn, then zero padding; anything else after them is garbage."""
        size = self._chunk_bytes
        data = self._member_start(data)
        d: Any = _zlib.decompressobj(31)
        padding = False
        while True:
            if not data:
                data = self._read()
                if not data:
                    break
            if padding:
                if data.strip(b"\x00"):
                    self._inflate_failed = True
                    raise InputError("trailing garbage after the gzip stream")
                data = b""
                continue
            if d.eof:  # a member ended: another member follows, or zero padding
                if len(data) < 2:
                    more = self._read()
                    if more:
                        data += more
                        continue
                if is_gzip(data):
                    data = self._member_start(data)
                    d = _zlib.decompressobj(31)
                else:
                    padding = True
                    continue
            try:
                out = d.decompress(data, size)
                while True:
                    if out:
                        yield self._emit(out)
                    tail = d.unconsumed_tail
                    if not tail or d.eof:
                        break
                    out = d.decompress(tail, size)
            except _ZLIB_ERRORS as exc:
                self._inflate_failed = True
                raise InputError(f"corrupt gzip data: {exc}") from None
            data = d.unused_data if d.eof else b""
        if not padding and not d.eof:
            try:
                tail = d.flush()
            except _ZLIB_ERRORS as exc:
                self._inflate_failed = True
                raise InputError(f"corrupt gzip data: {exc}") from None
            if tail:
                yield self._emit(tail)
            if not d.eof:
                self._inflate_failed = True
                raise InputError(
                    f"truncated gzip data: stream ends after {self.bytes_out} decompressed bytes"
                )


class _Splitter:
    """Cuts records out of uncompressed chunks; its state says where a terminal problem stopped."""

    def __init__(self, origin: Origin, max_record_bytes: int) -> None:
        self.origin = origin
        self.max_record = max_record_bytes
        self.buf = b""
        """Bytes held and not yet cut into records: an excerpt of them goes with a terminal problem."""
        self.index = 0
        """Index of the next record."""
        self.prefix = "malformed JSON"
        self.need_comma = False
        """The held bytes start right after a record: ``,`` or ``]`` comes next."""
        self.after_comma = False
        self.closed = False
        self.sep: bytes | None = None
        """The bytes between two records, from the closing ``}`` to the next record's first key."""
        self.sep_comma = 0
        self.next_exact = 0
        self.envelope = False

    def stopped(self, reason: str) -> Problem:
        """The terminal problem: reading stopped at the next record."""
        if self.index:
            reason = (
                f"{reason} (reading stopped after {self.index} records; the rest of the object is not read)"
            )
        start = _NONWS.search(self.buf)
        excerpt = self.buf[start.start() if start else 0 :][:EXCERPT_BYTES]
        return Problem(reason, self.origin, self.index, excerpt, terminal=True)

    # -- shape -------------------------------------------------------------------------------

    def items(self, chunks: Iterator[bytes]) -> Generator[Iterable[Record | Problem], None, None]:
        """Records and problems of the whole object; raises InputError or NotALogFile.

        Objects one after another (CloudTrail files concatenated: ``zcat *.json.gz``) are read
        in turn, as ``iter_records`` reads them: a ``{"Records": [...]}`` object that more JSON
        follows hands the rest of the stream back here.
        """
        rest = _PushBack(chunks)
        first = True
        while True:
            try:
                more = yield from self._document(rest, first=first)
            except NotALogFile:
                if first:
                    raise
                return  # a digest after the log files: skipped, as it would be alone
            if more is None:
                return
            rest.push(more)
            first = False

    def _document(
        self, chunks: _PushBack, *, first: bool
    ) -> Generator[Iterable[Record | Problem], None, bytes | None]:
        """One object's records; returns what follows a Records envelope when more JSON does.

        The shape is decided from the first ``_HEAD`` bytes, or sooner when they already tell it
        (a slow pipe may bring a few NDJSON lines and then nothing for a while). A stream that
        breaks before then still yields the records complete before the break, then the error.
        """
        self._reset()
        head = b""
        eof = False
        while len(head) < _HEAD and not _shape_known(head, first=first):
            try:
                chunk = next(chunks, None)
            except InputError as exc:  # broken early (truncated gzip): what came before is read first
                chunks.fail(exc)
                break
            if chunk is None:
                eof = True
                break
            head += chunk
        self.buf = head
        data = head[3:] if first and head.startswith(_BOM) else head
        found = _NONWS.search(data)
        if found is None:
            if eof:
                raise InputError("object is empty (no JSON)")
            yield from self._whole(head, chunks)
            return None
        start = found.start()
        lead = data[start]
        if lead == _OPEN_ARRAY:
            self.prefix = "malformed JSON array"
            self.buf = data[start + 1 :]
            yield from self._array(chunks, envelope=False)
        elif lead == _OPEN_OBJECT:
            envelope = _ENVELOPE.match(data, start)
            if envelope is not None:
                self.buf = data[envelope.end() :]
                return (yield from self._array(chunks, envelope=True))
            yield from self._object(head, data, start, chunks, eof=eof)
        else:  # not JSON, unless NDJSON whose first line is damaged
            data, eof = self._two_lines(data, start, chunks, eof)
            if ndjson_after_a_bad_line(data, start, complete=eof):
                self.buf = data[start:]
                yield from self._lines(chunks)
            elif start + 16 <= len(data) or eof:
                raise InputError(f"not JSON: object starts with {data[start : start + 16]!r}")
            else:
                yield from self._whole(data, chunks)
        return None

    def _reset(self) -> None:
        """Forget the shape of the object before (the record index goes on)."""
        self.buf = b""
        self.prefix = "malformed JSON"
        self.need_comma = self.after_comma = self.closed = self.envelope = False
        self.sep = None
        self.sep_comma = self.next_exact = 0

    def _two_lines(self, data: bytes, start: int, chunks: Iterator[bytes], eof: bool) -> tuple[bytes, bool]:
        """``data`` read on until it holds two line breaks after ``start`` (at most a record's limit)."""
        while not eof and data.count(b"\n", start) < 2 and len(data) - start <= self.max_record:
            chunk = next(chunks, None)
            if chunk is None:
                return data, True
            data += chunk
            self.buf = data
        return data, eof

    def _whole(self, held: bytes, chunks: Iterator[bytes]) -> _Batches:
        """Read the rest and split it as ``iter_records`` does (shapes that are not streamed)."""
        parts = [held]
        parts.extend(chunks)
        data = b"".join(parts)
        self.buf = data
        yield iter_records(data, self.origin, self.index)

    def _object(
        self, head: bytes, data: bytes, start: int, chunks: Iterator[bytes], *, eof: bool
    ) -> _Batches:
        """An object not starting with ``Records``: NDJSON is streamed, anything else read whole."""
        bom = head[: len(head) - len(data)]
        buf = data
        seen = start
        nl = buf.find(b"\n", start)
        while nl < 0 and not eof and len(buf) <= self.max_record:
            chunk = next(chunks, None)
            if chunk is None:
                eof = True
                break
            seen = len(buf)
            buf += chunk
            self.buf = buf
            nl = buf.find(b"\n", seen)
        if nl >= 0 and _looks_like_ndjson(buf, start):  # one complete object on the first line
            if _plain_line(buf[start:nl]):  # its records come line by line, whatever follows
                self.buf = buf
                yield from self._lines(chunks)
                return
            more = _NONWS.search(buf, nl)
            while more is None and not eof:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                seen = len(buf)
                buf += chunk
                self.buf = buf
                more = _NONWS.search(buf, seen)
            if more is not None:  # more JSON after it: NDJSON
                try:
                    probe = _PROBE.decode(buf[start:nl])
                except msgspec.ValidationError as exc:  # iter_records refuses such a file whole
                    raise InputError(f"not a CloudTrail log: {exc}") from None
                if probe.Records is None and not (probe.digestStartTime and probe.logFiles):
                    # a Records object (its key not first) or a digest is read whole below
                    self.buf = buf
                    yield from self._lines(chunks)
                    return
        yield from self._whole(bom + buf, chunks)

    # -- NDJSON ------------------------------------------------------------------------------

    def _lines(self, chunks: Iterator[bytes]) -> _Batches:
        """Lines as ``bytes.splitlines`` cuts them (LF, CRLF or CR); blank ones skipped."""
        origin, limit = self.origin, self.max_record
        buf = self.buf
        while True:
            region = buf[:-1] if buf.endswith(b"\r") else buf  # its \n may be in the next chunk
            cut = max(region.rfind(b"\n"), region.rfind(b"\r")) + 1
            if cut:
                lines = buf[:cut].splitlines()
                self.buf = buf = buf[cut:]
                index = self.index
                out: list[Record | Problem] = []
                for line in lines:
                    if not line.strip():
                        continue
                    out.append(
                        self._oversize(index, line, len(line), line=True)
                        if len(line) > limit
                        else _line(line, origin, index)
                    )
                    index += 1
                self.index = index
                yield out
            if len(buf) > limit:
                yield from self._skip_line(chunks)
                buf = self.buf
                continue
            chunk = next(chunks, None)
            if chunk is None:
                break
            self.buf = buf = buf + chunk if buf else chunk
        index = self.index
        out = []
        for line in buf.splitlines():
            if not line.strip():
                continue
            out.append(_line(line, origin, index))  # shorter than the limit: checked above
            index += 1
        self.index = index
        yield out
        self.buf = b""

    def _skip_line(self, chunks: Iterator[bytes]) -> _Batches:
        """A line longer than the limit: skip to its end without holding it."""
        buf = self.buf
        excerpt = buf[:EXCERPT_BYTES]
        blank = _NONWS.search(buf) is None
        size = len(buf)
        rest = b""
        while True:
            chunk = next(chunks, None)
            if chunk is None:
                break
            end = _EOL.search(chunk)
            if end is not None:
                blank = blank and _NONWS.search(chunk, 0, end.start()) is None
                size += end.start()
                rest = chunk[end.start() :]
                break
            blank = blank and _NONWS.search(chunk) is None
            size += len(chunk)
        if not blank:
            yield (self._oversize(self.index, excerpt, size, line=True),)
            self.index += 1
        self.buf = rest

    def _oversize(self, index: int, raw: bytes, size: int, *, line: bool = False) -> Problem:
        """A record of ``size`` bytes over the limit; ``raw`` holds its first bytes (or all of them)."""
        where = f"line {index + 1}: " if line else ""
        return Problem(
            f"{where}record is over the {self.max_record}-byte limit (max_record_bytes); skipped unread",
            self.origin,
            index,
            raw[:EXCERPT_BYTES],
            size=size,
        )

    # -- arrays ------------------------------------------------------------------------------

    def _array(
        self, chunks: Iterator[bytes], *, envelope: bool
    ) -> Generator[Iterable[Record | Problem], None, bytes | None]:
        """The elements of a top-level array, or of the Records array; ``buf`` starts after ``[``.

        Returns what follows a Records envelope when more JSON does (the next object), else None.
        """
        self.envelope = envelope
        while True:
            yield from self._cut()
            if self.closed:
                break
            if self._partial() > self.max_record:
                yield from self._skip_record(chunks)
                continue
            try:
                chunk = next(chunks, None)
            except InputError:  # the gzip stream broke: deliver the records complete before it
                if not self.closed and self.buf:
                    yield from self._scan(final=False)
                raise
            if chunk is None:
                yield from self._scan(final=True)
                if self._still_open():
                    raise InputError(self._truncated())
                break
            self.buf = self.buf + chunk if self.buf else chunk
        more = None
        if envelope:
            more = self._after_envelope(chunks)
        else:
            self._after_array(chunks)
        self.buf = b""
        return more

    def _still_open(self) -> bool:
        return not self.closed

    def _truncated(self) -> str:
        if _NONWS.search(self.buf) is not None and not self.need_comma:
            return f"{self.prefix}: Input data was truncated (the object ends inside record #{self.index})"
        return f"{self.prefix}: Input data was truncated (the array never closes)"

    def _partial(self) -> int:
        """Length of the incomplete record held (from its first byte)."""
        if self.need_comma:
            return 0
        first = _NONWS.search(self.buf)
        return len(self.buf) - first.start() if first else 0

    def _cut(self) -> _Batches:
        """Records complete in ``buf``: the fast cut at the last separator, else an exact scan."""
        buf = self.buf
        if self.need_comma:
            first = _NONWS.search(buf)
            if first is None:
                return
            if buf[first.start()] != _COMMA:
                yield from self._scan(final=False)
                return
            self.buf = buf = buf[first.start() + 1 :]
            self.need_comma, self.after_comma = False, True
        close = self._closing(buf)
        if close:  # the array seems to end in what is held (a small object, the last chunk)
            array = b"".join((b"[", memoryview(buf)[:close]))
            try:
                items = _ARRAY.decode(array)
            except (msgspec.DecodeError, RecursionError):
                items = None  # it ends later, or a record is bad: the ways below find out
            if items is not None:
                if close > self.max_record:
                    yield self._each(items)
                else:
                    yield records_of_array(array, items, self.origin, self.index)
                self.index += len(items)
                self.buf = buf[close:]
                self.closed = True
                return
        sep = self.sep
        if sep is not None:
            at = buf.rfind(sep)
            if at >= 0:
                end = at + 1
                array = b"".join((b"[", memoryview(buf)[:end], b"]"))
                try:
                    items = _ARRAY.decode(array)
                except (msgspec.DecodeError, RecursionError):
                    items = None  # not a boundary after all, or a bad record before it
                if items is not None:
                    if end > self.max_record:
                        yield self._each(items)
                    else:
                        yield records_of_array(array, items, self.origin, self.index)
                    self.index += len(items)
                    self.buf = buf[at + self.sep_comma + 1 :]
                    self.after_comma = True
                    self.next_exact = _EXACT_MIN
                    return
                yield from self._scan(final=False)
                return
        if len(buf) >= self.next_exact:
            learning = sep is None
            yield from self._scan(final=False, learning=learning)
            if learning and self.sep is not None and not self.closed:
                yield from self._cut()  # the rest the fast way
                return
            self.next_exact = max(_EXACT_MIN, 2 * len(self.buf))

    def _closing(self, buf: bytes) -> int:
        """Where ``buf`` would end if it closed the array (``]``, then ``}`` for an envelope), or 0."""
        i = len(buf)
        while i and buf[i - 1] in _WS:
            i -= 1
        if self.envelope and i and buf[i - 1] == _CLOSE_OBJECT:
            i -= 1
            while i and buf[i - 1] in _WS:
                i -= 1
        return i if i and buf[i - 1] == _CLOSE else 0

    def _each(self, items: list[msgspec.Raw]) -> Iterator[Record | Problem]:
        """Records one by one, refusing those over the limit (only when a cut is that large)."""
        for i, raw in enumerate(items, self.index):
            if len(raw) > self.max_record:
                yield self._oversize(i, bytes(raw), len(raw))
            else:
                yield from records_of([raw], self.origin, i)

    def _scan(self, *, final: bool, learning: bool = False) -> _Batches:
        """Exact: one value at a time, each end found by msgspec or, for bad values, the scanner.

        ``learning``: stop as soon as the separator between two records is known, so the rest
        can take the fast way.
        """
        buf = self.buf
        view = memoryview(buf)
        pos = 0
        prev_end = -1
        while True:
            found = _NONWS.search(buf, pos)
            if found is None:
                pos = len(buf)
                break
            pos = found.start()
            ch = buf[pos]
            if self.need_comma:
                if ch == _COMMA:
                    pos += 1
                    self.need_comma, self.after_comma = False, True
                    continue
                if ch == _CLOSE:
                    pos += 1
                    self.closed = True
                    break
                self.buf = buf[pos:]
                view.release()
                raise InputError(
                    f"{self.prefix}: expected ',' or ']' after record #{self.index - 1}, "
                    f"found {buf[pos : pos + 16]!r}"
                )
            if ch == _CLOSE:
                if self.after_comma:
                    self.buf = buf[pos:]
                    view.release()
                    raise InputError(f"{self.prefix}: trailing comma in array")
                pos += 1
                self.closed = True
                break
            end = _value_end(buf, view, pos, final=final)
            if end < 0:
                break
            if end == pos:  # a stray } or the like where a record should start
                self.buf = buf[pos:]
                view.release()
                raise InputError(
                    f"{self.prefix}: unexpected {buf[pos : pos + 16]!r} "
                    f"where record #{self.index} should start"
                )
            raw = buf[pos:end]
            if len(raw) > self.max_record:
                yield (self._oversize(self.index, raw, len(raw)),)
            else:
                yield records_of([raw], self.origin, self.index)
            learned = False
            if prev_end > 0 and buf[prev_end - 1] == _CLOSE_OBJECT and ch == _OPEN_OBJECT:
                learned = self._learn(buf, prev_end - 1, pos)
            prev_end = end
            self.index += 1
            self.need_comma, self.after_comma = True, False
            pos = end
            if learned and learning:
                break
        view.release()
        self.buf = buf[pos:]

    def _learn(self, buf: bytes, close: int, start: int) -> bool:
        """Remember the separator between two records: ``}``, the gap, ``{`` and the first key."""
        key = buf.find(b'"', start, start + 64)
        if key < 0 or buf[start + 1 : key].strip(_WS):
            return False
        key_end = buf.find(b'"', key + 1, key + 130)
        if key_end < 0 or buf.find(b"\\", key, key_end) >= 0:
            return False
        sep = buf[close : key_end + 1]
        self.sep, self.sep_comma = sep, sep.index(b",")
        return True

    def _skip_record(self, chunks: Iterator[bytes]) -> _Batches:
        """A record longer than the limit: scan past it without holding it."""
        buf = self.buf
        start = _NONWS.search(buf)
        assert start is not None  # _partial() found it
        pos = start.start()
        excerpt = buf[pos : pos + EXCERPT_BYTES]
        scanner = _Scanner(buf[pos])
        end = scanner.end(buf, pos)
        size = (end if end >= 0 else len(buf)) - pos
        while end < 0:
            chunk = next(chunks, None)
            if chunk is None:
                self.buf = excerpt
                raise InputError(
                    f"{self.prefix}: Input data was truncated (the object ends inside record "
                    f"#{self.index}, which is over the {self.max_record}-byte limit)"
                )
            buf = chunk
            end = scanner.end(buf, 0)
            size += end if end >= 0 else len(buf)
        yield (self._oversize(self.index, excerpt, size),)
        self.index += 1
        self.need_comma, self.after_comma = True, False
        self.buf = buf[end:]

    def _after_array(self, chunks: Iterator[bytes]) -> None:
        """Only whitespace may follow a top-level array."""
        rest = self.buf
        while True:
            if _NONWS.search(rest) is not None:
                self.buf = rest
                raise InputError(f"{self.prefix}: JSON is malformed: trailing characters after the array")
            chunk = next(chunks, None)
            if chunk is None:
                return
            rest = chunk

    def _after_envelope(self, chunks: Iterator[bytes]) -> bytes | None:
        """The rest of a Records envelope: other keys, then ``}``; checked like ``iter_records`` does.

        Returns what follows the ``}`` when more JSON does (another object), else None.
        """
        tail = self.buf
        while True:
            try:
                probe = _PROBE.decode(_NULL_RECORDS + tail)
            except msgspec.ValidationError as exc:
                self.buf = tail
                raise InputError(f"not a CloudTrail log: {exc}") from None
            except BAD_JSON as exc:
                after = trailing_at(exc)
                if after is not None:  # the envelope closed, and something follows it
                    after -= len(_NULL_RECORDS)
                    self._one_records_key(_PROBE.decode(_NULL_RECORDS + tail[:after]))
                    return tail[after:]
                chunk = next(chunks, None) if str(exc).endswith("truncated") else None
                if chunk is None:
                    self.buf = tail
                    raise InputError(f"malformed JSON after the Records array: {why_bad(exc)}") from None
                tail += chunk
                if len(tail) > self.max_record:
                    self.buf = tail[:EXCERPT_BYTES]
                    raise InputError(
                        f"malformed JSON: more than {self.max_record} bytes follow the Records array"
                    ) from None
                continue
            self._one_records_key(probe)
            for chunk in chunks:  # closed: only whitespace so far, and maybe another object later
                if _NONWS.search(chunk) is not None:
                    return chunk
            return None

    @staticmethod
    def _one_records_key(probe: Any) -> None:
        if probe.Records is not None:
            raise InputError("the object has a second Records key; only the first array was read")


class _PushBack:
    """Chunks, with bytes put back in front (what follows an object that ended mid-chunk)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._back: list[bytes] = []
        self._error: InputError | None = None

    def push(self, data: bytes) -> None:
        self._back.append(data)

    def fail(self, error: InputError) -> None:
        """The chunks broke with ``error``: raise it again once what was put back is taken."""
        self._error = error

    def __iter__(self) -> _PushBack:
        return self

    def __next__(self) -> bytes:
        if self._back:
            return self._back.pop()
        if self._error is not None:
            raise self._error
        return next(self._chunks)


def _plain_line(line: bytes) -> bool:
    """True for a first line that reads the same as NDJSON and as a whole object.

    Whether more lines follow or the input ends there, such a line gives the same record (or
    EventBridge envelope, or problem), so its lines can be read as they come. A line with a
    ``Records`` or ``Events`` key, a digest, or fields of the wrong type reads differently alone:
    for those the reader waits for what follows.
    """
    if b"\r" in line.rstrip(b"\r"):  # a bare CR inside: NDJSON would cut the line there
        return False
    try:
        probe = _PROBE.decode(line)
    except (msgspec.ValidationError, *BAD_JSON):
        return False
    return probe.Records is None and probe.Events is None and not (probe.digestStartTime and probe.logFiles)


def _shape_known(head: bytes, *, first: bool) -> bool:
    """True when the start of a document already tells its shape, before ``_HEAD`` bytes came.

    An array, a Records envelope, or a first line that is a whole JSON object (NDJSON, or one
    record on its own line: either way its records come line by line).
    """
    if first and head.startswith(_BOM):
        head = head[len(_BOM) :]
    found = _NONWS.search(head)
    if found is None:
        return False
    start = found.start()
    lead = head[start]
    if lead == _OPEN_ARRAY:
        return True
    if lead != _OPEN_OBJECT:
        return False
    return _ENVELOPE.match(head, start) is not None or _looks_like_ndjson(head, start)


_NULL_RECORDS = b'{"Records":null'
"""What stands for the Records array when the rest of its object is checked."""


def _value_end(buf: bytes, view: memoryview, pos: int, *, final: bool) -> int:
    """End (exclusive) of the JSON value starting at ``pos``, or -1 while it is incomplete."""
    try:
        _RAW.decode(view[pos:])
    except msgspec.DecodeError as exc:
        text = str(exc)
        after = trailing_at(exc)
        if after is not None:
            end = pos + after  # the byte after the value and its whitespace
            while buf[end - 1] in _WS:
                end -= 1
            return end
        if text.endswith("truncated") and not final:
            return -1  # it may end in the next chunk; at the end the scanner decides (see why_bad)
    except RecursionError:
        pass
    else:  # the value runs to the end of what is held: a number may go on in the next chunk
        if not final and buf[pos] not in b'{["tfn':
            return -1
        return len(buf.rstrip(_WS))
    return _Scanner(buf[pos]).end(buf, pos)  # malformed: where does it end?


class _Scanner:
    """Finds where one JSON value ends, tracking only brackets and strings; state spans chunks.

    For values msgspec will not delimit (malformed, nested too deeply) and for records over the
    limit, which are skipped chunk by chunk. Runs of brackets are taken in one step, so deep
    nesting costs no more than its length.
    """

    _TOKEN = re.compile(rb'"|[\[{]+|[\]}]+')
    _IN_STRING = re.compile(rb'["\\]')
    _SCALAR_END = re.compile(rb"[ \t\r\n,\]}]")

    __slots__ = ("depth", "escape", "in_string", "scalar")

    def __init__(self, first: int) -> None:
        self.depth = 0
        self.in_string = False
        self.escape = False
        self.scalar = first not in b'{["'

    def end(self, buf: bytes, pos: int) -> int:
        """Index just after the value's end in ``buf``, or -1 when it goes on past ``buf``."""
        if self.scalar:
            found = self._SCALAR_END.search(buf, pos)
            return found.start() if found else -1
        n = len(buf)
        while pos < n:
            if self.in_string:
                if self.escape:
                    self.escape = False
                    pos += 1
                    continue
                found = self._IN_STRING.search(buf, pos)
                if found is None:
                    return -1
                at = found.start()
                if buf[at] == _QUOTE:
                    self.in_string = False
                    pos = at + 1
                    if self.depth == 0:
                        return pos
                else:  # a backslash: skip what it escapes, maybe in the next chunk
                    self.escape = True
                    pos = at + 1
                continue
            found = self._TOKEN.search(buf, pos)
            if found is None:
                return -1
            at, pos = found.start(), found.end()
            if buf[at] == _QUOTE:
                self.in_string = True
            elif buf[at] in b"[{":
                self.depth += pos - at
            else:
                closing = pos - at
                if closing >= self.depth:
                    return at + self.depth
                self.depth -= closing
        return -1
