"""Rows -> Logs Ingestion API request bodies (JSON arrays under the 1 MB request limit).

We cut bodies ourselves instead of handing the SDK a list of dicts: the SDK's chunker
serialises every log twice with the standard ``json`` module (once to measure, once to send),
which costs more than our whole mapping (see ``bench/bench_sentinel.py``). Each row is
serialised once (msgspec, straight from a typed row) and the array is joined from those bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from trailrelay.contract import INTEGRITY_KIND, Record, cut_runs
from trailrelay_sentinel.billing import row_sizes
from trailrelay_sentinel.columns import BUILTIN_TABLE
from trailrelay_sentinel.integrity import INTEGRITY_TABLE, encode_integrity_row, is_integrity
from trailrelay_sentinel.mapping import build_row, map_record, trim_row

__all__ = [
    "MAX_BODY_BYTES",
    "EncodedRow",
    "SentinelEncoder",
    "body_of",
    "cut_bodies",
    "encode_batch",
    "encode_rows",
]

MAX_BODY_BYTES = 1_000_000
"""Uncompressed body limit. The service allows 1 MB (1,048,576 bytes) per call, compressed
and uncompressed; we stay a little under it."""


_ROW_ENCODER = msgspec.json.Encoder()


class EncodedRow(msgspec.Struct, gc=False):
    """One record's row as JSON bytes, or why it could not be encoded.

    A msgspec Struct rather than a dataclass: one is made per record, and a Struct is built in C.
    """

    data: bytes
    trimmed: tuple[str, ...] = ()
    error: str | None = None


def encode_rows(records: Sequence[Record], max_body: int = MAX_BODY_BYTES) -> list[EncodedRow]:
    """Map and serialise each record; trim a row that alone would not fit in a request."""
    return encode_batch(records, max_body)[0]


def encode_batch(records: Sequence[Record], max_body: int = MAX_BODY_BYTES) -> tuple[list[EncodedRow], bool]:
    """:func:`encode_rows`, and whether every row is a plain CloudTrail row.

    Plain: no integrity event, none trimmed, none rejected. That is the usual batch, which the
    sink then need not sort out row by row.
    """
    out: list[EncodedRow] = []
    append = out.append
    limit = max_body - 2  # the enclosing [ ]
    build = build_row  # encode_record's two steps, without its call per record
    encode = _ROW_ENCODER.encode
    row = EncodedRow
    plain = True
    for record in records:
        if record.origin.kind == INTEGRITY_KIND:
            plain = False
            append(_integrity_row(record, limit, max_body))
            continue
        try:
            data = encode(build(record))
        except Exception as exc:  # a record we cannot map is rejected, never dropped silently
            plain = False
            append(EncodedRow(b"", error=f"cannot map record to AWSCloudTrail columns: {exc}"))
            continue
        if len(data) <= limit:
            append(row(data))
            continue
        plain = False
        data, trimmed = trim_row(map_record(record), limit)
        if len(data) <= limit:
            append(EncodedRow(data, tuple(trimmed)))
        else:
            append(
                EncodedRow(
                    b"",
                    error=f"record is {len(data):,} bytes as a row even after trimming its large fields; "
                    f"the Logs Ingestion API takes at most {max_body:,} bytes per request",
                )
            )
    return out, plain


def _integrity_row(record: Record, limit: int, max_body: int) -> EncodedRow:
    """An integrity event's row for the integrity stream (its own table, see :mod:`.integrity`)."""
    try:
        data = encode_integrity_row(record)
    except Exception as exc:  # never dropped silently: rejected with the reason
        return EncodedRow(b"", error=f"cannot map the integrity event to {INTEGRITY_TABLE} columns: {exc}")
    if len(data) > limit:
        return EncodedRow(
            b"",
            error=f"integrity event is {len(data):,} bytes as a row; the Logs Ingestion API takes at "
            f"most {max_body:,} bytes per request",
        )
    return EncodedRow(data)


def cut_bodies(sizes: Sequence[int], max_body: int = MAX_BODY_BYTES) -> list[range]:
    """Index ranges of consecutive rows whose JSON array (brackets, rows, commas) fits ``max_body``."""
    return cut_runs(sizes, max_body, None, separator_bytes=1, overhead_bytes=2)


def body_of(rows: Sequence[bytes]) -> bytes:
    """The JSON array of already-serialised rows.

    The rows are copied once: the brackets ride along with the first and the last row rather
    than being added to the joined megabyte (each ``+`` would copy it again).
    """
    if len(rows) < 2:
        return b"[" + rows[0] + b"]" if rows else b"[]"
    return b",".join([b"[" + rows[0], *rows[1:-1], rows[-1] + b"]"])


class SentinelEncoder:
    """The exact uncompressed bodies the sink would POST (it gzips each one)."""

    content_type = "application/json"

    def __init__(self, max_body: int = MAX_BODY_BYTES, table: str = BUILTIN_TABLE) -> None:
        self.max_body = max_body
        self.table = table
        """Where the DCR stores the rows: what is billed for them (``trailrelay cost``)."""

    def billable_bytes(self, record: Record) -> int:
        """Azure Monitor's billed bytes of the record's row as stored in ``table``."""
        return sum(size for body in self.encode([record]) for size in row_sizes(body, self.table))

    def encode(self, records: Sequence[Record]) -> list[bytes]:
        """Request bodies for these records, cut as the sink cuts them (integrity rows after)."""
        encoded = encode_rows(records, self.max_body)
        bodies: list[bytes] = []
        for integrity in (False, True):  # two streams: never in one request
            rows = [
                row.data
                for row, record in zip(encoded, records, strict=True)
                if row.error is None and is_integrity(record) is integrity
            ]
            ranges = cut_bodies([len(r) for r in rows], self.max_body)
            bodies += [body_of(rows[rng.start : rng.stop]) for rng in ranges]
        return bodies
