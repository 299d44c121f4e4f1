"""The streaming reader: the same items as ``iter_records(decompress(data))``, in bounded memory.

Equivalence over every shape, the real corpus and random input, at every read and chunk size
down to one byte; hostile input found part-way through a stream; memory that does not follow
the object's size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import threading
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trailrelay.errors import FetchError, InputError
from trailrelay.record import Origin, Record, decode_routing
from trailrelay.sources import parse
from trailrelay.sources.base import ObjectRef
from trailrelay.sources.decompress import decompress
from trailrelay.sources.parse import NotALogFile, Problem, iter_records
from trailrelay.sources.stream import ObjectStream, read_stream
from trailrelay.testing import SAMPLE_EVENTS

ORIGIN = Origin("file", "test://stream")


class Trickle:
    """A source that hands over at most ``n`` bytes per read, then optionally fails."""

    def __init__(self, data: bytes, n: int = 1 << 30, fail_after: int | None = None) -> None:
        self.data, self.n, self.pos, self.closed, self.fail_after = data, n, 0, False, fail_after

    def read(self, size: int = -1) -> bytes:
        if self.fail_after is not None and self.pos >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        k = min(size, self.n) if size > 0 else self.n
        out = self.data[self.pos : self.pos + k]
        self.pos += len(out)
        return out

    def close(self) -> None:
        self.closed = True


def _key(item: Record | Problem) -> tuple[Any, ...]:
    if isinstance(item, Record):
        return ("record", item.raw, item.index, item.routing, item.origin)
    return ("problem", item.reason, item.index, item.raw, item.terminal)


def _old(data: bytes, origin: Origin = ORIGIN) -> list[tuple[Any, ...]]:
    """What the whole-object path gives: items, or the InputError as one terminal entry."""
    try:
        return [_key(i) for i in iter_records(decompress(data), origin)]
    except InputError as exc:
        return [("error", str(exc))]
    except NotALogFile as skip:
        return [("skip", skip.kind)]


def _new(data: bytes, read: int = 1 << 18, chunk: int = 1 << 20, **kw: Any) -> list[tuple[Any, ...]]:
    return _collect(ObjectStream(Trickle(data, read), ORIGIN, read_bytes=read, chunk_bytes=chunk, **kw))


def _collect(stream: ObjectStream) -> list[tuple[Any, ...]]:
    """The stream's items in ``_old``'s terms (a terminal problem stands for the InputError)."""
    out: list[tuple[Any, ...]] = []
    try:
        for item in stream:
            if isinstance(item, Problem) and item.terminal:
                out.append(("error", item.reason))
            else:
                out.append(_key(item))
    except NotALogFile as skip:
        out.append(("skip", skip.kind))
    return out


def _items(data: bytes, **kw: Any) -> list[Record | Problem]:
    return list(read_stream(io.BytesIO(data), ORIGIN, **kw))


def _dumps(value: Any, pretty: bool = False) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 if pretty else 0)


RECS = SAMPLE_EVENTS
ENVELOPE = {
    "version": "0",
    "id": "1",
    "detail-type": "AWS API Call via CloudTrail",
    "source": "aws.cloudtrail",
}
TRICKY = [
    {**RECS[0], "eventID": "t1", "requestParameters": {"policy": '},{"eventVersion":"x"}],"Records":[{'}},
    {**RECS[1], "eventID": "t2", "resources": [{"eventVersion": "nested"}, {"eventVersion": "again"}]},
    {**RECS[2], "eventID": "t3", "userAgent": 'a\\"},{"eventVersion":"1.08"} \\\\'},
    {**RECS[3], "eventID": "t4", "requestParameters": {"x": [[[{"y": "]]}"}]], "}"]}},
]
MANY = [{**RECS[i % len(RECS)], "eventID": f"id-{i}"} for i in range(300)] + TRICKY * 20

SHAPES: dict[str, bytes] = {
    "envelope": _dumps({"Records": RECS}),
    "envelope-pretty": _dumps({"Records": RECS}, pretty=True),
    "envelope-spaced": b' \n{ "Records" :\n [ ' + b" ,\n ".join(_dumps(r) for r in RECS) + b" ] }\n\n",
    "envelope-more-keys": _dumps({"Records": RECS, "extra": {"a": [1, 2]}, "n": 3}),
    "envelope-empty": b'{"Records":[]}',
    "envelope-empty-spaced": b'{"Records":[ \n ]}',
    "envelope-bom": b"\xef\xbb\xbf" + _dumps({"Records": RECS}),
    "envelope-tricky": _dumps({"Records": TRICKY}),
    "envelope-many": _dumps({"Records": MANY}),
    "envelope-many-pretty": _dumps({"Records": MANY}, pretty=True),
    "records-not-first": _dumps({"x": 1, "Records": RECS}),
    "array": _dumps(RECS),
    "array-pretty": _dumps(RECS, pretty=True),
    "array-empty": b"[ ]",
    "array-many": _dumps(MANY),
    "array-eventbridge": _dumps([{**ENVELOPE, "detail": r} for r in RECS]),
    "array-mixed-items": b'[1, "text", null, {"hello": "world"}, '
    + _dumps(RECS[0])
    + b', {"eventID":"a","eventName":"X","userIdentity":{"type":["odd"]},"readOnly":3}, '
    + b'{"detail-type":"Object Created","source":"aws.s3","detail":{"b":1}}, [1, 2], '
    + _dumps(RECS[1])
    + b"]",
    "array-bad-utf8": b"["
    + _dumps(RECS[0])
    + b',{"eventID":"u","eventName":"n","userAgent":"\xff\xfe"},'
    + _dumps(RECS[1])
    + b"]",
    "array-non-ascii": _dumps([{**r, "userAgent": "Ünïcödé ✓ 日本"} for r in RECS]),
    # a lone surrogate escape closing a line: msgspec calls it "truncated"; the reason names it
    "ndjson-lone-surrogate-last": _dumps(RECS[0]) + b'\n{"eventID":"s","eventName":"n","u":"\\ud800"}',
    "ndjson": b"\n".join(_dumps(r) for r in RECS) + b"\n",
    "ndjson-crlf": b"\r\n".join(_dumps(r) for r in RECS) + b"\r\n",
    "ndjson-bad-lines": _dumps(RECS[0])
    + b"\n\n{not json\n  \n"
    + _dumps(RECS[1])
    + b"\n42\n\r\n"
    + _dumps(RECS[2]),
    "ndjson-eventbridge": b"\n".join(_dumps({**ENVELOPE, "detail": r}) for r in RECS),
    "ndjson-leading-space": b"  " + _dumps(RECS[0]) + b"\n  " + _dumps(RECS[1]) + b"  \n",
    "ndjson-many": b"\n".join(_dumps(r) for r in MANY),
    "ndjson-first-line-not-cloudtrail": b'{"Records": "x"}\n' + _dumps(RECS[0]),
    # a pipe that began in the middle of a record, or a banner: that line is a dead letter, the rest is read
    "ndjson-damaged-first-line": b'ntVersion":"1.08","eventID":"cut"}\n'
    + b"\n".join(_dumps(r) for r in RECS),
    "ndjson-banner-first-line": b"-- export of 2026-12-07 --\r\n\n" + _dumps(RECS[0]) + b"\n",
    "ndjson-damaged-first-line-many": b"xx\n" + b"\n".join(_dumps(r) for r in MANY),
    "text-lines-not-json": b"a,b,c\n1,2,3\n{not json either\n",
    "single-pretty": b"\xef\xbb\xbf\n" + _dumps(RECS[0], pretty=True),
    "single-line": _dumps(RECS[0]) + b"\n",
    "single-eventbridge": _dumps({**ENVELOPE, "detail": RECS[0]}),
    "eventbridge-other": b'{"detail-type":"Object Created","source":"aws.s3","detail":{"bucket":{"name":"b"}}}',
    "lookup-events": _dumps(
        {"Events": [{"EventId": "x", "CloudTrailEvent": _dumps(RECS[1]).decode()}, RECS[2]]}
    ),
    "digest": _dumps({"awsAccountId": "1", "digestStartTime": "2026-01-01T00:00:00Z", "logFiles": []}),
    "empty-object": b"{}",
    # CloudTrail files one after another (zcat *.json.gz): each read in turn, indexes going on
    "envelopes-concatenated": _dumps({"Records": RECS[:2]}) + _dumps({"Records": RECS[2:]}),
    "envelopes-on-lines": b"\n".join(_dumps({"Records": RECS[i : i + 1]}) for i in range(len(RECS))) + b"\n",
    "envelopes-many": b"".join(_dumps({"Records": MANY[i : i + 37]}) for i in range(0, len(MANY), 37)),
    "envelopes-spaced-and-empty": b' {"Records":[]} \n\n{ "Records" : [ '
    + _dumps(RECS[0])
    + b" ] }  "
    + _dumps({"Records": [], "x": 1})
    + _dumps({"Records": RECS[1:]}),
    "envelope-more-keys-then-envelope": _dumps({"Records": RECS[:1], "extra": [1]})
    + _dumps({"Records": RECS[1:]}),
    "records-not-first-then-envelope": _dumps({"x": 1, "Records": RECS[:1]})
    + b"\n"
    + _dumps({"Records": RECS[1:]}),
    "envelope-then-ndjson": _dumps({"Records": RECS[:1]}) + b"\n" + b"\n".join(_dumps(r) for r in RECS[1:]),
    "envelope-then-single": _dumps({"Records": RECS[:1]}) + _dumps(RECS[1], pretty=True),
    "envelope-then-array": _dumps({"Records": RECS[:1]}) + _dumps(RECS[1:]),
    "envelope-then-digest": _dumps({"Records": RECS[:1]})
    + _dumps({"awsAccountId": "1", "digestStartTime": "2026-01-01T00:00:00Z", "logFiles": []}),
    "digest-then-envelope": _dumps({"awsAccountId": "1", "digestStartTime": "x", "logFiles": []})
    + b"\n"
    + _dumps({"Records": RECS}),
    "not-cloudtrail": b'{"kind": "something else", "items": [1, 2, 3]}',
}
SMALL = {name: data for name, data in SHAPES.items() if len(data) < 20_000}
SIZES = [(1, 1), (1, 7), (3, 2), (5, 17), (64, 64), (4096, 1000), (1 << 18, 1 << 20)]
BIG_SIZES = [(512, 333), (4096, 4096), (1 << 16, 1 << 14), (1 << 18, 1 << 20)]


def _encodings(data: bytes) -> dict[str, bytes]:
    half = len(data) // 2
    return {
        "plain": data,
        "gzip": gzip.compress(data),
        "gzip-2-members": gzip.compress(data[:half]) + gzip.compress(data[half:]),
        "gzip-zero-padded": gzip.compress(data) + b"\x00" * 5,
    }


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("encoding", ["plain", "gzip", "gzip-2-members", "gzip-zero-padded"])
def test_every_shape_reads_the_same_at_every_chunk_size(name: str, encoding: str) -> None:
    data = _encodings(SMALL[name])[encoding]
    expected = _old(data)
    for read, chunk in SIZES:
        assert _new(data, read, chunk) == expected, (name, encoding, read, chunk)


@pytest.mark.parametrize("name", sorted(set(SHAPES) - set(SMALL)))
def test_large_shapes_read_the_same(name: str) -> None:
    for encoding, data in _encodings(SHAPES[name]).items():
        expected = _old(data)
        assert len(expected) > 300
        for read, chunk in BIG_SIZES:
            assert _new(data, read, chunk) == expected, (name, encoding, read, chunk)


@pytest.mark.parametrize(
    ("after", "reason"),
    [
        (b"this is not json", "not JSON: object starts with"),
        (b'{"Records": 5}', "not a CloudTrail log"),
        (_dumps({"Records": RECS[1:]})[:-30], "malformed JSON"),
        (b'{"Records": [' + _dumps(RECS[1]) + b"] ", "malformed JSON"),
    ],
)
def test_a_concatenation_going_bad_keeps_the_files_before(after: bytes, reason: str) -> None:
    """CloudTrail files one after another, the last one damaged: the whole-object path refuses
    it all; the stream delivers the files before it, then stops with the same kind of reason."""
    data = _dumps({"Records": RECS}) + after
    old = _old(data)
    assert old[0][0] == "error" and old[0][1].startswith(reason), old
    for read, chunk in SIZES:
        new = _new(data, read, chunk)
        assert all(i[0] == "record" for i in new[:-1]) and new[-1][0] == "error"
        assert [i[1] for i in new[: len(RECS)]] == [_dumps(r) for r in RECS]
        assert new[-1][1].startswith(reason) and "reading stopped after" in new[-1][1], (read, chunk)


def test_concatenated_files_are_read_in_turn_with_indexes_going_on() -> None:
    files = [_dumps({"Records": MANY[i : i + 50]}) for i in range(0, len(MANY), 50)]
    data = b"".join(gzip.compress(f) for f in files)  # cat *.json.gz: one gzip member each
    for items in (list(iter_records(decompress(data), ORIGIN)), _items(data)):
        assert [i.raw for i in items] == [_dumps(r) for r in MANY]
        assert [i.index for i in items] == list(range(len(MANY)))
    digest = _dumps({"awsAccountId": "1", "digestStartTime": "x", "logFiles": []})
    data = files[0] + digest + files[1]  # a digest among them is skipped, as it is alone
    assert [i.raw for i in _items(data)] == [_dumps(r) for r in MANY[:100]]


def test_whole_object_failures_give_the_same_reason() -> None:
    for data in (b"", b"   \n", b"<html>503</html>", b'{"Records": "nope"}', b"[", gzip.compress(b"")):
        old = _old(data)
        assert old[0][0] == "error"
        for read, chunk in SIZES[:4]:
            new = _new(data, read, chunk)
            assert len(new) == 1
            assert new[0][0] == "error"
            assert new[0][1].split(":")[0] == old[0][1].split(":")[0], (data, new, old)


def test_real_corpus_reads_the_same(corpus: Path) -> None:
    files = sorted(
        p for p in corpus.rglob("*") if p.is_file() and p.suffix != ".md" and p.name != "SHA256SUMS"
    )
    assert len(files) > 100
    records = 0
    for f in files:
        data = f.read_bytes()
        for encoded in (data, gzip.compress(data)):
            expected = _old(encoded)
            records += sum(1 for e in expected if e[0] == "record")
            sizes = SIZES if len(data) < 4000 else SIZES[4:]
            for read, chunk in sizes:
                assert _new(encoded, read, chunk) == expected, (f.name, read, chunk)
    assert records >= 2 * 3325


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
records = st.one_of(
    st.sampled_from(RECS + TRICKY),
    st.sampled_from(RECS).map(lambda r: {**ENVELOPE, "detail": r}),
    st.fixed_dictionaries(
        {"eventID": st.text(max_size=8), "eventName": st.text(max_size=8), "x": json_values}
    ),
    json_values,
)


CHUNKS = st.sampled_from([1, 2, 3, 5, 8, 13, 64, 257, 4096])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    items=st.lists(records, max_size=10),
    shape=st.sampled_from(["envelope", "envelope-pretty", "array", "array-pretty", "ndjson"]),
    gz=st.booleans(),
    read=CHUNKS,
    chunk=CHUNKS,
)
def test_property_same_items_as_the_whole_object_path(
    items: list[Any], shape: str, gz: bool, read: int, chunk: int
) -> None:
    indent = 2 if shape.endswith("pretty") else None
    if shape.startswith("envelope"):
        data = json.dumps({"Records": items}, indent=indent, ensure_ascii=read % 2 == 0).encode()
    elif shape.startswith("array"):
        data = json.dumps(items, indent=indent, ensure_ascii=read % 2 == 0).encode()
    else:
        data = b"\n".join(json.dumps(i, ensure_ascii=False).encode() for i in items)
    if gz:
        data = gzip.compress(data)
    _same_or_further(_new(data, read, chunk), _old(data))


def _same_or_further(new: list[tuple[Any, ...]], old: list[tuple[Any, ...]]) -> None:
    """The same items; where the whole-object path refused the object, the stream may deliver
    the records before the point where it goes bad, then stops with the same kind of reason."""
    if not old or old[-1][0] != "error":
        assert new == old
        return
    assert new[-1][0] == "error"
    assert all(item[0] != "error" for item in new[:-1])
    assert new[-1][1].split(":")[0] == old[-1][1].split(":")[0], (new[-1], old[-1])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), read=st.integers(1, 64), chunk=st.integers(1, 64))
def test_property_random_bytes_only_yield_items(data: bytes, read: int, chunk: int) -> None:
    for candidate in (
        data,
        b'{"Records":[' + data,
        b"[" + data,
        gzip.compress(data)[: max(2, len(data) // 2)],
    ):
        stream = ObjectStream(
            Trickle(candidate, read), ORIGIN, read_bytes=read, chunk_bytes=chunk, limit=1 << 16
        )
        try:
            items = list(stream)
        except NotALogFile:
            continue
        assert all(isinstance(i, (Record, Problem)) for i in items)
        assert all(not i.terminal for i in items[:-1] if isinstance(i, Problem))  # terminal is last


# -- hostile input, part-way through a stream ----------------------------------------------


def _envelope(parts: list[bytes]) -> bytes:
    return b'{"Records":[' + b",".join(parts) + b"]}"


GOOD = [_dumps(r) for r in MANY[:200]]


def _good_prefix(items: list[Record | Problem]) -> list[Record]:
    recs = [i for i in items if isinstance(i, Record)]
    assert [r.raw for r in recs] == GOOD[: len(recs)]
    assert [r.index for r in recs] == list(range(len(recs)))
    return recs


@pytest.mark.parametrize("chunk", [1000, 1 << 20])
def test_a_gzip_breaking_within_the_first_4k_still_delivers_the_records_before_it(chunk: int) -> None:
    """The shape is decided from the first 4 KiB: a break before them used to lose what came."""
    rng = random.Random(5)
    recs = [_dumps({**MANY[i], "pad": rng.randbytes(200).hex()}) for i in range(6)]
    data = _envelope(recs)
    whole = gzip.compress(data, 1)
    cut = next(c for c in range(len(whole)) if len(zlib.decompressobj(31).decompress(whole[:c])) >= 3600)
    readable = zlib.decompressobj(31).decompress(whole[:cut])
    assert len(readable) < 4096
    complete = sum(1 for r in recs if data.index(r) + len(r) <= len(readable))
    assert complete >= 2
    items = list(ObjectStream(io.BytesIO(whole[:cut]), ORIGIN, chunk_bytes=chunk))
    assert [i.raw for i in items if isinstance(i, Record)] == recs[:complete]
    last = items[-1]
    assert isinstance(last, Problem) and last.terminal and last.reason.startswith("truncated gzip data")
    assert last.index == complete
    assert last.raw  # an excerpt of what could not be read, not an empty dead letter


class _Pipe:
    """A pipe a slow writer feeds: one line per read, then the reader would wait (here: fails)."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines, self.reads = list(lines), 0

    def read(self, size: int = -1) -> bytes:
        self.reads += 1
        if not self.lines:
            raise AssertionError("read past what the writer sent: records were held back")
        return self.lines.pop(0)

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "first",
    [_dumps(MANY[0]) + b"\n", b"\xef\xbb\xbf" + _dumps(MANY[0]) + b"\r\n", b"  \n" + _dumps(MANY[0]) + b"\n"],
)
def test_ndjson_lines_come_out_as_they_arrive_not_after_4k(first: bytes) -> None:
    """A writer producing a line now and then: each record is yielded before the next read."""
    lines = [first, _dumps(MANY[1]) + b"\n", _dumps(MANY[2]) + b"\n"]
    assert sum(map(len, lines)) < 4096
    pipe = _Pipe(lines)
    stream = iter(ObjectStream(pipe, ORIGIN, read_bytes=1 << 16))  # type: ignore[arg-type]
    for n in range(3):
        item = next(stream)
        assert isinstance(item, Record) and item.routing.event_id == MANY[n]["eventID"]


def test_a_records_envelope_on_one_line_still_waits_for_what_follows() -> None:
    """Such a line reads differently alone and with lines after it: the reader does not guess."""
    line = _envelope([_dumps(MANY[0])]).replace(b'{"Records"', b'{"x":1,"Records"') + b"\n"
    assert _new(line) == _old(line)
    assert [i[0] for i in _new(line, read=7)] == ["record"]


@pytest.mark.parametrize("chunk", [1000, 1 << 20])
def test_truncated_gzip_delivers_every_record_complete_before_the_cut(chunk: int) -> None:
    data = _envelope(GOOD)
    whole = gzip.compress(data, 1)
    cut = whole[: len(whole) // 2]
    readable = zlib.decompressobj(31).decompress(cut)
    ends = [data.index(g) + len(g) for g in GOOD]  # GOOD records are distinct (ids)
    complete = sum(1 for e in ends if e <= len(readable))
    stream = ObjectStream(io.BytesIO(cut), ORIGIN, chunk_bytes=chunk, hash_sha256=True)
    items = list(stream)
    recs = _good_prefix(items)
    assert len(recs) == complete > 5
    last = items[-1]
    assert isinstance(last, Problem) and last.terminal
    assert last.reason.startswith("truncated gzip data")
    assert f"after {len(recs)} records" in last.reason
    assert last.index == len(recs)
    assert stream.sha256 is None


def test_corrupt_gzip_part_way() -> None:
    # a member that is not deflate: found at once. (Damage inside deflate data may inflate to
    # wrong bytes before the member's CRC check finds it, as with any streaming gunzip.)
    data = gzip.compress(_envelope(GOOD)[:-2] + b",") + b"\x1f\x8b\x09\x00" + bytes(40)
    items = _items(data, hash_sha256=True)
    assert len(_good_prefix(items)) == len(GOOD)
    last = items[-1]
    assert isinstance(last, Problem) and last.terminal
    assert last.reason.startswith("corrupt gzip data")
    assert _old(data)[0][1].startswith("corrupt gzip data")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\x1f\x8bgarbage", "corrupt gzip data: not a gzip header (unknown compression method)"),
        (b"\x1f\x8b\x08\xe0garbage", "corrupt gzip data: not a gzip header (unknown header flags set)"),
        (gzip.compress(b"[]") + b"\x1f\x8bgarbage", "corrupt gzip data: not a gzip header"),
        (b"\x1f\x8b\x08\x00\x00", "truncated gzip data: stream ends after 0 decompressed bytes"),
    ],
    ids=["method", "flags", "second-member", "header-cut-short"],
)
@pytest.mark.parametrize("read", [1, 1 << 18])
def test_bytes_that_are_no_gzip_header_are_corrupt_not_truncated(data: bytes, reason: str, read: int) -> None:
    """Shorter than a gzip header: ISA-L does not look at it, so the stream used to end "truncated"."""
    ((kind, said),) = _new(data, read=read)
    assert kind == "error" and said.startswith(reason)
    assert _old(data) == [(kind, said)]


def test_trailing_garbage_after_gzip_keeps_the_records() -> None:
    data = gzip.compress(_envelope(GOOD)) + b"junk"
    items = _items(data)
    assert len(_good_prefix(items)) == len(GOOD)
    assert isinstance(items[-1], Problem) and items[-1].reason.startswith("trailing garbage")
    assert _new(gzip.compress(_envelope(GOOD)) + b"\x00\x00") == _old(gzip.compress(_envelope(GOOD)))


def test_gzip_bomb_stops_at_the_limit_counted_on_the_stream() -> None:
    bomb = gzip.compress(b'{"Records":[' + _dumps(RECS[0]) + b"," + b" " * (64 << 20) + b"]}", 9)
    stream = ObjectStream(io.BytesIO(bomb), ORIGIN, limit=4 << 20, chunk_bytes=1 << 20)
    items = list(stream)
    assert isinstance(items[0], Record)
    assert isinstance(items[-1], Problem) and items[-1].terminal
    assert "limit" in items[-1].reason
    assert stream.bytes_out <= (5 << 20)  # stopped at the limit, not after inflating it all
    plain = ObjectStream(io.BytesIO(b"[" + b" " * 5000 + b"]"), ORIGIN, limit=4096, read_bytes=1024)
    (only,) = list(plain)
    assert isinstance(only, Problem) and "limit" in only.reason


@pytest.mark.parametrize("chunk", [7, 1000, 1 << 20])
def test_record_that_never_closes(chunk: int) -> None:
    data = b'{"Records":[' + b",".join(GOOD[:50]) + b',{"eventID":"x","a":"' + b"a" * 5000
    items = list(ObjectStream(io.BytesIO(gzip.compress(data)), ORIGIN, chunk_bytes=chunk))
    assert len(_good_prefix(items)) == 50
    last = items[-1]
    assert isinstance(last, Problem) and last.terminal and last.index == 50
    assert "truncated" in last.reason and "inside record #50" in last.reason
    assert last.raw.startswith(b'{"eventID":"x"')


def test_array_that_never_closes() -> None:
    items = _items(b"[" + b",".join(GOOD[:5]) + b"  ")
    assert len(_good_prefix(items)) == 5
    assert isinstance(items[-1], Problem) and "never closes" in items[-1].reason


@pytest.mark.parametrize("chunk", [64, 1 << 20])
def test_deep_nesting_in_one_record_is_that_record_s_problem(chunk: int) -> None:
    deep = b'{"eventID":"d","eventName":"n","x":' + b"[" * 5000 + b"]" * 5000 + b"}"
    data = _envelope([*GOOD[:10], deep, *GOOD[10:20]])
    items = list(ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=chunk))
    assert len(items) == 21
    bad = items[10]
    assert isinstance(bad, Problem) and not bad.terminal
    assert "nested too deeply" in bad.reason and bad.raw == deep
    assert [i.raw for i in items if isinstance(i, Record)] == GOOD[:20]
    assert _old(data)[0] == ("error", "malformed JSON: nested too deeply")  # the whole-object path gave up


def test_deep_nesting_that_never_closes_is_bounded() -> None:
    data = b'{"Records":[' + GOOD[0] + b"," + b"[" * (3 << 20)
    items = _items(gzip.compress(data), max_record_bytes=1 << 20)
    assert isinstance(items[0], Record)
    assert isinstance(items[-1], Problem) and items[-1].terminal and "truncated" in items[-1].reason
    assert len(items[-1].raw) <= 1 << 20


def test_invalid_utf8_mid_stream_is_one_problem() -> None:
    bad = b'{"eventID":"u","eventName":"n","userAgent":"\xff\xfe"}'
    items = _items(_envelope([*GOOD[:3], bad, *GOOD[3:6]]))
    assert [type(i).__name__ for i in items] == ["Record"] * 3 + ["Problem"] + ["Record"] * 3
    assert isinstance(items[3], Problem) and "invalid UTF-8" in items[3].reason and items[3].index == 3


@pytest.mark.parametrize(
    ("middle", "reason"),
    [
        (b'{"eventID": "a" "eventName": "x"}', "record is not valid JSON"),
        (b'{"eventID": "a", "x": tru}', "record is not valid JSON"),
        (b"nope", "record is not valid JSON"),
    ],
)
def test_malformed_record_in_the_middle_is_its_own_problem(middle: bytes, reason: str) -> None:
    data = _envelope([*GOOD[:5], middle, *GOOD[5:10]])
    for chunk in (3, 100, 1 << 20):
        items = list(ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=chunk))
        assert len(items) == 11, chunk
        assert isinstance(items[5], Problem) and reason in items[5].reason and items[5].raw == middle
        assert not items[5].terminal
        assert [i.raw for i in items if isinstance(i, Record)] == GOOD[:10]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[" + GOOD[0] + b" " + GOOD[1] + b"]", "expected ',' or ']'"),
        (b"[" + GOOD[0] + b",]", "trailing comma"),
        (b"[" + GOOD[0] + b",}", "unexpected"),
        (b"[" + GOOD[0] + b"] x", "trailing characters"),
        (_envelope(GOOD[:1]) + b'\n{"x": tru', "malformed JSON"),
        (_envelope(GOOD[:1]) + b"}", "not JSON"),
        (_envelope(GOOD[:1])[:-1] + b',"Events":5}', "not a CloudTrail log"),
        (_envelope(GOOD[:1])[:-1] + b',"Records":[]}', "second Records key"),
    ],
)
def test_structural_errors_after_records_are_terminal(data: bytes, reason: str) -> None:
    for chunk in (1, 50, 1 << 20):
        items = list(ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=chunk))
        assert [i.raw for i in items if isinstance(i, Record)] == [GOOD[0]]
        last = items[-1]
        assert isinstance(last, Problem) and last.terminal and reason in last.reason, (chunk, last)


@pytest.mark.parametrize("chunk", [1, 333, 4096, 1 << 20])
@pytest.mark.parametrize("shape", ["envelope", "array", "ndjson"])
def test_record_over_max_record_bytes_is_skipped_not_held(chunk: int, shape: str) -> None:
    big = _dumps({**RECS[0], "eventID": "big", "blob": "x" * 9000, "nested": [{"a": "}]"}] * 50})
    parts = [*GOOD[:3], big, *GOOD[3:6], big]
    if shape == "envelope":
        data = _envelope(parts)
    elif shape == "array":
        data = b"[" + b",\n".join(parts) + b"]"
    else:
        data = b"\n".join(parts) + b"\n"
    items = list(ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=chunk, max_record_bytes=8192))
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Record"] * 3 + ["Problem"] + ["Record"] * 3 + ["Problem"], kinds
    for bad, index in ((items[3], 3), (items[7], 7)):
        assert isinstance(bad, Problem) and not bad.terminal and bad.index == index
        assert "over the 8192-byte limit (max_record_bytes)" in bad.reason
        assert bad.size == len(big) and bad.raw.startswith(b'{"eventVersion"')  # the size it was
    assert [i.index for i in items] == list(range(8))


def test_record_exactly_at_max_record_bytes_is_read() -> None:
    rec = GOOD[0]
    items = _items(_envelope([rec, rec]), max_record_bytes=len(rec))
    assert all(isinstance(i, Record) for i in items)
    (item,) = _items(_envelope([rec + b" "]), max_record_bytes=len(rec) - 1)
    assert isinstance(item, Problem)


def test_not_json_and_empty() -> None:
    (item,) = _items(b"<html>503 Service Unavailable</html>")
    assert isinstance(item, Problem) and item.terminal
    assert item.reason == "not JSON: object starts with b'<html>503 Servic'"
    (item,) = _items(gzip.compress(b"  \n"))
    assert isinstance(item, Problem) and item.reason == "object is empty (no JSON)"


def test_digest_is_skipped_not_dead_lettered() -> None:
    digest = _dumps({"awsAccountId": "1", "digestStartTime": "2026-01-01T00:00:00Z", "logFiles": []})
    with pytest.raises(NotALogFile):
        _items(gzip.compress(digest))


# -- hashing, closing, the source failing ---------------------------------------------------


def test_sha256_is_that_of_the_uncompressed_content() -> None:
    data = _envelope(GOOD)
    for raw in (data, gzip.compress(data), gzip.compress(data[:999]) + gzip.compress(data[999:])):
        stream = read_stream(io.BytesIO(raw), ORIGIN, hash_sha256=True)
        assert sum(1 for _ in stream) == len(GOOD)
        assert stream.sha256 == hashlib.sha256(data).hexdigest()
        assert stream.bytes_in == len(raw) and stream.bytes_out == len(data)
    stream = read_stream(io.BytesIO(data), ORIGIN)
    list(stream)
    assert stream.sha256 is None  # not asked for


def test_sha256_covers_a_file_whose_json_goes_bad() -> None:
    data = b"[" + GOOD[0] + b"] trailing" + b" " * 100_000
    stream = ObjectStream(io.BytesIO(gzip.compress(data)), ORIGIN, hash_sha256=True, chunk_bytes=1000)
    items = list(stream)
    assert isinstance(items[-1], Problem) and items[-1].terminal
    assert stream.sha256 == hashlib.sha256(data).hexdigest()


def test_source_is_closed_even_when_the_reader_stops_early() -> None:
    source = Trickle(gzip.compress(_envelope(GOOD)), 100)
    items = iter(ObjectStream(source, ORIGIN, read_bytes=100, chunk_bytes=1000))
    next(items)
    assert not source.closed
    items.close()  # type: ignore[attr-defined]
    assert source.closed
    done = Trickle(b"[]")
    list(read_stream(done, ORIGIN))
    assert done.closed


def test_a_source_failing_part_way_is_a_fetch_error_after_the_records() -> None:
    data = gzip.compress(_envelope(GOOD), 1)
    source = Trickle(data, 4096, fail_after=len(data) // 2)
    seen: list[Record | Problem] = []
    with pytest.raises(FetchError, match="connection reset") as info:
        seen.extend(ObjectStream(source, ORIGIN, read_bytes=4096, chunk_bytes=4096))
    assert isinstance(info.value.__cause__, ConnectionResetError)
    assert len(_good_prefix(seen)) > 10
    assert source.closed


def test_iterated_once() -> None:
    stream = read_stream(io.BytesIO(b"[]"), ORIGIN)
    list(stream)
    with pytest.raises(RuntimeError):
        list(stream)


def test_object_ref_reader_streams_or_falls_back_to_fetch(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b"[]")
    opened = ObjectRef(ORIGIN, path.read_bytes, lambda: path.open("rb"))
    with opened.reader() as f:
        assert f.read() == b"[]"
    fetched = ObjectRef(ORIGIN, lambda: b"{}")
    assert fetched.reader().read() == b"{}"


# -- memory ----------------------------------------------------------------------------------


def _big_object(target: int) -> tuple[bytes, int, int]:
    """A ``{"Records":[...]}`` gzip object of about ``target`` uncompressed bytes, built in a blink.

    One block of records is compressed once and repeated as gzip members; returns the object,
    its uncompressed size and its record count.
    """
    block = b",".join(GOOD) + b","
    reps = max(1, target // len(block))
    head, member, tail = (
        gzip.compress(b'{"Records":['),
        gzip.compress(block, 1),
        gzip.compress(GOOD[0] + b"]}"),
    )
    size = len(b'{"Records":[') + reps * len(block) + len(GOOD[0]) + 2
    return head + member * reps + tail, size, reps * len(GOOD) + 1


def test_memory_follows_the_chunk_not_the_object() -> None:
    obj, size, count = _big_object(96 << 20)
    assert size > 90 << 20
    stream = read_stream(io.BytesIO(obj), ORIGIN, hash_sha256=True)
    tracemalloc.start()
    try:
        n = 0
        for item in stream:
            n += isinstance(item, Record)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == count
    assert stream.bytes_out == size
    assert peak < 12 << 20, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB object"


def test_memory_of_ndjson_follows_the_chunk() -> None:
    line_block = b"\n".join(GOOD) + b"\n"
    reps = (32 << 20) // len(line_block)
    obj = gzip.compress(line_block, 1) * reps
    tracemalloc.start()
    try:
        n = sum(1 for i in read_stream(io.BytesIO(obj), ORIGIN) if isinstance(i, Record))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == reps * len(GOOD)
    assert peak < 12 << 20, f"peak {peak / 1e6:.1f} MB"


def test_zlib_and_isal_agree_on_members_and_padding() -> None:
    data = _envelope(GOOD[:20])
    raw = zlib.compress(data)  # zlib, not gzip: handed on as bytes, refused by the parser
    assert _new(raw) == _old(raw)


# -- every source's objects read the same through the stream ----------------------------------


def _same_through_both(ref: ObjectRef) -> list[tuple[Any, ...]]:
    """The ref read through its stream gives what its bytes give the whole-object path."""
    expected = _old(ref.fetch(), ref.origin)
    assert _collect(read_stream(ref.reader(), ref.origin)) == expected
    return expected


def test_payload_objects_stream_the_joined_array_piece_by_piece() -> None:
    import base64

    from trailrelay.sources.payloads import PayloadCollector

    logs = {
        "messageType": "DATA_MESSAGE",
        "owner": "111122223333",
        "logGroup": "/trail",
        "logStream": "s",
        "logEvents": [{"id": str(i), "message": _dumps(r).decode()} for i, r in enumerate(RECS)],
    }
    c = PayloadCollector(ORIGIN)
    for i, r in enumerate(RECS):
        c.add_base64(base64.b64encode(_dumps(r)).decode(), f"r#{i}")
    c.add_bytes(b"\n".join(_dumps(r) for r in RECS[:2]), "r#ndjson")
    c.add_bytes(gzip.compress(_dumps(logs)), "r#logs")
    c.add_bytes(b"\x1f\x8b\x08\x00corrupt", "r#bad")
    refs = c.refs()
    assert len(refs) == 4
    assert all(ref.open is not None for ref in refs)
    counts = [sum(1 for e in _same_through_both(ref) if e[0] == "record") for ref in refs]
    assert counts == [len(RECS), 2, len(RECS), 0]


def test_files_and_s3_objects_open_as_streams(tmp_path: Path, aws_env: str) -> None:
    import boto3

    from trailrelay.sources.files import FileSource
    from trailrelay.sources.s3 import S3Source

    body = gzip.compress(_envelope(GOOD))
    (tmp_path / "a.json.gz").write_bytes(body)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="stream-test")
    s3.put_object(Bucket="stream-test", Key="AWSLogs/1/CloudTrail/us-east-1/2026/03/02/a.json.gz", Body=body)
    stop = threading.Event()
    refs = [ref for unit in FileSource(tmp_path).work(stop) for ref in unit.objects]
    refs += [ref for unit in S3Source(s3, "stream-test").work(stop) for ref in unit.objects]
    assert len(refs) == 2
    for ref in refs:
        assert ref.open is not None
        raw = ref.open()
        assert not isinstance(raw, io.BytesIO)  # a real stream: a file, botocore's body
        stream = read_stream(raw, ref.origin, hash_sha256=True)
        assert [i.raw for i in stream if isinstance(i, Record)] == GOOD
        assert stream.sha256 == hashlib.sha256(_envelope(GOOD)).hexdigest()


def test_batches_of_clean_cuts_are_record_runs_and_flatten_to_the_items() -> None:
    """The pipeline takes a cut of only records whole (``RecordRun``); a cut with a problem is a
    plain list it reads item by item, in index order, so the problem is dead-lettered."""
    from trailrelay.sources.parse import RecordRun

    data = gzip.compress(_envelope(GOOD))
    batches = [
        list(b) if not isinstance(b, RecordRun) else b
        for b in ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=4096).batches()
    ]
    assert len(batches) > 3 and all(isinstance(b, RecordRun) for b in batches)
    flat = [_key(i) for b in batches for i in b]
    assert flat == [_key(i) for i in ObjectStream(io.BytesIO(data), ORIGIN, chunk_bytes=4096)]
    assert [i[2] for i in flat] == list(range(len(GOOD)))

    bad = [*GOOD[:50], b'{"eventVersion": "1.08", "note": 7}', *GOOD[50:]]
    stream = ObjectStream(io.BytesIO(gzip.compress(_envelope(bad))), ORIGIN, chunk_bytes=4096)
    mixed = [b if isinstance(b, RecordRun) else list(b) for b in stream.batches()]
    with_problem = [b for b in mixed if any(isinstance(i, Problem) for i in b)]
    assert len(with_problem) == 1 and not isinstance(with_problem[0], RecordRun)
    items = [i for b in mixed for i in b]
    assert [i.index for i in items] == list(range(len(bad)))
    assert isinstance(items[50], Problem) and "no eventName or eventID" in items[50].reason
    assert all(isinstance(i, Record) for n, i in enumerate(items) if n != 50)


def _cut(raws: list[bytes]) -> tuple[bytes, list[Any]]:
    array = b"[" + b",".join(raws) + b"]"
    return array, msgspec.json.decode(array, type=list[msgspec.Raw])


@pytest.mark.parametrize(
    ("odd", "fast"),
    [
        (None, True),  # a clean cut: every element a record
        # normalized on the way (a string readOnly, a time in another offset): still the fast path
        (b'{"eventID":"r","eventName":"X","readOnly":"true","eventTime":"2026-01-01T00:00:00+02:00"}', True),
        (b'{"eventVersion":"1.08","eventID":"u","eventName":"Caf\xc3\xa9"}', False),  # UTF-8 text
        (
            b'{"eventVersion":"1.08","eventID":"t","eventName":"X","eventTime":5}',
            False,
        ),  # a field of another type
        (b'{"eventVersion":"1.08","note":7}', False),  # neither eventName nor eventID
        (orjson.dumps({**ENVELOPE, "detail": RECS[0]}), False),  # an EventBridge envelope
    ],
)
def test_records_of_array_gives_what_records_of_gives(
    odd: bytes | None, fast: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-call decode of a cut's routing fields yields exactly the per-record path's items,
    and is the path taken for a clean cut (a cut with anything unusual takes the per-record one)."""
    clean = [raw for raw in map(_dumps, MANY[:60]) if raw.isascii()][:40]
    raws = clean + ([odd] if odd is not None else [])
    array, items = _cut(raws)
    want = [_key(i) for i in parse.records_of(items, ORIGIN, 7)]
    per_record = parse.records_of
    calls: list[int] = []

    def counted(*args: Any) -> Any:
        calls.append(1)
        return per_record(*args)

    monkeypatch.setattr(parse, "records_of", counted)
    got = parse.records_of_array(array, items, ORIGIN, 7)
    assert [_key(i) for i in got] == want
    assert isinstance(got, parse.RecordRun) == all(k[0] == "record" for k in want)
    assert calls == ([] if fast else [1])
    if odd is not None and odd.startswith(b'{"eventID":"r"'):
        routing = got[-1].routing
        assert routing.read_only is True and str(routing.event_time) == "2025-12-31 22:00:00+00:00"


@pytest.mark.parametrize("name", ["ndjson-damaged-first-line", "ndjson-damaged-first-line-many"])
def test_ndjson_whose_first_line_is_damaged_is_read_line_by_line(name: str) -> None:
    """Refused whole before (every good record with the bad line); now only that line is."""
    data = SHAPES[name]
    for items in (_old(data), _new(data, 7, 5), _new(data)):
        problem, *records = items
        assert problem[0] == "problem" and problem[1].startswith("line 1: malformed JSON"), problem
        assert [r[0] for r in records] == ["record"] * (data.count(b"\n"))
    assert _old(SHAPES["ndjson-banner-first-line"])[1][0] == "record"


def test_lines_that_are_not_json_are_still_refused_whole() -> None:
    """A text file is one reason, not a dead letter per line."""
    assert _old(SHAPES["text-lines-not-json"]) == [
        ("error", "not JSON: object starts with b'a,b,c\\n1,2,3\\n{not'")
    ]
    assert _new(SHAPES["text-lines-not-json"], 3, 2) == _old(SHAPES["text-lines-not-json"])


LONE = b'{"eventID":"s","eventName":"n","u":"\\ud800"}'
"""A record whose last string ends in a high-surrogate escape without its pair (valid JSON syntax)."""
SURROGATE = "a UTF-16 high-surrogate escape without its low surrogate"


@pytest.mark.parametrize(
    ("data", "bad"),
    [
        (b'{"Records":[' + _dumps(RECS[0]) + b"," + LONE + b"]}", 1),
        (b"[" + _dumps(RECS[0]) + b"," + LONE + b"]", 1),
        (b"[" + _dumps(RECS[0]) + b"," + LONE + b"," + _dumps(RECS[1]) + b"]", 1),
        (b'{"Records":[' + LONE + b"]}", 0),
    ],
    ids=["envelope-last", "array-last", "array-middle", "envelope-only"],
)
def test_a_lone_surrogate_escape_is_one_records_problem(data: bytes, bad: int) -> None:
    """msgspec says "Input data was truncated" for it at the end of the object's last string.

    That once made the streamed reader stop as if the object were cut short (a terminal problem
    in place of the record). It is that record's own problem, with a reason naming it, at every
    chunk size, and the records around it are read; the whole-object path still refuses such an
    object (see the module docstring), but says why.
    """
    problem = ("problem", f"record is not valid JSON: {SURROGATE}", bad, LONE, False)
    records = data.count(b'"eventVersion"')
    for encoding, encoded in _encodings(data).items():
        for read, chunk in SIZES:
            items = _new(encoded, read, chunk)
            assert items[bad] == problem, (encoding, read, chunk, items[bad][:2])
            assert [item[0] for item in items] == ["record"] * bad + ["problem"] + ["record"] * (
                records - bad
            ), (encoding, read, chunk)
    whole = _old(data)
    assert len(whole) == 1 and whole[0][0] == "error", whole
    assert "escape" in whole[0][1] and "truncated" not in whole[0][1], whole


def test_why_bad_names_the_lone_surrogate_only_where_it_is() -> None:
    """The clearer reason needs the surrogate at the end; a record really cut short stays "truncated"."""
    with pytest.raises(ValueError, match=SURROGATE):
        decode_routing(LONE)
    with pytest.raises(ValueError, match=r"truncated$"):
        decode_routing(b'{"eventID":"s","eventName":"n","u":"abc')
    with pytest.raises(
        ValueError, match="malformed: unexpected end of hex escape"
    ):  # msgspec says so mid-text
        decode_routing(b'{"u":"\\ud800","eventID":"s","eventName":"n"}')
